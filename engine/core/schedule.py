"""When GFL starts in a training run of any length, and the two training constants where the
product departs from the paper (numpy-free, torch-free: the Blender extension uses it too).

The paper starts Global Feature-guided Learning at iteration 2,000 of 3,000 (2/3 of the run)
and weighs its negative contrastive term L_neg with 0.1 (preset ``"paper"``). The product's
defaults (preset ``"product"``) start GFL at 2/3 of the run but no later than iteration
:data:`GFL_START_LATEST` (266: the paper's start of a 400-iteration run) and weigh L_neg with
:data:`W_NEG`. Why (docs/quality.md, "Why the fine level drops in long runs" and "The fine
level, Dec 7"): SAM-like masks sometimes return a small part only together with its object
(granularity flips); the fine positive term then pulls the part into its object over hundreds
of iterations, whatever the pixels per iteration, and GFL from iteration 2,000 finds part and
object already one cluster and finishes the merge, while GFL from iteration 266 holds every
part on its own cluster. The start is a number of iterations, not a fraction, because the
features need a few hundred iterations of contrastive learning before their clusters mean
anything: GFL from 10% of a 400-iteration run (iteration 40) gave all-mIoU 81.0 against 87.3
(5 seeds). L_neg at weight 1 instead of 0.1 holds a merging pair at the margin before GFL
starts (the paper's L_neg stops at the margin with a tenth of the positive term's weight).

Measured on the quality benchmark (simulated SAM noise, 5 seeds, 1,024 px, 24 views of 160x160;
docs/quality.md, Dec 7): at 3,000 iterations the paper's constants give all-mIoU 81.8, fine
77.5, object / part click IoU 0.927 / 0.741; GFL from 266 alone 88.3, 85.6, 0.927 / 0.789; the
product's two changes 88.9, 86.5, 0.903 / 0.834 (part clicks with the fine click rule of
engine.core.click). At 400 iterations (GFL from 266 either way) L_neg at 1 costs 0.5 all-mIoU
(87.3 -> 86.8) and gains part clicks (0.783 -> 0.821).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import TrainingError

PAPER_ITERATIONS = 3000
GFL_START_FRACTION = 2.0 / 3.0  # the paper: iteration 2,000 of 3,000
PAPER_W_NEG = 0.1  # the paper: L_cont = L_pos + 0.1 L_neg
GFL_START_LATEST = 266  # the product's latest GFL start (docs/quality.md, Dec 7)
W_NEG = 1.0  # the product's L_neg weight (docs/quality.md, Dec 7)


@dataclass(frozen=True)
class Preset:
    """The training constants a preset sets: the L_neg weight, and GFL's start as a fraction of
    the run capped at an iteration (None: no cap)."""

    w_neg: float
    gfl_start_fraction: float
    gfl_start_latest: int | None


PRESETS: dict[str, Preset] = {
    "product": Preset(W_NEG, GFL_START_FRACTION, GFL_START_LATEST),
    "paper": Preset(PAPER_W_NEG, GFL_START_FRACTION, None),
}


def gfl_start_for(iterations: int, fraction: float = GFL_START_FRACTION, latest: int | None = None) -> int:
    """First GFL iteration of a run of ``iterations`` with GFL from ``fraction`` (0-1) of it,
    but no later than iteration ``latest`` (None: no cap; the product's is
    :data:`GFL_START_LATEST`)."""
    if not 0.0 <= fraction <= 1.0:
        raise TrainingError(f"the GFL start must be a fraction of the run between 0 and 1, got {fraction}")
    if iterations < 1:
        raise TrainingError(f"iterations must be at least 1, got {iterations}")
    start = min(iterations, int(iterations * fraction + 1e-9))
    return start if latest is None else min(start, max(0, int(latest)))


def gfl_interval_for(iterations: int) -> int:
    """Iterations between recomputations of the global clusters: 100 at the paper's 3,000 (the
    paper gives no interval; ours, TrainSettings.gfl_interval), in proportion for other lengths."""
    return max(1, int(iterations) // 30)


def preset(name: str) -> Preset:
    """The preset called ``name`` (``"product"`` or ``"paper"``); TrainingError for another."""
    if not isinstance(name, str) or name not in PRESETS:
        raise TrainingError(f"unknown training preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_fields(name: str, iterations: int = PAPER_ITERATIONS) -> dict:
    """TrainSettings fields of preset ``name`` for a run of ``iterations``: ``w_neg``,
    ``gfl_start`` and ``gfl_interval``."""
    p = preset(name)
    return {"w_neg": p.w_neg, "gfl_start": gfl_start_for(iterations, p.gfl_start_fraction, p.gfl_start_latest),
            "gfl_interval": gfl_interval_for(iterations)}


def with_run_schedule(settings: dict) -> dict:
    """A copy of TrainSettings fields ``settings`` (plus an optional ``"preset"``: ``"product"``,
    the default, or ``"paper"``) in which the fields the preset sets and the caller did not give
    are filled in: ``gfl_start`` / ``gfl_interval`` from the run length (``iterations``, 3000
    when not given) by :func:`gfl_start_for` / :func:`gfl_interval_for` (so a 100-iteration run
    starts GFL within the run, not at the default 266 of a 3,000-iteration one or never), and
    ``w_neg``. Without ``"preset"`` and ``iterations`` nothing is filled in (TrainSettings'
    defaults are the product preset's). Values that are not a usable iteration count are left
    for TrainSettings to refuse."""
    out = dict(settings)
    explicit = "preset" in out
    name = out.pop("preset", "product")
    p = preset(name)
    it = out.get("iterations", PAPER_ITERATIONS if explicit else None)
    if explicit:
        out.setdefault("w_neg", p.w_neg)
    if isinstance(it, int) and not isinstance(it, bool) and it >= 1:
        out.setdefault("gfl_start", gfl_start_for(it, p.gfl_start_fraction, p.gfl_start_latest))
        out.setdefault("gfl_interval", gfl_interval_for(it))
    return out
