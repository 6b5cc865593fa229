"""SAM-like automatic masks simulated from ground truth, with SAM's known failure modes.

Real SAM weights cannot be downloaded here, so the quality benchmark feeds the trainer masks
made from the ground-truth object / part maps of a view, degraded the way SAM's automatic mask
generator degrades. The output is SAM's own format — a list of dicts with a bool
``segmentation`` [H, W] and an int ``area`` — and goes through the same
:func:`engine.masks.area_rule` as real SAM output, so the trainer sees exactly what it would see
with SAM.

Failure modes, each with its own strength (:class:`MaskNoise`):

- ``granularity``: per view and object, the chance that SAM returns the object only whole or
  only as parts (each 50/50). Otherwise it returns both, which is what SAM usually does: then
  the area rule yields the object at the coarse level and its parts at the fine level. An
  object returned only whole is one segment at both levels; only as parts, its parts are
  separate objects at the coarse level too. The choice is independent per view, so the same
  object changes granularity from view to view.
- ``merge``: per view, the chance for each pair of touching objects (their masks are within
  2 pixels; the ground is never merged) that SAM adds one segment covering both; by the area
  rule it wins the coarse level.
- ``miss_small``: the chance that a small part (area below ``small_area`` of the image) is
  missed: no segment of its own, and cut out of its object's segment (unassigned pixels).
- ``ragged_px``: amplitude in pixels of a smooth random displacement of every segment's
  boundary (independent per segment, so neighbours overlap or leave gaps, as SAM's do).
- ``spurious``: mean number (Poisson) of extra segments per view: mostly blobs inside one part
  (a highlight, a texture patch: a spurious fine split), sometimes blobs across anything.

Levels: ``clean`` (no noise: object + part segments, so the area rule gives exactly the ground
truth, coarse = objects, fine = parts, table included as an object of one part), ``realistic``
(default) and ``hard``. Everything is seeded. numpy + scipy only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import ndimage

from ...masks import ViewMasks, area_rule


@dataclass(frozen=True)
class MaskNoise:
    """Strengths of the simulated SAM failure modes (see the module docstring)."""

    granularity: float = 0.0  # P(object returned only whole or only as parts), per view & object
    merge: float = 0.0  # P(touching pair also returned as one segment), per view & pair
    miss_small: float = 0.0  # P(a small part is missed), per view & part
    small_area: float = 0.004  # "small": part area below this fraction of the image
    ragged_px: float = 0.0  # boundary displacement amplitude, pixels
    spurious: float = 0.0  # mean extra segments per view (Poisson)

    def __post_init__(self) -> None:
        for name in ("granularity", "merge", "miss_small"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"MaskNoise.{name} is a probability in [0, 1], got {v}")
        for name in ("small_area", "ragged_px", "spurious"):
            if getattr(self, name) < 0:
                raise ValueError(f"MaskNoise.{name} must be >= 0, got {getattr(self, name)}")

    def as_dict(self) -> dict:
        return asdict(self)


NOISE_LEVELS: dict[str, MaskNoise] = {
    "clean": MaskNoise(),
    "realistic": MaskNoise(granularity=0.3, merge=0.3, miss_small=0.3, ragged_px=1.0, spurious=1.0),
    "hard": MaskNoise(granularity=0.55, merge=0.6, miss_small=0.6, ragged_px=2.5, spurious=3.0),
}


def noise_level(noise: str | MaskNoise) -> MaskNoise:
    """A :class:`MaskNoise` from a level name (``clean``, ``realistic``, ``hard``) or itself.

    A name may carry overrides of single strengths, for on/off experiments with one failure
    mode: ``"realistic,merge=0"`` is ``realistic`` without merges of touching objects."""
    if isinstance(noise, MaskNoise):
        return noise
    name, *overrides = [t.strip() for t in str(noise).split(",")]
    if name not in NOISE_LEVELS:
        raise ValueError(f"unknown mask noise level {name!r}; choose one of {', '.join(NOISE_LEVELS)}")
    level = NOISE_LEVELS[name]
    if not overrides:
        return level
    known = level.as_dict()
    changes: dict[str, float] = {}
    for item in overrides:
        key, sep, value = (t.strip() for t in item.partition("="))
        if not sep or key not in known:
            raise ValueError(f"mask noise {noise!r}: {item!r} is not NAME=VALUE with NAME one of {', '.join(known)}")
        try:
            changes[key] = float(value)
        except ValueError:
            raise ValueError(f"mask noise {noise!r}: {key} must be a number, got {value!r}") from None
    return replace(level, **changes)


def _segment(mask: np.ndarray) -> dict:
    return {"segmentation": mask, "area": int(mask.sum())}


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field [H, W] (white noise blurred by ``sigma`` px)."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return f / max(float(f.std()), 1e-12)


def _ragged(mask: np.ndarray, amp: float, rng: np.random.Generator) -> np.ndarray:
    """Displace the boundary of ``mask`` by a smooth random field of amplitude ``amp`` pixels."""
    if amp <= 0 or not mask.any():
        return mask
    ys, xs = np.nonzero(mask)
    pad = int(np.ceil(3 * amp)) + 2
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, mask.shape[0])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, mask.shape[1])
    crop = mask[y0:y1, x0:x1]
    sd = ndimage.distance_transform_edt(crop) - ndimage.distance_transform_edt(~crop)
    noisy = sd + 0.5 + amp * _smooth_field(rng, crop.shape, sigma=3.0)
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = noisy > 0
    return out


def _blob(rng: np.random.Generator, shape: tuple[int, int], center: tuple[int, int], radius: float) -> np.ndarray:
    """An irregular blob (bool [H, W]) of roughly ``radius`` pixels around ``center`` (y, x)."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    d = np.hypot(yy - center[0], xx - center[1]) / max(radius, 1.0)
    return d + 0.35 * _smooth_field(rng, shape, sigma=max(radius / 3.0, 1.5)) < 1.0


