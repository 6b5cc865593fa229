"""A mask source that needs no download: classical two-scale image segmentation.

LOWER QUALITY THAN SAM. It groups pixels by colour and edges only (scikit-image's
Felzenszwalb-Huttenlocher graph segmentation), so it knows nothing about objects: parts with
the colour of their surroundings merge, and textured surfaces may split. It exists so the whole
product runs on a fresh offline machine; use SAM (:class:`engine.masks.SamMaskSource`) whenever
a checkpoint is available.

How it mimics SAM's multi-granular output: the image (cropped to its content and resized so
its long side is ``work_size``, so results depend neither on resolution nor on framing and cost
stays fixed) is segmented at a fine and a coarse scale; the coarse level is made a union of
fine regions (each fine region joins the coarse region covering most of it), and every
connected region of every level becomes one segment record.
Regions at the coarse scale are larger and span several fine regions (on the fox statue: the red
bib and the grey statue are separate fine regions and often one coarse region), so the area
rule sends coarse regions to the coarse map and fine regions to the fine map. Regions smaller
than ``min_area`` (fraction of the image) are dropped, and regions of the flat colour the image
border has (a rendered view's empty background) are dropped when ``drop_background`` is set.

numpy + scikit-image only.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ..core.errors import MaskError
from .area_rule import UNASSIGNED, ViewMasks
from .source import MaskSourceBase, Report, check_image


@dataclass(frozen=True)
class BuiltinSettings:
    """Settings of the built-in segmenter (all part of the mask cache key).

    work_size: long side (pixels) the image is segmented at; labels are scaled back up.
    scales: Felzenszwalb ``scale`` per level at ``work_size`` (larger = bigger regions), finest
        first; two or more.
    sigma: Gaussian pre-smoothing (pixels at ``work_size``) before segmenting.
    min_size: Felzenszwalb's smallest region (pixels at ``work_size``) at the finest scale;
        scaled with the scale for coarser levels.
    min_area: segments covering less than this fraction of the image are dropped.
    min_thickness: regions with fewer than this many pixels per boundary pixel (slivers, e.g.
        the soft rim of a rendered object) merge into their main neighbour, at work size.
    drop_background: drop regions that touch the border and are mostly (80%+) the colour most of
        the border has (within ``background_tol``, 0-255 units), when at least 75% of the
        border has one flat colour: the empty background of views rendered from splats. The
        image is then cropped to the box around the rest (grown by ``crop_margin`` of its size)
        before resizing to ``work_size``, so results do not depend on how the scene is framed.
    absorb_parts: at the coarsest level, regions smaller than this fraction of the (cropped)
        image merge into the neighbour holding ``absorb_share`` or more of their border: a part
        enclosed by one region joins that region's object. 0 disables.

    Defaults were chosen on 28 views rendered from the fox scene (two orbits, 256x256) against
    per-Gaussian ground truth (bib / statue / top block / pedestal): the fine level separates
    bib and statue, and statue and top block, in every view; the coarse level joins bib and
    statue in 90-100% of the views with the bib and keeps statue and pedestal apart in 83-100%;
    ground-truth purity of segments is 0.96 (fine) and 0.90-0.92 (coarse).
    """

    work_size: int = 256
    scales: tuple[float, ...] = (150.0, 400.0)
    sigma: float = 1.0
    min_size: int = 40
    min_area: float = 0.001
    drop_background: bool = True
    background_tol: float = 8.0
    crop_margin: float = 0.04
    min_thickness: float = 1.5
    absorb_parts: float = 0.03
    absorb_share: float = 0.6
    use_geometry: bool = True
    depth_jump: float = 0.025
    link_share: float = 0.75
    support_tilt_deg: float = 25.0
    normal_cut_deg: float = 0.0
    stack_share: float = 0.0
    support_colour_tol: float = 60.0
    normal_sigma: float = 0.0
    support_smooth: int = 1
    part_colour_tol: float = 0.0
    support_height_tol: float = 0.03
    colour_veto_area: float = 0.015
    depth_median: int = 1

    def __post_init__(self) -> None:
        def setting(name: str, kind: type) -> Any:
            value = getattr(self, name)
            try:
                if kind is bool:
                    if not isinstance(value, (bool, np.bool_, int)) or value not in (0, 1):
                        raise ValueError
                    return bool(value)
                out = kind(value)
                if kind is int and out != value:
                    raise ValueError
                return out
            except (TypeError, ValueError):
                raise MaskError(f"builtin masks: {name} must be {kind.__name__}, got {value!r}") from None

        for f in fields(self):
            if f.name == "scales":
                try:
                    scales = tuple(float(v) for v in self.scales)
                except (TypeError, ValueError):
                    raise MaskError(f"builtin masks: scales must be numbers, got {self.scales!r}") from None
                object.__setattr__(self, "scales", scales)
            else:
                object.__setattr__(self, f.name, setting(f.name, type(f.default)))
        if self.work_size < 32:
            raise MaskError(f"builtin masks: work_size must be at least 32 pixels, got {self.work_size}")
        if len(self.scales) < 1 or any(not v > 0 for v in self.scales):
            raise MaskError(f"builtin masks: scales must be positive, got {self.scales}")
        if not 0.0 <= self.min_area < 1.0:
            raise MaskError(f"builtin masks: min_area must be a fraction in [0, 1), got {self.min_area}")
        for name in ("sigma", "min_size", "background_tol", "crop_margin", "min_thickness", "absorb_parts", "absorb_share",
                     "depth_jump", "link_share", "support_tilt_deg", "normal_cut_deg", "stack_share", "support_colour_tol", "normal_sigma", "depth_median", "support_smooth", "part_colour_tol", "support_height_tol", "colour_veto_area"):
            if not getattr(self, name) >= 0:
                raise MaskError(f"builtin masks: {name} must not be negative, got {getattr(self, name)}")


def _resize_index(n_out: int, n_in: int) -> np.ndarray:
    """Nearest-neighbour source index [n_out] for resampling n_in samples to n_out."""
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def _grown_box(rows: np.ndarray, cols: np.ndarray, h: int, w: int, margin: float) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the box around the non-empty ``rows`` / ``cols`` (sorted pixel indices)
    grown by ``margin`` of its longer side (plus one pixel), clipped to an [h, w] image."""
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    m = int(round(margin * max(y1 - y0, x1 - x0))) + 1
    return max(0, y0 - m), min(h, y1 + m), max(0, x0 - m), min(w, x1 + m)


