"""The Click-Gaussian trainer: only the per-Gaussian 24-d features train; geometry is frozen.

Each iteration (``../shared/paper/METHOD.md``):

1. one training view (a fresh random permutation of the views per epoch);
2. ``pixels_per_iter`` pixels importance-sampled with replacement from its cache
   (:mod:`engine.train.data`), their features rendered as the cached blend;
3. L = L_pos + 0.1 L_neg + 10 L_gfl + 0.2 L_3d + 0.2 L_2d + 0.5 L_spatial (each term switchable);
4. one Adam step (lr 0.01) on the features, over the rows this iteration touched only
   (:class:`RowAdam`, below).

Sparse iterations (ours): an iteration computes its terms on ``sub = features[touched]``, the
Gaussians that its sampled pixels' contributors, its GFL sample and its spatial sample (with
their neighbours) name, and only those rows get gradients and an optimizer step. The 3D norm is
the paper's mean over all N Gaussians restricted to those rows (each touched row gets exactly its
dense gradient). The spatial and GFL terms are the paper's means over all Gaussians up to
``spatial_samples`` / ``gfl_samples`` Gaussians; above that they are means over a sample: the
Gaussians this iteration's pixels see (at most that many, a random subset when more) plus a
uniform random tenth of that many from all N, so every Gaussian, seen or not, is regularised now
and then (the paper samples N_s = 100k uniformly; the sample here follows the pixels, so its size
does not grow with N). So the work of an iteration is bounded by the pixels, their contributors
and the sample sizes, not by N; below 100k Gaussians every row is touched every iteration and the
step is exactly dense Adam's.

The global clusters for GFL are (re)computed at ``gfl_start`` and every ``gfl_interval``
iterations after (:mod:`engine.train.gfl`). All randomness of iteration ``i`` comes from a
generator seeded with ``(seed, i)``, so a resumed run draws exactly what the uninterrupted run
would have drawn.

Checkpoints (``torch.save``, written atomically, read with ``weights_only=True``): features,
Adam state, iteration, current global clusters, settings and scene hash. Cancelling (a set
``threading.Event``, or a progress callback returning False) writes one and raises
:class:`engine.core.errors.Cancelled`; ``resume=True`` continues from it.

After the last iteration: the final global clusters of both levels and per-Gaussian labels: the
cluster that receives most of the Gaussian's blending weight over the training pixels, each
pixel going to its most similar cluster (:func:`engine.train.gfl.vote_labels`); Gaussians that no
training pixel sees take the argmax cosine of their own feature, -1 below ``label_min_cos_*``.

Intermediate results (ours): with a ``publish`` callback, the same kind of result (clusters of
the current features, labels) is built after :data:`FIRST_RESULT_ITERATION` iterations and every
:data:`RESULT_INTERVAL` after, and handed to ``publish`` with ``settings["run"]["provisional"]``
set, so a client can click before the run ends. Building one does not touch the training state
(its clusters are not GFL's), so a run with ``publish`` trains exactly what one without does.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..core.atomic import atomic_write
from ..core.errors import Cancelled, TrainingError
from ..core.features import TrainedFeatures, scene_hash
from ..render.gaussians import resolve_device
from . import losses as L
from .data import TrainView, ViewCache, build_caches, check_views
from .gfl import GlobalClusters, compute_global_clusters, vote_labels
from .settings import TrainProgress, TrainSettings

CHECKPOINT_VERSION = 2  # 2: RowAdam state (m, v, per-row step counts) instead of torch Adam's
ProgressFn = Callable[[TrainProgress], Any]
PublishFn = Callable[[TrainedFeatures], Any]
FIRST_RESULT_ITERATION = 100  # the first intermediate result (features already separate objects)
RESULT_INTERVAL = 500  # iterations between intermediate results after the first


class RowAdam:
    """Adam on the rows of one [N, D] parameter, stepping only the rows given (lazy Adam).

    Relation to the paper's dense Adam (torch.optim.Adam, lr 0.01, betas (0.9, 0.999), eps 1e-8):
    a row updated every iteration follows exactly torch's Adam arithmetic (same moments, same bias
    correction, same ``addcdiv``). A row an iteration does not touch is left alone: its moments do
    not decay and it does not coast on its momentum, as in TensorFlow's LazyAdam and
    torch.optim.SparseAdam; unlike SparseAdam, the bias correction counts each row's own updates
    (a per-row step count), so a row's first update has Adam's first-step size whenever it comes.
    In the trainer rows not touched have a zero gradient in that iteration anyway; dense Adam
    would only move them by their old momentum."""

    def __init__(self, n: int, d: int, lr: float, device: torch.device,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.lr, self.betas, self.eps = float(lr), betas, float(eps)
        self.m = torch.zeros(n, d, device=device)
        self.v = torch.zeros(n, d, device=device)
        self.steps = torch.zeros(n, dtype=torch.int32, device=device)

    @torch.no_grad()
    def step(self, param: torch.Tensor, grad: torch.Tensor, rows: torch.Tensor | None) -> None:
        """One step of ``param[rows]`` with ``grad`` [len(rows), D] (``rows`` None: all rows)."""
        b1, b2 = self.betas
        if rows is None and self._fused_dense(param, grad):
            return
        if rows is None:
            self.steps += 1
            t, m, v = self.steps, self.m, self.v
        else:
            t = self.steps[rows] + 1
            self.steps[rows] = t
            m, v = self.m[rows], self.v[rows]
        m.lerp_(grad, 1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        if rows is not None:
            self.m[rows], self.v[rows] = m, v
        tf = t.to(grad.dtype)[:, None]
        # lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), torch's order of operations,
        # computed in one buffer (the [rows, D] passes dominate a sparse step)
        upd = v.sqrt().div_((1 - b2 ** tf).sqrt_()).add_(self.eps)
        torch.div(m, upd, out=upd).mul_(self.lr / (1 - b1 ** tf))
        if rows is None:
            param.sub_(upd)
        else:
            param.index_add_(0, rows, upd, alpha=-1.0)

    def _fused_dense(self, param: torch.Tensor, grad: torch.Tensor) -> bool:
        """A step of every row with torch's fused Adam kernel (the arithmetic of
        torch.optim.Adam(fused=True): one pass instead of ~10) when all rows have the same step
        count (always so on the dense path); False when it does not apply."""
        fused = getattr(torch, "_fused_adam_", None)
        if fused is None or param.dtype != torch.float32 or not (param.is_contiguous() and grad.is_contiguous()):
            return False
        t = int(self.steps[0]) if len(self.steps) else 0
        if len(self.steps) and not bool((self.steps == t).all()):
            return False
        self.steps += 1
        step = torch.tensor(float(t + 1), device=param.device)
        try:
            fused([param], [grad], [self.m], [self.v], [], [step], lr=self.lr, beta1=self.betas[0],
                  beta2=self.betas[1], weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)
        except (RuntimeError, TypeError):  # a build without the CPU kernel
            self.steps -= 1
            return False
        return True

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"m": self.m.cpu(), "v": self.v.cpu(), "steps": self.steps.cpu()}

    def load_state_dict(self, st: dict[str, torch.Tensor]) -> None:
        for k in ("m", "v", "steps"):
            getattr(self, k).copy_(st[k])


class _Side:
    """``fn()`` run in a helper thread with one torch intra-op thread; :meth:`result` waits for
    it and returns its value (re-raising its exception)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._out: list = [None, None]

        def run() -> None:
            torch.set_num_threads(1)
            try:
                self._out[0] = fn()
            except BaseException as exc:  # handed to the caller
                self._out[1] = exc

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join()
        if self._out[1] is not None:
            raise self._out[1]
        return self._out[0]