def simulate_segments(
    object_map: np.ndarray,
    part_map: np.ndarray,
    noise: str | MaskNoise = "realistic",
    rng: np.random.Generator | int = 0,
    ground_id: int = 0,
) -> list[dict]:
    """SAM-format segments for one view from its ground truth.

    object_map, part_map: int32 [H, W] ground-truth ids (-1 = background, which SAM is not asked
    to segment); each part lies within one object. ``ground_id``: the object that is the
    ground (the table), never merged with objects standing on it. Returns a list of dicts with ``segmentation``
    bool [H, W] and ``area`` int (pixels), in no particular order (SAM's order is by score).
    """
    noise = noise_level(noise)
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    object_map = np.asarray(object_map)
    part_map = np.asarray(part_map)
    if object_map.shape != part_map.shape or object_map.ndim != 2:
        raise ValueError(f"object and part maps must be [H, W] of one size, got {object_map.shape} and {part_map.shape}")
    h, w = object_map.shape
    n_pix = h * w
    objects = [int(o) for o in np.unique(object_map) if o >= 0]
    segments: list[np.ndarray] = []
    object_masks: dict[int, np.ndarray] = {}
    for o in objects:
        omask = object_map == o
        parts = [int(p) for p in np.unique(part_map[omask]) if p >= 0]
        part_masks = [(p, omask & (part_map == p)) for p in parts]
        # missed small parts: no segment, and cut out of the object's segment
        kept = []
        for p, pm in part_masks:
            if len(part_masks) > 1 and pm.sum() < noise.small_area * n_pix and rng.random() < noise.miss_small:
                omask = omask & ~pm
            else:
                kept.append(pm)
        object_masks[o] = omask
        mode = "both"
        if len(kept) > 1 and rng.random() < noise.granularity:
            mode = "whole" if rng.random() < 0.5 else "parts"
        if mode in ("both", "whole") and omask.any():
            segments.append(omask)
        if mode in ("both", "parts"):
            # one segment for an object seen as a single part (SAM returns it once)
            segments.extend(pm for pm in kept if pm.any() and not (mode == "both" and np.array_equal(pm, omask)))
    # merges of touching objects
    if noise.merge > 0 and len(objects) > 1:
        grown = {
            o: ndimage.binary_dilation(m, iterations=2)
            for o, m in object_masks.items()
            if m.any() and o != ground_id
        }
        keys = sorted(grown)
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                if (grown[a] & object_masks[b]).any() and rng.random() < noise.merge:
                    segments.append(object_masks[a] | object_masks[b])
    # spurious extra segments
    for _ in range(rng.poisson(noise.spurious) if noise.spurious > 0 else 0):
        if object_map.max() < 0:
            break
        if rng.random() < 0.7:  # a blob inside one part: a highlight or texture patch
            pids = [int(p) for p in np.unique(part_map) if p >= 0]
            pm = part_map == pids[int(rng.integers(len(pids)))]
            ys, xs = np.nonzero(pm)
            k = int(rng.integers(len(ys)))
            r = max(2.0, np.sqrt(len(ys) / np.pi) * rng.uniform(0.25, 0.6))
            seg = _blob(rng, (h, w), (int(ys[k]), int(xs[k])), r) & pm
        else:  # a blob across anything in the picture
            ys, xs = np.nonzero(object_map >= 0)
            k = int(rng.integers(len(ys)))
            r = np.sqrt(n_pix) * rng.uniform(0.04, 0.12)
            seg = _blob(rng, (h, w), (int(ys[k]), int(xs[k])), r) & (object_map >= 0)
        if seg.any():
            segments.append(seg)
    if noise.ragged_px > 0:
        segments = [_ragged(m, noise.ragged_px, rng) for m in segments]
    return [_segment(m) for m in segments if m.any()]


def simulate_view_masks(
    object_maps: list[np.ndarray],
    part_maps: list[np.ndarray],
    noise: str | MaskNoise = "realistic",
    seed: int = 0,
) -> list[ViewMasks]:
    """Two-level training masks for many views: simulated segments through the area rule.

    object_maps, part_maps: per view int32 [H, W] ground truth (-1 = background). The random
    stream of view i is seeded by (seed, i), so a view's masks do not depend on the others.
    """
    if len(object_maps) != len(part_maps):
        raise ValueError(f"{len(object_maps)} object maps but {len(part_maps)} part maps")
    out = []
    for i, (om, pm) in enumerate(zip(object_maps, part_maps)):
        segs = simulate_segments(om, pm, noise, np.random.default_rng([seed, i]))
        out.append(area_rule(segs, om.shape[0], om.shape[1]))
    return out
