"""Render 3D Gaussians: colour from SH or any per-Gaussian values, alpha, depth, and the per-pixel
contributors (ids + blending weights) that make a rendered feature a sparse linear function of the
per-Gaussian features.

One entry point, :func:`render`, with two backends behind it:

- ``"gsplat"``: gsplat's CUDA ``rasterization`` (``render_mode="RGB+ED"``, ``packed=False``), used
  by ``"auto"`` when CUDA is available and the Gaussians live on a CUDA device, for renders without
  contributors. gsplat 1.5.3 returns no per-pixel Gaussian lists, so a render *with* contributors
  runs our tile rasterizer (pure torch, :mod:`engine.render.raster_cpu`) on the same CUDA device; values
  and contributors then come from the same pass and agree exactly.
- ``"torch"``: our tile rasterizer (:mod:`engine.render.raster_cpu`) on the Gaussians' device (CPU here).

Blending weights ``w_i = alpha_i * T_i`` (front to back) do not depend on the rendered values, so
for frozen geometry ``F(p) = sum_i w_{p,i} f_i``: cache :class:`Contributors` once per view and
render any features later with :func:`blend` (differentiable in the features).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from . import raster_cpu
from ..core.cameras import Camera, validate_camera
from ..core.errors import EngineError
from .gaussians import Gaussians
from ..core.scene import GaussianScene
from .sh import sh_to_rgb

DEFAULT_K = 32  # top-K contributors per pixel: keeps 99.8% of the blending weight (PERFORMANCE-NOTES)


# ----------------------------------------------------------------------------- contributors
@dataclass
class Contributors:
    """Per-pixel contributing Gaussians of one view, dense layout.

    Attributes:
        ids: [H, W, K] int32 scene indices, front to back; -1 = empty slot (always after the
            filled ones).
        weights: [H, W, K] float32 or float16 ``w = alpha * T`` (0 in empty slots). Only the K
            largest weights of each pixel are kept (in front-to-back order), and none after the
            transmittance falls to 1e-4.
    """

    ids: Tensor
    weights: Tensor

    @property
    def height(self) -> int:
        return int(self.ids.shape[0])

    @property
    def width(self) -> int:
        return int(self.ids.shape[1])

    @property
    def k(self) -> int:
        return int(self.ids.shape[2])

    @property
    def nbytes(self) -> int:
        return self.ids.numel() * self.ids.element_size() + self.weights.numel() * self.weights.element_size()

    def pixels(self, flat_index: Tensor) -> tuple[Tensor, Tensor]:
        """Contributors of pixels ``flat_index`` [P] (int, ``v * W + u``) -> ids [P, K] int32,
        weights [P, K] float32."""
        flat_index = _check_pixel_index(flat_index, self.height * self.width)
        with raster_cpu.single_threaded(self.ids.device):
            ids = self.ids.reshape(-1, self.k)[flat_index]
            w = self.weights.reshape(-1, self.k)[flat_index].float()
        return ids, w

    def render(self, values: Tensor) -> Tensor:
        """All pixels' blended values: values [N, C] -> [H, W, C] (same as :func:`blend`)."""
        ids = self.ids.reshape(-1, self.k)
        out = blend(ids, self.weights.reshape(-1, self.k).float(), values)
        return out.reshape(self.height, self.width, -1)

    def compact(self) -> "PackedContributors":
        """Sparse CSR copy: only filled slots, int32 ids + float16 weights (~5x smaller for
        real scenes, where ~22 of 32 slots are used in the foreground and 0 in the background)."""
        return PackedContributors.from_dense(self)

    def half(self) -> "Contributors":
        """Dense copy with float16 weights (6 bytes per slot instead of 8)."""
        return Contributors(self.ids, self.weights.half())