def knn_neighbours(means: np.ndarray, k: int) -> torch.Tensor:
    """[N, k] int64 indices of each Gaussian's k nearest other Gaussians (scipy cKDTree built
    once; with fewer than k+1 Gaussians, neighbours repeat)."""
    from scipy.spatial import cKDTree

    n = means.shape[0]
    if n < 2:
        return torch.zeros((n, k), dtype=torch.long)
    kk = min(k + 1, n)
    tree = cKDTree(np.asarray(means, dtype=np.float64))
    _, idx = tree.query(np.asarray(means, dtype=np.float64), k=kk, workers=-1)
    idx = np.asarray(idx).reshape(n, kk)[:, 1:]
    if idx.shape[1] < k:
        idx = np.concatenate([idx, np.repeat(idx[:, -1:], k - idx.shape[1], axis=1)], axis=1)
    return torch.from_numpy(idx.astype(np.int64))


def init_features(n: int, seed: int) -> torch.Tensor:
    """Initial features [n, 24] float32: Gaussian noise scaled so each 12-d half has norm ~1."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(n, 24, generator=g) / math.sqrt(12.0)


def _iter_generator(seed: int, it: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(it) * 7919 + 12345) % (2**63 - 1))
    return g


def _view_for_iteration(seed: int, it: int, n_views: int) -> int:
    epoch, pos = divmod(it, n_views)
    perm = np.random.default_rng([int(seed), int(epoch)]).permutation(n_views)
    return int(perm[pos])


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str, state: dict[str, Any]) -> None:
    """Write a training checkpoint atomically (:func:`engine.core.atomic.atomic_write`)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise TrainingError(f"cannot write checkpoint {path}: folder {folder} does not exist")
    with atomic_write(path, suffix=".pt") as f:
        torch.save(state, f)


