"""Two-level per-view masks and the paper's area rule (Click-Gaussian, supplementary B).

SAM's automatic mask generator returns overlapping segments without levels. The area rule turns
them into two per-pixel ID maps: where segments overlap, the *coarse* map keeps the **largest**
segment and the *fine* map the **smallest**. Pixels no segment covers are -1 (the losses ignore
them). IDs are view-local: they do not match across views.

numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import MaskError

UNASSIGNED = -1


@dataclass
class ViewMasks:
    """The two segment-ID maps of one training view.

    coarse: int32 [H, W], fine: int32 [H, W]; -1 = unassigned, other values are view-local
    segment IDs (from :func:`area_rule`: the index of the segment in the source's segment list,
    so a coarse and a fine pixel with the same ID come from the same segment).
    """

    coarse: np.ndarray  # [H, W] int32
    fine: np.ndarray  # [H, W] int32

    def __post_init__(self) -> None:
        self.coarse = np.ascontiguousarray(self.coarse, dtype=np.int32)
        self.fine = np.ascontiguousarray(self.fine, dtype=np.int32)
        if self.coarse.ndim != 2 or self.coarse.shape != self.fine.shape:
            raise ValueError(
                f"ViewMasks needs two [H, W] maps of one size, got coarse {self.coarse.shape} "
                f"and fine {self.fine.shape}"
            )
        if (self.coarse < UNASSIGNED).any() or (self.fine < UNASSIGNED).any():
            raise ValueError("ViewMasks IDs must be >= -1 (-1 = unassigned)")

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return (int(self.coarse.shape[0]), int(self.coarse.shape[1]))

    def level(self, name: str) -> np.ndarray:
        """The map of one level, ``"coarse"`` or ``"fine"``: int32 [H, W]."""
        if name == "coarse":
            return self.coarse
        if name == "fine":
            return self.fine
        raise ValueError(f"mask level must be 'coarse' or 'fine', not {name!r}")

    def num_segments(self, name: str) -> int:
        """Number of distinct segment IDs (excluding -1) at one level."""
        ids = self.level(name)
        return int(np.unique(ids[ids >= 0]).size)

    def assigned_fraction(self) -> float:
        """Fraction of pixels with a segment at the coarse level (equal to the fine one: both
        levels cover the union of all segments)."""
        return float((self.coarse >= 0).mean()) if self.coarse.size else 0.0

    @property
    def is_empty(self) -> bool:
        """True when no pixel belongs to any segment."""
        return not bool((self.coarse >= 0).any())

    @classmethod
    def empty(cls, height: int, width: int) -> "ViewMasks":
        """All pixels unassigned."""
        full = np.full((height, width), UNASSIGNED, dtype=np.int32)
        return cls(full, full.copy())


def segment_masks(segments: Sequence[dict[str, Any]], height: int, width: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Validate SAM-style segment dicts and return (S masks bool [H, W] (not copied when
    already bool), areas int64 [S]).

    Each dict needs ``segmentation``: a bool (or 0/1) array [H, W]. ``area`` (pixels) is used
    when present, otherwise counted. Other keys (``bbox``, ``predicted_iou``, ...) are ignored.
    Raises MaskError naming the offending segment.
    """
    s = len(segments)
    masks: list[np.ndarray] = []
    areas = np.zeros(s, dtype=np.int64)
    for i, seg in enumerate(segments):
        if not isinstance(seg, dict) or "segmentation" not in seg:
            raise MaskError(f"segment {i} is not a SAM mask record (a dict with a 'segmentation' array)")
        m = seg["segmentation"]
        if isinstance(m, dict):
            raise MaskError(
                f"segment {i} is run-length encoded; run SAM's generator with output_mode='binary_mask'"
            )
        m = np.asarray(m)
        if m.shape != (height, width):
            raise MaskError(f"segment {i} has shape {m.shape}, the view is {height}x{width} (HxW)")
        if m.dtype != bool:
            if not np.isin(m, (0, 1)).all():
                raise MaskError(f"segment {i} is not a binary mask (values other than 0/1)")
            m = m.astype(bool)
        masks.append(m)
        areas[i] = int(seg["area"]) if seg.get("area") is not None else int(m.sum())
    return masks, areas


def area_rule(segments: Sequence[dict[str, Any]], height: int, width: int) -> ViewMasks:
    """Write overlapping segments into the coarse and fine ID maps by area.

    segments: SAM automatic-mask-generator records (bool ``segmentation`` [H, W], int ``area``).
    Returns ViewMasks where a pixel's coarse ID is the index (into ``segments``) of the largest
    segment covering it and its fine ID the index of the smallest; -1 where none does. Equal
    areas: the lower index wins at both levels. Segments with zero area are ignored.

    Vectorised: segments are sorted by area and painted in that order, the winner last (S
    masked copies over [H, W]; the masks are not stacked or copied).
    """
    masks, areas = segment_masks(segments, height, width)
    return _paint(masks, areas, height, width)


def area_rule_stack(masks: np.ndarray, areas: np.ndarray | None = None) -> ViewMasks:
    """:func:`area_rule` on a bool stack [S, H, W] (areas int [S], counted when None)."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise MaskError(f"a segment stack must be [S, H, W], got shape {masks.shape}")
    s, h, w = masks.shape
    if areas is None:
        areas = masks.reshape(s, -1).sum(axis=1)
    return _paint(list(masks), np.asarray(areas, dtype=np.int64), h, w)


def _paint(masks: Sequence[np.ndarray], areas: np.ndarray, h: int, w: int) -> ViewMasks:
    s = len(masks)
    coarse = np.full((h, w), UNASSIGNED, dtype=np.int32)
    fine = np.full((h, w), UNASSIGNED, dtype=np.int32)
    idx = np.arange(s)
    keep = areas > 0
    # The winner must be painted last. Coarse: largest wins, ties -> lower index, so paint in
    # order of (area ascending, index descending). Fine: smallest wins, ties -> lower index,
    # so paint in order of (area descending, index descending).
    coarse_order = np.lexsort((-idx, areas))
    fine_order = np.lexsort((-idx, -areas))
    coarse_order = coarse_order[keep[coarse_order]]
    fine_order = fine_order[keep[fine_order]]
    for i in coarse_order:  # copyto(where=) is ~2x faster than boolean-index assignment
        np.copyto(coarse, np.int32(i), where=masks[i])
    for i in fine_order:
        np.copyto(fine, np.int32(i), where=masks[i])
    return ViewMasks(coarse, fine)