def _to_work_size(crop: np.ndarray, work_size: int) -> np.ndarray:
    """uint8 [h, w, 3] ``crop`` shrunk (anti-aliased) so its long side is ``work_size``; a crop
    already that small is returned as it is (never enlarged)."""
    from skimage.transform import resize

    h0, w0 = crop.shape[:2]
    f = work_size / max(h0, w0)
    if f >= 1.0:
        return np.ascontiguousarray(crop)
    h, w = max(1, round(h0 * f)), max(1, round(w0 * f))
    return (resize(crop, (h, w), order=1, anti_aliasing=True, preserve_range=True) + 0.5).astype(np.uint8)


def _content_box(image: np.ndarray, s: BuiltinSettings) -> tuple[tuple[int, int, int, int], np.ndarray | None]:
    """((y0, y1, x0, x1), background colour [3] or None): the box around everything that is
    not the flat border colour, grown by ``crop_margin`` of its size, or the whole image when
    there is no flat background (or ``drop_background`` is off)."""
    h, w = image.shape[:2]
    whole = (0, h, 0, w)
    if not s.drop_background:
        return whole, None
    bg = _background_colour(image, s.background_tol)
    if bg is None:
        return whole, None
    content = np.abs(image.astype(np.int16) - bg).max(axis=2) > s.background_tol
    rows, cols = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
    if rows.size == 0:
        return whole, bg
    return _grown_box(rows, cols, h, w, s.crop_margin), bg