@dataclass
class PackedContributors:
    """Per-pixel contributors of one view in CSR layout (the compact cache format).

    Attributes:
        height, width, k: image size and the K they were kept with.
        offsets: [H*W + 1] int64, pixel p's entries are ``offsets[p]:offsets[p+1]`` (<= K).
        ids: [nnz] int32 scene indices, front to back within a pixel.
        weights: [nnz] float16 weights ``alpha * T`` (float32 when packed with that type).
    """

    height: int
    width: int
    k: int
    offsets: Tensor
    ids: Tensor
    weights: Tensor

    @classmethod
    def from_dense(cls, dense: Contributors, weight_dtype: torch.dtype = torch.float16) -> "PackedContributors":
        """The filled slots of ``dense``; weights stored as ``weight_dtype`` (float32 keeps them
        exactly, e.g. to rebuild the dense layout bit for bit with :meth:`to_dense`)."""
        ids = dense.ids.reshape(-1, dense.k)
        filled = ids >= 0  # filled slots come first in each pixel
        counts = filled.sum(dim=1)
        offsets = torch.zeros(ids.shape[0] + 1, dtype=torch.long, device=ids.device)
        torch.cumsum(counts, 0, out=offsets[1:])
        return cls(
            dense.height,
            dense.width,
            dense.k,
            offsets,
            ids[filled].to(torch.int32),
            dense.weights.reshape(-1, dense.k)[filled].to(weight_dtype),
        )

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.offsets, self.ids, self.weights))

    def pixels(self, flat_index: Tensor) -> tuple[Tensor, Tensor]:
        """Contributors of pixels ``flat_index`` [P] -> ids [P, K] int32 (-1 empty), weights
        [P, K] float32 (0 empty); the same as the dense layout up to float16 rounding."""
        flat_index = _check_pixel_index(flat_index, self.height * self.width)
        with raster_cpu.single_threaded(self.offsets.device):
            return self._pixels(flat_index)

    def _pixels(self, flat_index: Tensor) -> tuple[Tensor, Tensor]:
        start = self.offsets[flat_index]
        count = self.offsets[flat_index + 1] - start
        slot = torch.arange(self.k, device=start.device)
        mask = slot[None, :] < count[:, None]
        pos = (start[:, None] + slot).clamp(max=max(len(self.ids) - 1, 0))
        if len(self.ids) == 0:
            return (
                torch.full(mask.shape, -1, dtype=torch.int32, device=start.device),
                torch.zeros(mask.shape, device=start.device),
            )
        ids = torch.where(mask, self.ids[pos], -1)
        w = torch.where(mask, self.weights[pos].float(), 0.0)
        return ids, w

    def to_dense(self) -> Contributors:
        ids, w = self.pixels(torch.arange(self.height * self.width, device=self.offsets.device))
        return Contributors(ids.reshape(self.height, self.width, self.k), w.reshape(self.height, self.width, self.k))


def _check_pixel_index(flat_index: Tensor, n_pixels: int) -> Tensor:
    flat_index = torch.as_tensor(flat_index).long()
    if flat_index.ndim != 1:
        raise EngineError(f"pixel index must be 1-D [P], got shape {list(flat_index.shape)}")
    if len(flat_index) and (int(flat_index.min()) < 0 or int(flat_index.max()) >= n_pixels):
        raise EngineError(f"pixel index out of range 0..{n_pixels - 1}")
    return flat_index


def blend(
    ids: Tensor,  # [P, K] int (-1 = empty)
    weights: Tensor,  # [P, K] float
    values: Tensor,  # [N, C] float
) -> Tensor:
    """``out[p] = sum_k weights[p, k] * values[ids[p, k]]`` -> [P, C] in ``values.dtype``.

    Differentiable with respect to ``values`` and ``weights``. Forward is
    ``torch.nn.functional.embedding_bag`` (mode "sum" with per-sample weights: one fused gather +
    weighted sum), backward an ``index_add_`` scatter; both run with one intra-op thread on CPU
    (the ops are small: OpenMP's per-op fork/join costs more than it gains, far more under load).
    ``python -m engine.bench train`` measures it against gather + sum.
    Empty slots (-1) must carry weight 0.
    """
    if ids.shape != weights.shape or ids.ndim != 2:
        raise EngineError(f"blend: ids {list(ids.shape)} and weights {list(weights.shape)} must both be [P, K]")
    if values.ndim != 2:
        raise EngineError(f"blend: values must be [N, C], got {list(values.shape)}")
    if ids.shape[1] == 0 or ids.shape[0] == 0:
        return values.new_zeros(ids.shape[0], values.shape[1])
    idx = ids.long().clamp_min(0)
    return _Blend.apply(idx, weights.to(values.dtype), values)