def load_checkpoint(path: str) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (no pickle: ``weights_only``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainingError(f"checkpoint {path} does not exist") from None
    except Exception as exc:
        raise TrainingError(f"checkpoint {path} is not a readable training checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise TrainingError(f"checkpoint {path} is not a Click-Gaussian training checkpoint (or from another version)")
    return state


# ----------------------------------------------------------------------------- training
def train(
    scene: Any,
    views: Sequence[TrainView],
    settings: TrainSettings = TrainSettings(),
    *,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    checkpoint_path: str | None = None,
    resume: bool = False,
    gaussians: Any = None,
    publish: PublishFn | None = None,
) -> TrainedFeatures:
    """Train Click-Gaussian features for ``scene`` from ``views`` (each with masks; see
    :func:`engine.train.views_from_scene` to make them). Returns the :class:`TrainedFeatures`
    (not saved: call ``.save(path)``). Raises TrainingError for unusable input, Cancelled when
    cancelled (after writing ``checkpoint_path`` when given)."""
    from ..render.gaussians import Gaussians

    if not isinstance(settings, TrainSettings):
        raise TrainingError(f"settings must be a TrainSettings, got {type(settings).__name__}")
    check_views(views)
    if scene.num_gaussians == 0:
        raise TrainingError("the scene has no Gaussians to train")
    device = resolve_device(settings.device, "training setting device", TrainingError)
    t0 = time.perf_counter()
    if gaussians is None:
        gaussians = Gaussians.from_scene(scene, device)
    elif gaussians.num_gaussians != scene.num_gaussians:
        raise TrainingError("gaussians and scene have different numbers of Gaussians")

    def cache_progress(done: int, total: int) -> None:
        if progress is not None:
            r = progress(TrainProgress(0, settings.iterations, {}, time.perf_counter() - t0, None, "prepare",
                                       f"caching view {done}/{total}"))
            if r is False and cancel is not None:
                cancel.set()

    caches, warnings = build_caches(gaussians, views, settings.contributors_k, progress=cache_progress, cancel=cancel)
    if progress is not None:
        for w in warnings:
            progress(TrainProgress(0, settings.iterations, {}, time.perf_counter() - t0, None, "prepare", w))
    return train_from_caches(
        scene, caches, settings, progress=progress, cancel=cancel, checkpoint_path=checkpoint_path,
        resume=resume, _t0=t0, _warnings=warnings, publish=publish,
    )


def train_from_caches(
    scene: Any,
    caches: Sequence[ViewCache],
    settings: TrainSettings = TrainSettings(),
    **kwargs: Any,
) -> TrainedFeatures:
    """The training loop over prepared view caches (see :func:`train` for the arguments).

    On CPU the loop runs with one torch intra-op thread: its ops are small and OpenMP's
    barriers stall whenever other processes share the cores; the pair term parallelises itself with plain
    threads instead (:func:`engine.train.losses.pair_workers`)."""
    if not caches:
        raise TrainingError("no training view has usable masks")
    before = torch.get_num_threads()
    if caches[0].ids.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return _train_loop(scene, caches, settings, **kwargs)
    finally:
        torch.set_num_threads(before)


def _train_loop(
    scene: Any,
    caches: Sequence[ViewCache],
    settings: TrainSettings = TrainSettings(),
    *,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    checkpoint_path: str | None = None,
    resume: bool = False,
    _t0: float | None = None,
    _warnings: Sequence[str] = (),
    publish: PublishFn | None = None,
) -> TrainedFeatures:
    t0 = time.perf_counter() if _t0 is None else _t0
    if resume and not checkpoint_path:
        raise TrainingError("resume needs a checkpoint path")
    device = caches[0].ids.device
    n = scene.num_gaussians
    s = settings
    s_hash = scene_hash(scene)
    key = json.dumps(s.result_key(), sort_keys=True)

    features = init_features(n, s.seed).to(device)
    opt = RowAdam(n, features.shape[1], s.lr, device)
    start = 0
    clusters: GlobalClusters | None = None
    if resume and os.path.isfile(checkpoint_path or ""):
        st = load_checkpoint(checkpoint_path)  # type: ignore[arg-type]
        if st.get("scene_hash") != s_hash:
            raise TrainingError(f"checkpoint {checkpoint_path} belongs to another scene; delete it or train without resume")
        saved = json.loads(st["settings"])
        mine = json.loads(key)
        saved.pop("iterations", None)
        mine.pop("iterations", None)
        if saved != mine:
            diff = sorted(k for k in mine if saved.get(k) != mine[k])
            raise TrainingError(f"checkpoint {checkpoint_path} was made with other settings ({', '.join(diff)}); resume with the same settings")
        if int(st["n_views"]) != len(caches):
            raise TrainingError(f"checkpoint {checkpoint_path} was made with {st['n_views']} usable views, now {len(caches)}")
        with torch.no_grad():
            features.copy_(st["features"].to(device))
        opt.load_state_dict(st["adam"])
        start = min(int(st["iteration"]), s.iterations)
        if st.get("centers_c") is not None:
            clusters = GlobalClusters(st["centers_c"].to(device), st["centers_f"].to(device))

    def make_state(it: int) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "iteration": it,
            "features": features.detach().cpu().clone(),
            "adam": opt.state_dict(),
            "centers_c": None if clusters is None else clusters.coarse.cpu(),
            "centers_f": None if clusters is None else clusters.fine.cpu(),
            "settings": key,
            "scene_hash": s_hash,
            "n_views": len(caches),
        }

    knn = knn_neighbours(scene.means, s.spatial_k).to(device) if s.use_spatial and s.w_spatial > 0 else None
    # every row is in the spatial term each iteration up to spatial_samples: one sparse product
    adjacency = L.spatial_adjacency(knn) if knn is not None and n <= s.spatial_samples else None
    all_rows = torch.arange(n, device=device)
    mark = torch.zeros(n, dtype=torch.bool, device=device)  # rows touched this iteration
    slot = torch.zeros(n, dtype=torch.long, device=device)  # global row -> row of ``sub``

    def clusters_now() -> GlobalClusters:
        return compute_global_clusters(
            caches, features.detach(), eps_coarse=s.hdbscan_eps_coarse, eps_fine=s.hdbscan_eps_fine,
            min_cluster_views=s.min_cluster_views, use_prior=s.use_prior,
            margin_coarse=s.margin_coarse, margin_fine=s.margin_fine,
        )

    def make_result(done: int) -> TrainedFeatures:
        """Clusters and labels of the current features; provisional before the last iteration."""
        final = clusters_now()
        f = features.detach()
        coarse_labels = vote_labels(caches, f[:, : L.COARSE_DIM], final.coarse, s.label_min_cos_coarse)
        fine_labels = vote_labels(caches, L.fine_feature(f, use_prior=s.use_prior), final.fine, s.label_min_cos_fine)
        facts: dict[str, Any] = {
            "views": len(caches),
            "train_pixels": int(sum(len(c) for c in caches)),
            "seconds": round(time.perf_counter() - t0, 2),
            "warnings": list(_warnings),
        }
        if done < s.iterations:
            facts["provisional"] = True
            facts["iteration"] = done
        return TrainedFeatures(
            features=f.cpu().numpy().astype(np.float16),
            coarse_centers=final.coarse.cpu().numpy(),
            fine_centers=final.fine.cpu().numpy(),
            coarse_labels=coarse_labels,
            fine_labels=fine_labels,
            settings={**s.to_dict(), "run": facts},
            scene_hash=s_hash,
        )

    from ..render.renderer import blend

    # Row block of the fused pair term: 128 keeps a block in a CPU core's cache; on a GPU a block
    # is one kernel launch plus a host sync, so fewer, larger blocks (a [2048, P] block is ~80 MB
    # at P = 10k).
    pair_block = 128 if device.type == "cpu" else 2048
    # the column-sampled negative term (unbiased for the paper's, TrainSettings.neg_columns) is a
    # CPU measure: a GPU computes the exact term at these sizes quickly
    neg_columns = s.neg_columns if device.type == "cpu" else 0
    overlap = device.type == "cpu" and (os.cpu_count() or 1) > 1  # the Gaussians' terms in a helper thread
    last: dict[str, float] = {}
    t_loop = time.perf_counter()
    report_every = max(1, min(10, s.iterations // 100))
    for it in range(start, s.iterations):
        if cancel is not None and cancel.is_set():
            where = ""
            if checkpoint_path:
                save_checkpoint(checkpoint_path, make_state(it))
                where = f"; checkpoint {checkpoint_path} (resume to continue)"
            raise Cancelled(f"training cancelled at iteration {it}/{s.iterations}{where}")
        if s.use_gfl and s.w_gfl > 0 and it >= s.gfl_start and (clusters is None or (it - s.gfl_start) % s.gfl_interval == 0):
            if progress is not None and it == s.gfl_start:
                progress(TrainProgress(it, s.iterations, dict(last), time.perf_counter() - t0, None, "clusters",
                                       "computing global clusters"))
            clusters = clusters_now()
        gen = _iter_generator(s.seed, it, device)
        cache = caches[_view_for_iteration(s.seed, it, len(caches))]
        drawn = torch.multinomial(cache.prob, s.pixels_per_iter, replacement=True, generator=gen)
        # a pixel drawn c times enters every term once with weight c: the same losses as the
        # 10k-pixel sum, with (unique / drawn)^2 of the pairs (~1/4 on the fox)
        rows, counts = torch.unique(drawn, return_counts=True)
        ids = cache.ids[rows].long()  # [U, K] global
        use_gfl = s.use_gfl and s.w_gfl > 0 and clusters is not None and it >= s.gfl_start
        gi = si = None
        if (use_gfl and n > s.gfl_samples) or (knn is not None and n > s.spatial_samples):
            # the Gaussians this iteration's pixels see, for the sampled terms (module doc)
            mark.zero_()
            mark[ids.reshape(-1)] = True
            seen = mark.nonzero().squeeze(1)

            def sample(limit: int) -> torch.Tensor:
                pick = seen if len(seen) <= limit else seen[torch.randperm(len(seen), generator=gen, device=device)[:limit]]
                return torch.cat([pick, torch.randint(0, n, (max(1, limit // 10),), generator=gen, device=device)])

            if use_gfl and n > s.gfl_samples:
                gi = sample(s.gfl_samples)
            if knn is not None and n > s.spatial_samples:
                si = sample(s.spatial_samples)
        if knn is not None and si is None:
            si = all_rows
        # the rows this iteration touches (module doc): global -> local index through ``slot``
        if si is all_rows or (use_gfl and gi is None):
            touched, local = None, (lambda x: x)
            sub = features.detach().requires_grad_()
        else:
            parts = [x.reshape(-1) for x in (ids, gi, si) if x is not None]
            if si is not None:
                parts.append(knn[si].reshape(-1))
            mark.zero_()
            for x in parts:
                mark[x] = True
            touched = mark.nonzero().squeeze(1)
            slot[touched] = torch.arange(len(touched), device=device)
            local = slot.__getitem__
            sub = features[touched].requires_grad_()
        # Two groups of terms with separate graphs: the pixels' (blend, contrastive, 2D norm) and
        # the Gaussians' own (GFL, 3D norm, spatial), which read only ``sub``. On a CPU the
        # second group runs in a helper thread while this one does the pixels (torch releases
        # the GIL inside its ops), and the two gradients are added; the same sum as one graph.
        sub_g = sub.detach().requires_grad_()  # same values, own graph

        def gaussian_terms() -> dict[str, torch.Tensor]:
            out: dict[str, torch.Tensor] = {}
            if use_gfl:
                fg = sub_g if gi is None else sub_g[local(gi)]
                out["gfl"] = s.w_gfl * L.gfl_loss(
                    fg, clusters.coarse, clusters.fine, use_prior=s.use_prior,
                    margin_coarse=s.margin_coarse, margin_fine=s.margin_fine,
                )
            if s.use_3d_norm and s.w_3d > 0:
                # the mean over all N restricted to the touched rows (exact for them)
                out["3d"] = s.w_3d * L.norm3d_loss(sub_g) * (sub_g.shape[0] / n)
            if si is not None:
                nb = knn if si is all_rows else local(knn[si])
                out["spatial"] = s.w_spatial * L.spatial_loss(sub_g, local(si), nb, adjacency)
            if out:
                sum(out.values()).backward()  # type: ignore[union-attr]
            return out

        side = _Side(gaussian_terms) if overlap else None
        terms: dict[str, torch.Tensor] = {}
        rendered = blend(local(ids), cache.weights[rows], sub)  # [U, 24]
        if s.use_contrastive:
            pos, neg = L.contrastive_loss(
                rendered, cache.seg_c[rows], cache.seg_f[rows], use_prior=s.use_prior,
                margin_coarse=s.margin_coarse, margin_fine=s.margin_fine, weights=counts,
                block=pair_block, neg_columns=neg_columns, generator=gen,
            )
            terms["pos"] = pos
            terms["neg"] = s.w_neg * neg
        if s.use_2d_norm and s.w_2d > 0:
            terms["2d"] = s.w_2d * L.norm2d_loss(rendered, use_prior=s.use_prior, weights=counts)
        if terms:
            sum(terms.values()).backward()  # type: ignore[union-attr]
        terms.update(side.result() if side is not None else gaussian_terms())
        grad = sub.grad
        if sub_g.grad is not None:
            grad = sub_g.grad if grad is None else grad.add_(sub_g.grad)
        if grad is None:
            grad = torch.zeros_like(sub)
        total = sum(t.detach() for t in terms.values())
        opt.step(features, grad, touched)
        done = it + 1
        if checkpoint_path and (done % s.checkpoint_every == 0) and done < s.iterations:
            save_checkpoint(checkpoint_path, make_state(done))
        if publish is not None and done < s.iterations and done >= FIRST_RESULT_ITERATION and (
                (done - FIRST_RESULT_ITERATION) % RESULT_INTERVAL == 0):
            if progress is not None:
                progress(TrainProgress(done, s.iterations, dict(last), time.perf_counter() - t0, None, "train",
                                       "building an intermediate result"))
            publish(make_result(done))
        if progress is not None and (done % report_every == 0 or done == s.iterations or it == start):
            last = {k: float(v.detach()) for k, v in terms.items()}
            last["total"] = float(total.detach())
            if not all(math.isfinite(v) for v in last.values()):
                raise TrainingError(f"training diverged at iteration {done} (loss {last}); try a lower lr")
            elapsed = time.perf_counter() - t0
            per_it = (time.perf_counter() - t_loop) / (done - start)
            r = progress(TrainProgress(done, s.iterations, dict(last), elapsed, per_it * (s.iterations - done), "train"))
            if r is False and cancel is not None:
                cancel.set()
            elif r is False:
                if checkpoint_path:
                    save_checkpoint(checkpoint_path, make_state(done))
                raise Cancelled(f"training cancelled at iteration {done}/{s.iterations}")

    if not bool(torch.isfinite(features).all()):
        raise TrainingError("training produced non-finite features; try a lower lr")
    if checkpoint_path:
        save_checkpoint(checkpoint_path, make_state(s.iterations))
    if cancel is not None and cancel.is_set():
        where = f"; checkpoint {checkpoint_path} holds all iterations (resume to finish)" if checkpoint_path else ""
        raise Cancelled(f"training cancelled before the final clusters{where}")
    if progress is not None:
        progress(TrainProgress(s.iterations, s.iterations, dict(last), time.perf_counter() - t0, 0.0, "clusters",
                               "computing final global clusters"))
    result = make_result(s.iterations)
    if progress is not None:
        progress(TrainProgress(s.iterations, s.iterations, dict(last), time.perf_counter() - t0, 0.0, "done",
                               f"{len(result.coarse_centers)} coarse / {len(result.fine_centers)} fine clusters"))
    return result