def _level_labels(image: np.ndarray, s: BuiltinSettings) -> tuple[list[np.ndarray], tuple[int, int, int, int]]:
    """(per level int32 [h, w] region labels at work size (-1 = dropped, regions 4-connected,
    numbered 0..R-1), the image box (y0, y1, x0, x1) they cover).

    The box is the content box (:func:`_content_box`), so a scene framed small or large in the
    view is segmented alike; it is resized so its long side is ``work_size``."""
    from skimage.measure import label as connected
    from skimage.segmentation import felzenszwalb

    box, bg = _content_box(image, s)
    y0, y1, x0, x1 = box
    crop = image[y0:y1, x0:x1]
    h0, w0 = crop.shape[:2]
    small = _to_work_size(crop, s.work_size)
    h, w = small.shape[:2]
    levels = []
    for scale in s.scales:
        min_size = int(round(s.min_size * scale / s.scales[0]))
        regions = felzenszwalb(small, scale=scale, sigma=s.sigma, min_size=min_size)
        lab = connected(regions, background=-1, connectivity=1) - 1  # split disconnected pieces
        lab = lab.astype(np.int32)
        if bg is not None:
            lab = _drop_background(lab, small, bg, s.background_tol)
        if s.min_thickness > 0:
            lab = _merge_thin(lab, s.min_thickness)
        if levels:
            lab = _nest(levels[-1], lab)
        levels.append(lab)
    if s.absorb_parts > 0 and len(levels) > 1:
        levels[-1] = _absorb_parts(levels[-1], s.absorb_parts * h * w, s.absorb_share)
    return levels, box


