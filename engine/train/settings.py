"""Training settings (frozen), progress record, and their validation."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..core import schedule
from ..core.errors import TrainingError
from . import losses


@dataclass(frozen=True)
class TrainSettings:
    """Every knob of Click-Gaussian training. Defaults are the product's (preset ``"product"``):
    the paper's values (``../shared/paper/METHOD.md``) except two, set by
    :mod:`engine.core.schedule`; :meth:`paper` gives the paper's constants throughout.

    Paper: iterations 3000, Adam lr 0.01, 10k pixels per iteration, GFL from iteration 2000,
    margins 0.5 / 0.75, loss weights (L_neg 0.1, GFL 10, 3D norm 0.2, 2D norm 0.2, spatial 0.5),
    spatial N_s = 100k samples with K = 5 neighbours, HDBSCAN epsilons 1e-2 / 1e-3.

    Where the product differs from the paper (presets and evidence: :mod:`engine.core.schedule`,
    docs/quality.md "The fine level, Dec 7"): ``w_neg`` 1.0 instead of 0.1, and ``gfl_start``
    266 instead of 2000 (GFL from 2/3 of the run but no later than iteration 266). Simulated
    SAM-like masks that show a small part only with its object pull the part into it before the
    paper's GFL start; on the quality benchmark at 3,000 iterations the two changes raised
    all-mIoU from 81.8 to 88.9 and part click IoU from 0.741 to 0.834 (object clicks 0.927 ->
    0.903).

    Ours:
    - ``gfl_interval`` 100: the global clusters are recomputed every 100 iterations from
      ``gfl_start`` on (10 recomputations over the last 1000 iterations: each is an HDBSCAN run).
    - ``min_cluster_views`` 0.1: HDBSCAN's min_cluster_size = max(3, ceil(0.1 x #views)): a
      global object/part must have been a mask in at least 10% of the views.
    - ``gfl_samples`` 100k: the GFL terms are means over Gaussians; above 100k Gaussians they are
      estimated on a fresh random sample each iteration (unbiased), like the spatial term.
    - ``label_min_cos`` (0.5, 0.75): after training, a Gaussian's label is the cluster that gets
      most of its blending weight in the training views (:func:`engine.train.gfl.vote_labels`);
      a Gaussian no training pixel sees gets its own feature's most similar global cluster only
      if the cosine passes the level's margin, otherwise -1. Clicks use the same thresholds.
    - ``contributors_k`` 32: per-pixel contributors kept in the frozen-geometry cache
      (99.8-99.9% of the blending weight; PERFORMANCE-NOTES).
    - ``checkpoint_every`` 250 iterations (and always on cancel and at the end).
    - ``neg_columns`` 1024 (CPU only): on the CPU the hinged negative term of each level compares
      every sampled pixel with ``neg_columns`` columns drawn without replacement from the sampled
      pixels, scaled so that its expectation (and its gradient's) is the paper's exact
      (1/|P|^2) sum (:func:`engine.train.losses.negative_pair_loss`); exact whenever a level has
      at most that many sampled pixels. 0: the exact term on the CPU too. CUDA always computes
      the exact term.
    """

    iterations: int = 3000
    lr: float = 0.01
    pixels_per_iter: int = 10_000
    gfl_start: int = schedule.preset_fields("product")["gfl_start"]
    gfl_interval: int = 100
    margin_coarse: float = losses.MARGIN_COARSE
    margin_fine: float = losses.MARGIN_FINE
    w_neg: float = schedule.W_NEG
    w_gfl: float = 10.0
    w_3d: float = 0.2
    w_2d: float = 0.2
    w_spatial: float = 0.5
    spatial_samples: int = 100_000
    spatial_k: int = 5
    gfl_samples: int = 100_000
    hdbscan_eps_coarse: float = 1e-2
    hdbscan_eps_fine: float = 1e-3
    min_cluster_views: float = 0.1
    label_min_cos_coarse: float = 0.5
    label_min_cos_fine: float = 0.75
    use_contrastive: bool = True
    use_gfl: bool = True
    use_prior: bool = True
    use_3d_norm: bool = True
    use_2d_norm: bool = True
    use_spatial: bool = True
    contributors_k: int = 32
    checkpoint_every: int = 250
    neg_columns: int = 1024
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> TrainingError:
            return TrainingError(f"training setting {name}={getattr(self, name)!r} {why}")

        for name in ("iterations", "pixels_per_iter", "spatial_samples", "spatial_k", "gfl_samples",
                     "contributors_k", "checkpoint_every", "gfl_interval", "neg_columns"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad(name, "must be an integer")
        if self.iterations < 1:
            raise bad("iterations", "must be at least 1")
        if self.iterations > 10_000_000:
            raise bad("iterations", "is absurdly large")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and 0 < self.lr <= 10):
            raise bad("lr", "must be a number in (0, 10]")
        if self.pixels_per_iter < 2:
            raise bad("pixels_per_iter", "must be at least 2 (pairs of pixels are compared)")
        if self.pixels_per_iter > 200_000:
            raise bad("pixels_per_iter", "is too large (the pair terms grow with its square)")
        if self.gfl_start < 0:
            raise bad("gfl_start", "must be >= 0")
        if self.gfl_interval < 1:
            raise bad("gfl_interval", "must be at least 1")
        for name in ("margin_coarse", "margin_fine"):
            if not 0 < getattr(self, name) < 1:
                raise bad(name, "must be in (0, 1)")
        for name in ("w_neg", "w_gfl", "w_3d", "w_2d", "w_spatial", "hdbscan_eps_coarse", "hdbscan_eps_fine",
                     "min_cluster_views"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise bad(name, "must be a finite number >= 0")
        for name in ("label_min_cos_coarse", "label_min_cos_fine"):
            if not -1 <= getattr(self, name) <= 1:
                raise bad(name, "must be a cosine in [-1, 1]")
        for name in ("spatial_samples", "spatial_k", "gfl_samples", "contributors_k", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise bad(name, "must be at least 1")
        if self.neg_columns < 0:
            raise bad("neg_columns", "must be >= 0 (0: the exact negative term)")
        if self.contributors_k > 256:
            raise bad("contributors_k", "must be at most 256")
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        ):
            raise bad("device", "must be 'auto', 'cpu' or 'cuda[:N]'")
        if not any((self.use_contrastive, self.use_gfl, self.use_spatial)):
            raise TrainingError("training needs at least one of use_contrastive, use_gfl, use_spatial")

    @classmethod
    def preset(cls, name: str = "product", **fields: Any) -> "TrainSettings":
        """Settings of preset ``name`` (``"product"``: the defaults; ``"paper"``: the paper's
        constants) with ``fields`` changed; GFL's start and interval follow ``iterations`` at the
        preset's fraction of the run unless given (:func:`engine.core.schedule.with_run_schedule`)."""
        return cls.from_dict(schedule.with_run_schedule({"preset": name, **fields}))

    @classmethod
    def paper(cls, **fields: Any) -> "TrainSettings":
        """The paper's constants (L_neg weight 0.1, GFL from 2/3 of the run) with ``fields`` changed."""
        return cls.preset("paper", **fields)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainSettings":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise TrainingError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "TrainSettings":
        return dataclasses.replace(self, **changes)

    # Settings that change the result of a run; resuming with others changed is refused.
    def result_key(self) -> dict[str, Any]:
        d = self.to_dict()
        for k in ("device", "checkpoint_every"):
            d.pop(k)
        return d


@dataclass
class TrainProgress:
    """One progress report.

    iteration: iterations done (0..total); total: planned iterations; losses: latest value of
    each active term (``pos``, ``neg``, ``gfl``, ``3d``, ``2d``, ``spatial``, ``total``);
    elapsed_s / eta_s: seconds (eta from the mean iteration time so far; None before the first
    timed iteration); phase: ``"prepare"``, ``"train"``, ``"clusters"`` or ``"done"``."""

    iteration: int
    total: int
    losses: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    eta_s: float | None = None
    phase: str = "train"
    message: str = ""