class _Blend(torch.autograd.Function):
    @staticmethod
    def forward(ctx, idx: Tensor, weights: Tensor, values: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(idx, weights, values)
        with raster_cpu.single_threaded(values.device):
            return torch.nn.functional.embedding_bag(idx, values, per_sample_weights=weights, mode="sum")

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        idx, weights, values = ctx.saved_tensors
        grad_w = grad_v = None
        with raster_cpu.single_threaded(values.device):
            if ctx.needs_input_grad[2]:
                contrib = (weights[..., None] * grad[:, None, :]).reshape(-1, grad.shape[1])
                grad_v = torch.zeros_like(values).index_add_(0, idx.reshape(-1), contrib)
            if ctx.needs_input_grad[1]:
                grad_w = torch.einsum("pc,pkc->pk", grad, values[idx])
        return None, grad_w, grad_v


# ----------------------------------------------------------------------------- render
@dataclass
class RenderOutput:
    """One rendered view.

    Attributes:
        values: [H, W, C] float32 blended values (RGB in [0, inf) for colour renders) with the
            background composited as ``values + (1 - alpha) * background``.
        alpha: [H, W] float32 accumulated opacity ``sum_i w_i``.
        depth: [H, W] float32 expected camera-z depth ``sum_i w_i z_i / sum_i w_i`` (gsplat's
            "ED"), 0 where nothing was hit.
        contributors: per-pixel top-K contributors, or None when ``contributors_k == 0``.
    """

    values: Tensor
    alpha: Tensor
    depth: Tensor
    contributors: Contributors | None = None


def render(
    gaussians: Gaussians,
    camera: Camera,
    values: Tensor | None = None,  # [N, C] per-Gaussian values; None = RGB from SH
    *,
    background: Tensor | float | None = None,  # [C] or scalar; None = 0
    contributors_k: int = 0,
    near: float = 0.01,
    far: float = 1e10,
    backend: str = "auto",
    progress: Callable[[float], object] | None = None,
    cancel: threading.Event | None = None,
) -> RenderOutput:
    """Render one view of the Gaussians.

    Args:
        gaussians: prepared once with :meth:`Gaussians.from_scene` (a :class:`GaussianScene`
            is accepted too and converted on every call, onto CUDA when available).
        camera: OpenCV pinhole camera (x right, y down, z forward; ``viewmat`` world-to-camera).
        values: [N, C] float per-Gaussian values (features, ids, ...). None renders RGB from the
            SH coefficients with each Gaussian's view direction, ``max(SH + 0.5, 0)`` as 3DGS.
        background: colour/value behind the Gaussians, [C] or a scalar.
        contributors_k: also return each pixel's K largest contributors (0 = don't).
        near, far: camera-z clipping of Gaussian centres (world units).
        backend: "auto" (gsplat on CUDA when possible, else torch), "torch" or "gsplat".
        progress: called with the fraction of tiles done (torch backend); returning False
            cancels.
        cancel: an event that stops the render when set (torch backend); raises
            :class:`~engine.core.errors.Cancelled`.

    Returns:
        :class:`RenderOutput` with values [H, W, C], alpha [H, W], depth [H, W], contributors.

    On the torch backend geometry gets no gradient (frozen, as in Click-Gaussian); if ``values``
    requires grad, the returned values are ``blend`` over the top ``contributors_k`` (or 32)
    contributors and so are differentiable with respect to ``values``.
    """
    if isinstance(gaussians, GaussianScene):
        gaussians = Gaussians.from_scene(gaussians, "auto")
    if not isinstance(gaussians, Gaussians):
        raise EngineError(f"render needs Gaussians (use Gaussians.from_scene), got {type(gaussians).__name__}")
    validate_camera(camera, "render")  # loaders already ran it, cameras built in code did not
    n = gaussians.num_gaussians
    if n == 0:
        raise EngineError("cannot render: the scene has no Gaussians")
    if not (0.0 <= near < far):
        raise EngineError(f"render: need 0 <= near < far, got near={near}, far={far}")
    if contributors_k < 0:
        raise EngineError(f"render: contributors_k must be >= 0, got {contributors_k}")
    device = gaussians.device
    if values is not None:
        values = torch.as_tensor(values, device=device)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2 or values.shape[0] != n:
            raise EngineError(f"render: values must be [N={n}, C], got {list(values.shape)}")
        if not values.is_floating_point():
            values = values.float()
        if not bool(torch.isfinite(values).all()):
            bad = int((~torch.isfinite(values)).any(dim=1).sum())
            raise EngineError(f"render: values has NaN or infinite entries for {bad} of {n} Gaussians")
    if backend not in ("auto", "torch", "gsplat"):
        raise EngineError(f"render: backend must be 'auto', 'torch' or 'gsplat', got {backend!r}")
    on_cuda = device.type == "cuda" and torch.cuda.is_available()
    if backend == "gsplat" and not on_cuda:
        raise EngineError("render: the gsplat backend needs CUDA and Gaussians on a CUDA device")
    if backend == "gsplat" and not gsplat_available():
        raise EngineError(f"render: gsplat's CUDA extension is unavailable ({_GSPLAT_STATE['error']})")
    use_gsplat = on_cuda and contributors_k == 0 and backend in ("auto", "gsplat") and gsplat_available()
    if use_gsplat:
        out = _render_gsplat(gaussians, camera, values, near, far)
    else:
        out = _render_torch(gaussians, camera, values, contributors_k, near, far, progress, cancel)
    if background is not None:
        bg = torch.as_tensor(background, dtype=out.values.dtype, device=device).reshape(-1)
        if bg.numel() not in (1, out.values.shape[-1]):
            raise EngineError(f"render: background has {bg.numel()} channels, values have {out.values.shape[-1]}")
        out.values = out.values + (1.0 - out.alpha)[..., None] * bg
    return out


def _camera_tensors(camera: Camera, device: torch.device) -> tuple[Tensor, Tensor]:
    viewmat = torch.as_tensor(camera.viewmat, dtype=torch.float32, device=device)
    K = torch.as_tensor(camera.K, dtype=torch.float32, device=device)
    return viewmat, K


def _rgb_values(gaussians: Gaussians, camera: Camera, ids: Tensor | None = None) -> Tensor:
    """[N, 3] (or [len(ids), 3]) view-dependent 3DGS colour for this camera."""
    campos = torch.as_tensor(camera.center, dtype=torch.float32, device=gaussians.device)
    means = gaussians.means if ids is None else gaussians.means[ids]
    sh = gaussians.sh if ids is None else gaussians.sh[ids]
    return sh_to_rgb(gaussians.sh_degree, means - campos, sh)


def _render_torch(
    g: Gaussians,
    camera: Camera,
    values: Tensor | None,
    contributors_k: int,
    near: float,
    far: float,
    progress: Callable[[float], object] | None,
    cancel: threading.Event | None,
) -> RenderOutput:
    workers = raster_cpu.worker_count(g.device)
    with raster_cpu.single_threaded(g.device):
        W, H = camera.width, camera.height
        viewmat, K = _camera_tensors(camera, g.device)
        with raster_cpu.threads_for(g.device, g.num_gaussians, workers):  # passes over all N
            proj = raster_cpu.project(g.means, g.quats, g.scales, g.opacities, viewmat, K, W, H, near=near, far=far)
        want_grad = values is not None and values.requires_grad and torch.is_grad_enabled()
        k = (contributors_k or DEFAULT_K) if want_grad else contributors_k
        if values is None:
            vis = torch.zeros(g.num_gaussians, 3, device=g.device)
            with torch.no_grad(), raster_cpu.threads_for(g.device, len(proj), workers):
                vis[proj.ids] = _rgb_values(g, camera, proj.ids)
            raster_values = vis
        else:
            raster_values = values.detach()
        res = raster_cpu.rasterize(
            proj, raster_values, W, H, contributors_k=k, progress=progress, cancel=cancel, workers=workers
        )
        contrib = Contributors(res.ids, res.weights) if k else None
        out_values = res.values
        if want_grad:
            out_values = contrib.render(values)
        depth = torch.where(res.alpha > 0, res.depth_sum / res.alpha.clamp_min(1e-10), torch.zeros_like(res.alpha))
        # a gradient render keeps DEFAULT_K contributors internally; they are returned only when asked for
        contrib = contrib if contributors_k else None
        return RenderOutput(values=out_values, alpha=res.alpha, depth=depth, contributors=contrib)


_GSPLAT_STATE: dict[str, object] = {}


def gsplat_available() -> bool:
    """Whether gsplat's CUDA extension loads (it JIT-builds on first use, which needs nvcc).

    Checked once per process and only on a CUDA machine. When it fails, "auto" renders fall back
    to our tile rasterizer on the same GPU (slower, same result) and the reason is logged once.
    """
    if "ok" not in _GSPLAT_STATE:
        ok, err = False, "no CUDA GPU"
        if torch.cuda.is_available():
            try:
                from gsplat.cuda._backend import _C

                ok, err = _C is not None, "gsplat found no CUDA toolkit to build it"
            except Exception as e:  # a failed JIT build raises many kinds of errors
                err = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if not ok:
                import logging

                logging.getLogger(__name__).warning("gsplat unavailable, rendering with the torch rasterizer: %s", err)
        _GSPLAT_STATE.update(ok=ok, error="" if ok else err)
    return bool(_GSPLAT_STATE["ok"])


def _render_gsplat(g: Gaussians, camera: Camera, values: Tensor | None, near: float, far: float) -> RenderOutput:
    """gsplat CUDA rasterization; only called with CUDA available and tensors on CUDA."""
    from gsplat.rendering import rasterization

    viewmat, K = _camera_tensors(camera, g.device)
    if values is None:
        colors, sh_degree = g.sh, g.sh_degree  # gsplat adds 0.5 and clamps at 0, as 3DGS
    else:
        colors, sh_degree = values.float(), None
    render_colors, render_alphas, _meta = rasterization(
        means=g.means,
        quats=g.quats,
        scales=g.scales,
        opacities=g.opacities,
        colors=colors,
        viewmats=viewmat[None],
        Ks=K[None],
        width=camera.width,
        height=camera.height,
        near_plane=near,
        far_plane=far,
        sh_degree=sh_degree,
        packed=False,
        render_mode="RGB+ED",
    )
    out = render_colors[0]  # [H, W, C+1]
    alpha = render_alphas[0, ..., 0]
    depth = torch.where(alpha > 0, out[..., -1], torch.zeros_like(alpha))
    return RenderOutput(values=out[..., :-1], alpha=alpha, depth=depth, contributors=None)