def _geometry_levels(image: np.ndarray, geometry: Any, s: BuiltinSettings) -> tuple[list[np.ndarray], tuple[int, int, int, int]]:
    """:func:`_level_labels` for a view rendered from the splats, with its geometry
    (:class:`engine.masks.geometry.ViewGeometry`): (fine labels, coarse labels) at work size and
    the box they cover.

    Background: pixels the splats do not cover (alpha < 0.5), exactly. Support: the scene's
    ground or table (:func:`engine.masks.geometry.support_mask`), one segment at both levels
    (pieces of it seen between objects are one surface, not parts to push apart) that never
    joins an object. Fine: colour regions (Felzenszwalb at ``scales[0]``) of the rest, cut where
    depth jumps (:func:`engine.masks.geometry.depth_edges`: two same-coloured surfaces at
    different depths are different parts) and, with ``normal_cut_deg``, where normals turn by
    more. Coarse: fine regions joined into objects when depth runs on across most
    (``link_share``) of the boundary they share; an object in front of another is cut off by
    the depth jump along its outline."""
    from scipy import ndimage
    from skimage.measure import label as connected
    from skimage.segmentation import felzenszwalb

    from .geometry import depth_edges, normal_edges, pair_continuity, support_mask

    h_img, w_img = image.shape[:2]
    solid_full = geometry.alpha >= 0.5
    rows, cols = np.flatnonzero(solid_full.any(axis=1)), np.flatnonzero(solid_full.any(axis=0))
    if rows.size == 0:
        return [np.full((1, 1), UNASSIGNED, np.int32)] * 2, (0, 1, 0, 1)
    box = _grown_box(rows, cols, h_img, w_img, s.crop_margin)
    y0, y1, x0, x1 = box
    crop = image[y0:y1, x0:x1]
    h0, w0 = crop.shape[:2]
    small = _to_work_size(crop, s.work_size)
    h, w = small.shape[:2]
    geo = geometry.crop_resize(box, _resize_index(h, h0), _resize_index(w, w0))
    geo = geo.smoothed(s.normal_sigma, s.depth_median)
    solid = geo.alpha >= 0.5
    support = support_mask(geo, max_tilt_deg=s.support_tilt_deg, height_tol=s.support_height_tol) & solid
    cut = depth_edges(geo, s.depth_jump)
    if s.normal_cut_deg > 0:
        cut |= normal_edges(geo, s.normal_cut_deg)
    regions = felzenszwalb(small, scale=s.scales[0], sigma=s.sigma, min_size=s.min_size).astype(np.int64)
    if support.any() and s.support_colour_tol > 0:
        # the support is a surface of one look: a colour region lying mostly on the support
        # plane but coloured unlike it (a flat coaster, a lamp's foot) is an object on it
        nr = int(regions.max()) + 1
        on = np.bincount(regions[support], minlength=nr)
        size = np.bincount(regions[solid], minlength=nr)
        mean = np.stack([np.bincount(regions[solid], weights=small[..., c][solid].astype(np.float64), minlength=nr)
                         for c in range(3)], 1) / np.maximum(size, 1)[:, None]
        ref = np.median(small[support].astype(np.float64), axis=0)
        unlike = np.linalg.norm(mean - ref, axis=1) > s.support_colour_tol
        support &= ~unlike[regions]
    if support.any() and s.support_smooth > 1:
        # rough ground (gravel) has normals that scatter pixel by pixel: the support is what
        # most of each pixel's neighbourhood is
        frac = ndimage.uniform_filter(support.astype(np.float64), size=s.support_smooth)
        support = solid & (frac > 0.5)
    objects = solid & ~support
    # colour regions, split by the support outline and cut along depth jumps
    keep = objects & ~cut
    fine = connected(np.where(keep, regions + 1, 0), background=0, connectivity=1).astype(np.int64) - 1
    if (fine >= 0).any() and (objects & (fine < 0)).any():  # cut pixels join the nearest region
        _, (iy, ix) = ndimage.distance_transform_edt(fine < 0, return_indices=True)
        fill = objects & (fine < 0)
        fine[fill] = fine[iy[fill], ix[fill]]
    fine = np.where(objects, fine, UNASSIGNED).astype(np.int32)
    if (fine >= 0).any():
        fine = (connected(fine + 1, background=0, connectivity=1) - 1).astype(np.int32)
    if s.min_thickness > 0:
        fine = _merge_thin(fine, s.min_thickness)
    # objects: fine regions joined across depth-continuous boundaries (union-find)
    n = int(fine.max()) + 1
    parent = np.arange(max(n, 0))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if n > 1:
        a, b, cont, pa, pb = pair_continuity(fine, geo, s.depth_jump)
        lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
        key = lo * n + hi
        total = np.bincount(key, minlength=n * n)
        good = np.bincount(key[cont], minlength=n * n)
        if s.stack_share > 0 and geo.up is not None:
            # one region standing on the other's flat top (a statue on its pedestal): on the
            # boundary, the lower side faces up and the upper side does not
            flat_n = geo.normals.reshape(-1, 3).astype(np.float64) @ geo.up
            height = geo.points().reshape(-1, 3) @ geo.up
            faces_up = flat_n > np.cos(np.radians(s.support_tilt_deg))
            stands = cont & (faces_up[pa] != faces_up[pb]) & (
                np.where(faces_up[pa], height[pb] > height[pa], height[pa] > height[pb]))
            stacked = np.bincount(key[stands], minlength=n * n)
            good = np.where(stacked >= s.stack_share * np.maximum(good, 1), 0, good)
        if s.colour_veto_area > 0:
            # large regions join only within one coarse colour region (stacked blocks of one
            # monument stay apart); small ones (a handle, a cap) join across colours
            big = felzenszwalb(small, scale=s.scales[-1], sigma=s.sigma,
                               min_size=int(round(s.min_size * s.scales[-1] / s.scales[0]))).astype(np.int64)
            okf = fine >= 0
            nb = int(big.max()) + 1
            tab = np.bincount(fine[okf].astype(np.int64) * nb + big[okf], minlength=n * nb).reshape(n, nb)
            colour_of = tab.argmax(axis=1)
            area = tab.sum(axis=1)
            # a group's colour: that of its large regions (-1 while it has none)
            group_colour = np.where(area >= s.colour_veto_area * h * w, colour_of, -1)
        else:
            group_colour = np.full(n, -1, np.int64)
        links = np.flatnonzero((total > 0) & (good >= 2) & (good >= s.link_share * total))
        for k in links[np.argsort(-(good[links] / total[links]), kind="stable")]:  # surest links first
            ra, rb = root(int(k // n)), root(int(k % n))
            if ra == rb:
                continue
            ca, cb = group_colour[ra], group_colour[rb]
            if ca >= 0 and cb >= 0 and ca != cb:
                continue
            keep, gone = min(ra, rb), max(ra, rb)
            parent[gone] = keep
            group_colour[keep] = max(ca, cb)
    roots = np.array([root(i) for i in range(n)], np.int64) if n > 0 else np.zeros(0, np.int64)
    coarse = np.where(fine >= 0, roots[np.maximum(fine, 0)], UNASSIGNED).astype(np.int64)
    if n > 0:
        _, inv = np.unique(roots, return_inverse=True)
        coarse = np.where(fine >= 0, inv.reshape(-1)[np.maximum(fine, 0)], UNASSIGNED)
    if n > 1 and s.part_colour_tol > 0:
        # within one object, regions of one colour are one part even where they do not touch
        # (a chair's four legs, a handle seen on both sides of a body)
        ok = fine >= 0
        cnt = np.bincount(fine[ok], minlength=n).astype(np.float64)
        col = np.stack([np.bincount(fine[ok], weights=small[..., c][ok].astype(np.float64), minlength=n)
                        for c in range(3)], 1) / np.maximum(cnt, 1)[:, None]
        obj = inv.reshape(-1) if n > 0 else np.zeros(0, np.int64)
        part = np.arange(n)
        for i in range(n):
            for j in range(i):
                if obj[i] == obj[j] and part[j] == j and np.linalg.norm(col[i] - col[j]) <= s.part_colour_tol:
                    part[i] = j
                    break
        fine = np.where(ok, part[np.maximum(fine, 0)], UNASSIGNED).astype(np.int32)
    levels = []
    for lab in (fine.astype(np.int64), coarse.astype(np.int64)):
        top = int(lab.max()) + 1 if (lab >= 0).any() else 0
        if support.any():
            lab = np.where(support, top, lab)
        levels.append(lab.astype(np.int32))
    return levels, box


def _nest(finer: np.ndarray, coarser: np.ndarray) -> np.ndarray:
    """Make ``coarser`` a union of ``finer`` regions: each finer region joins the coarser region
    that covers most of it (pixels outside every finer region keep their coarser label), then
    the result is split into connected pieces. With nested levels, every pixel's coarse segment
    is at least as large as its fine one, as for an object and its parts."""
    from skimage.measure import label as connected

    nf, nc = int(finer.max()) + 1, int(coarser.max()) + 1
    if nf <= 0 or nc <= 0:
        return coarser
    both = (finer >= 0) & (coarser >= 0)
    table = np.bincount(finer[both].astype(np.int64) * nc + coarser[both], minlength=nf * nc).reshape(nf, nc)
    choice = np.where(table.sum(axis=1) > 0, table.argmax(axis=1), -1)
    lab = np.where(finer >= 0, choice[np.maximum(finer, 0)], coarser)
    return (connected(lab + 1, background=0, connectivity=1) - 1).astype(np.int32)


def _merge_regions(lab: np.ndarray, eligible: np.ndarray, max_area: float, share: float, drop_isolated: bool) -> np.ndarray:
    """Merge regions into neighbours, smallest first, with borders and areas updated after every
    merge, until nothing changes.

    A region r is merged when ``eligible[r]`` and its area is below ``max_area``, into the
    neighbour holding the longest part of its border with other regions, if that part is at
    least ``share`` of it (borders with unassigned pixels do not count). With
    ``drop_isolated``, eligible regions with no neighbour become unassigned."""
    n = int(lab.max()) + 1
    if n <= 0:
        return lab
    pairs = []
    for a, b in ((lab[:, :-1], lab[:, 1:]), (lab[:-1], lab[1:])):
        m = (a != b) & (a >= 0) & (b >= 0)
        pairs.append(np.stack([a[m], b[m]], 1))
    p = np.concatenate(pairs)
    p = np.concatenate([p, p[:, ::-1]])  # both directions
    counts = np.zeros((n, n), np.int64)
    np.add.at(counts, (p[:, 0], p[:, 1]), 1)
    area = np.bincount(lab[lab >= 0], minlength=n).astype(np.int64)
    alive = area > 0
    owner = np.arange(n)
    changed = True
    while changed:
        changed = False
        for r in np.argsort(area, kind="stable"):
            if not alive[r] or not eligible[r] or area[r] >= max_area:
                continue
            total = counts[r].sum()
            if total == 0:
                if drop_isolated:
                    alive[r] = False
                    owner[owner == r] = -1
                continue
            best = int(np.argmax(counts[r]))
            if counts[r, best] < share * total:
                continue
            counts[best] += counts[r]
            counts[:, best] += counts[:, r]
            counts[best, best] = 0
            counts[r] = 0
            counts[:, r] = 0
            area[best] += area[r]
            area[r] = 0
            alive[r] = False
            owner[owner == r] = best
            changed = True
    ids = np.full(n + 1, UNASSIGNED, np.int64)  # slot n: unassigned stays unassigned
    kept = owner >= 0
    if kept.any():
        ids[:n][kept] = np.unique(owner[kept], return_inverse=True)[1]
    return ids[np.where(lab >= 0, lab, n)].astype(np.int32)


def _absorb_parts(lab: np.ndarray, max_area: float, share: float) -> np.ndarray:
    """Merge each region smaller than ``max_area`` pixels into the neighbour that holds at least
    ``share`` of its border with other regions: a small part mostly enclosed by one region
    belongs to that region's object (the bib on the statue)."""
    n = int(lab.max()) + 1
    return _merge_regions(lab, np.ones(max(n, 0), bool), max_area, share, drop_isolated=False)


def _merge_thin(lab: np.ndarray, min_thickness: float) -> np.ndarray:
    """Merge slivers (regions with fewer than ``min_thickness`` pixels per boundary pixel, such
    as the soft transition between two surfaces or the rim of a rendered object) into the
    neighbour they share most border with; slivers with no neighbour become unassigned. They
    are not parts of anything and would get an outsized share of importance-sampled training
    pixels."""
    n = int(lab.max()) + 1
    if n <= 0:
        return lab
    edge = np.zeros(lab.shape, bool)
    dx = lab[:, 1:] != lab[:, :-1]
    dy = lab[1:] != lab[:-1]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:] |= dy
    edge[:-1] |= dy
    valid = lab >= 0
    area = np.bincount(lab[valid], minlength=n)
    rim = np.bincount(lab[valid & edge], minlength=n)
    thin = area < min_thickness * np.maximum(rim, 1)
    if not thin.any():
        return lab
    return _merge_regions(lab, thin, np.inf, 0.0, drop_isolated=True)


def _background_colour(small: np.ndarray, tol: float) -> np.ndarray | None:
    """The flat colour [3] most of the image border has (a rendered view's background), or
    None when under 75% of the border pixels are within ``tol`` of one colour."""
    border = np.concatenate([small[0], small[-1], small[1:-1, 0], small[1:-1, -1]]).astype(np.int16)
    colours, counts = np.unique(border, axis=0, return_counts=True)
    mode = colours[np.argmax(counts)]
    close = np.abs(border - mode).max(axis=1) <= tol
    return mode if close.mean() >= 0.75 else None


def _drop_background(lab: np.ndarray, small: np.ndarray, bg_colour: np.ndarray, tol: float) -> np.ndarray:
    """Set to -1 the regions that touch the border and are mostly (80%+) the background colour
    [3] (within ``tol``): the empty background of a view rendered from splats."""
    n = int(lab.max()) + 1
    if n <= 0:
        return lab
    is_bg = np.abs(small.astype(np.int16) - bg_colour).max(axis=2) <= tol
    valid = lab >= 0
    area = np.bincount(lab[valid], minlength=n)
    bg_px = np.bincount(lab[valid & is_bg], minlength=n)
    border = np.zeros(n, bool)
    for edge in (lab[0], lab[-1], lab[:, 0], lab[:, -1]):
        border[edge[edge >= 0]] = True
    bg = border & (bg_px >= 0.8 * np.maximum(area, 1))
    if bg.any():
        lab = np.where(valid & bg[np.maximum(lab, 0)], UNASSIGNED, lab).astype(np.int32)
    return lab


class BuiltinMaskSource(MaskSourceBase):
    """Classical two-scale segmentation (scikit-image Felzenszwalb); no download, runs anywhere.

    Lower quality than SAM (see the module docstring). ``settings``: a BuiltinSettings, or
    keyword overrides of its fields (``BuiltinMaskSource(scales=(300, 1200))``).
    """

    name = "builtin"
    quality = "builtin (lower quality than SAM)"

    def __init__(self, settings: BuiltinSettings | None = None, **overrides: Any) -> None:
        base = settings or BuiltinSettings()
        if overrides:
            unknown = sorted(set(overrides) - set(asdict(base)))
            if unknown:
                raise MaskError(f"unknown builtin mask setting(s): {', '.join(unknown)}")
            base = BuiltinSettings(**{**asdict(base), **overrides})
        self.config = base

    @property
    def uses_geometry(self) -> bool:  # type: ignore[override]
        """Whether views rendered from the splats should come with their geometry."""
        return self.config.use_geometry

    def settings(self) -> dict[str, Any]:
        return {"builtin": asdict(self.config), "version": 2}

    def _segment_labels(self, image: np.ndarray, geometry: Any = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(per level int32 [H, W] global segment IDs with -1 = none, per level int64 [R_k]
        areas in pixels). Global IDs number segments level by level, finest first; segments
        smaller than min_area are removed and the rest renumbered."""
        h, w = image.shape[:2]
        if geometry is not None and self.config.use_geometry:
            if geometry.shape != (h, w):
                raise MaskError(f"builtin masks: geometry is {geometry.shape[1]}x{geometry.shape[0]} but the image is "
                                f"{w}x{h}")
            levels, (y0, y1, x0, x1) = _geometry_levels(image, geometry, self.config)
        else:
            levels, (y0, y1, x0, x1) = _level_labels(image, self.config)
        ri, ci = _resize_index(y1 - y0, levels[0].shape[0]), _resize_index(x1 - x0, levels[0].shape[1])
        min_px = self.config.min_area * h * w
        out, areas, offset = [], [], 0
        for lab in levels:
            full = np.full((h, w), UNASSIGNED, np.int32)
            full[y0:y1, x0:x1] = lab[ri[:, None], ci[None, :]]
            n = int(lab.max()) + 1
            area = np.bincount(full[full >= 0], minlength=max(n, 0)) if n > 0 else np.zeros(0, np.int64)
            keep = (area >= max(min_px, 1))
            new_id = np.full(max(n, 0) + 1, UNASSIGNED, np.int64)  # slot n: index for -1
            new_id[:n][keep] = offset + np.arange(int(keep.sum()))
            full = new_id[np.where(full >= 0, full, n)].astype(np.int32)
            out.append(full)
            areas.append(area[keep].astype(np.int64))
            offset += int(keep.sum())
        return out, areas

    def segments(
        self, image: np.ndarray, cancel: threading.Event | None = None, report: Report | None = None,
        geometry: Any = None,
    ) -> list[dict[str, Any]]:
        """image uint8 [H, W, 3] -> SAM-style records (bool ``segmentation`` [H, W], ``area``,
        ``bbox`` XYWH, ``level`` 0 = finest), fine-scale regions first. ``geometry``: the view's
        :class:`engine.masks.geometry.ViewGeometry` when it was rendered from the splats."""
        image = check_image(image)
        labels, areas = self._segment_labels(image, geometry)
        records: list[dict[str, Any]] = []
        for k, (full, area) in enumerate(zip(labels, areas)):
            first = len(records)
            for j in range(area.size):
                m = full == first + j
                ys, xs = np.nonzero(m.any(axis=1))[0], np.nonzero(m.any(axis=0))[0]
                records.append({
                    "segmentation": m,
                    "area": int(area[j]),
                    "bbox": [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)],
                    "level": k,
                })
        return records

    def view_masks(
        self,
        image: np.ndarray,
        name: str | None = None,
        cancel: threading.Event | None = None,
        report: Report | None = None,
        geometry: Any = None,
    ) -> ViewMasks:
        """The area rule over :meth:`segments`, computed directly from the per-level label maps
        (each level is a partition, so a pixel is covered by at most one segment per level):
        identical result, without building [H, W] masks per segment."""
        image = check_image(image, name)
        labels, areas = self._segment_labels(image, geometry)
        all_areas = np.concatenate(areas + [np.zeros(1, np.int64)])  # last slot: "none"
        none = all_areas.size - 1
        coarse = np.full(labels[0].shape, UNASSIGNED, np.int32)
        fine = coarse.copy()
        best_c = np.full(labels[0].shape, -1, np.int64)
        best_f = np.full(labels[0].shape, np.iinfo(np.int64).max, np.int64)
        for full in labels:  # levels in ID order: strict comparisons keep the lower ID on ties
            a = all_areas[np.where(full >= 0, full, none)]
            has = full >= 0
            up = has & (a > best_c)
            coarse[up], best_c[up] = full[up], a[up]
            down = has & (a < best_f)
            fine[down], best_f[down] = full[down], a[down]
        return ViewMasks(coarse, fine)
