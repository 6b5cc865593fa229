"""Training data: views (camera + image + two-level masks) and the frozen-geometry pixel cache.

Geometry and opacity are frozen in Click-Gaussian, so the blending weights ``w = alpha * T`` of
every pixel are constants: each training view is rendered once with its top-K contributors
(:func:`engine.render.renderer.render` with ``contributors_k``), and every iteration renders its sampled
pixels' features as ``sum_k w[p, k] f[ids[p, k]]`` (:func:`engine.render.renderer.blend`), which is
differentiable in the features. :class:`ViewCache` keeps only the pixels that carry a training
signal (assigned in at least one level and covered by the splats).

Mask clean-up (ours, measured in docs/quality.md): before a view's pixels are kept, each level's
ID map loses its sliver segments (thin remnants that the area rule leaves where overlapping masks
disagree, :func:`remove_slivers`) and the pixels where two segments meet
(:func:`trim_boundaries`); both become unassigned at that level only.

Importance sampling (ours, the paper says only "based on mask pixel count"): half of each
iteration's pixels go to the coarse segments and half to the fine ones, equally per segment and
uniformly inside a segment, i.e. p(pixel) = 0.5 / (S_c * area_c(seg_c)) + 0.5 / (S_f *
area_f(seg_f)) with S_l the number of segments of level l in the view. A 200-pixel part thus gets
as many samples as a 50,000-pixel wall.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..core.cameras import Camera
from ..core.errors import CameraError, Cancelled, TrainingError

MIN_COVERAGE = 0.5  # pixels whose cached weights sum below this carry no feature to train
SLIVER_MIN_SOLID = 0.5  # a segment with less than this share of its pixels in solid 3x3 blocks is a sliver


def solid_share(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per segment of an ID map ``ids`` int [H, W] (-1 = none): (pixel count, count of its pixels
    that lie in a 3x3 block of pixels all of that segment), both int64 [max id + 1]. The second is
    the size of the segment's morphological opening by a 3x3 square, computed for all segments at
    once with 9 shifted comparisons."""
    m = np.asarray(ids)
    h, w = m.shape
    n = int(m.max()) + 1 if m.size and m.max() >= 0 else 0
    pad = np.pad(m, 1, constant_values=-2)
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    same = [pad[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] == m for dy, dx in offsets]
    interior = np.logical_and.reduce(same) & (m >= 0)  # a 3x3 block of one segment centred here
    ipad = np.pad(interior, 1)
    opened = np.zeros_like(interior)
    for (dy, dx), eq in zip(offsets, same):
        opened |= ipad[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] & eq
    ok = m >= 0
    return np.bincount(m[ok], minlength=n), np.bincount(m[ok & opened], minlength=n)


def trim_boundaries(ids: np.ndarray) -> np.ndarray:
    """A copy of the ID map ``ids`` int [H, W] where every pixel that touches (8-neighbourhood) a
    pixel of another assigned segment is set to -1; borders with unassigned pixels stay.

    Why (ours; measured in docs/quality.md): where two automatic masks meet, which one a pixel
    belongs to is a coin toss (SAM's boundaries wander by a pixel or two, differently in every
    view), and the rendered feature there blends both sides. Those pixels pull the features of
    neighbouring parts together through the positive term every time they are sampled, while
    the hinged negative term stops pushing at the margin; over a long run (3,000 iterations)
    small parts were measured to merge into their neighbours (fine mIoU 84 at 400 iterations,
    70 at 3,000). Training on the segments' interiors only keeps them apart; a part has to be
    three pixels wide to keep a pixel at a level in that view, which costs little at real
    image sizes."""
    m = np.asarray(ids)
    h, w = m.shape
    pad = np.pad(m, 1, constant_values=-1)
    edge = np.zeros(m.shape, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                nb = pad[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                edge |= (nb >= 0) & (nb != m)
    out = m.copy()
    out[edge & (m >= 0)] = -1
    return out


def remove_slivers(ids: np.ndarray, min_solid: float = SLIVER_MIN_SOLID) -> np.ndarray:
    """A copy of the ID map ``ids`` int [H, W] with sliver segments set to -1 (unassigned).

    Why (ours; measured in docs/quality.md): automatic masks of one object and of its parts never
    share their boundaries exactly (SAM's differ by a pixel or two), so the area rule leaves thin
    remnants: where the whole-object mask reaches past its part masks, the fine map keeps the
    object's ID in a ring one or two pixels wide around and between the parts; where a part mask
    reaches past its object's, the coarse map keeps the part's ID in a thin fringe. Such a remnant
    is not a region of the image, but importance sampling gives every segment the same share of
    samples, so a 20-pixel ring pulling the boundary pixels of all of an object's parts together
    weighs as much as a whole part. A segment is a sliver when less than ``min_solid`` of its
    pixels lie in 3x3 blocks entirely inside it (:func:`solid_share`); real regions, even thin
    parts three pixels wide, keep nearly all of their pixels in such blocks, remnants almost none
    (the two groups are far apart: docs/quality.md)."""
    m = np.asarray(ids)
    total, solid = solid_share(m)
    if total.size == 0:
        return m.copy()
    sliver = (total > 0) & (solid < min_solid * total)
    if not sliver.any():
        return m.copy()
    out = m.copy()
    out[(m >= 0) & sliver[np.maximum(m, 0)]] = -1
    return out


@dataclass
class TrainView:
    """One training view. camera: OpenCV :class:`Camera`; image: uint8 [H, W, 3] RGB or None
    (then rendered from the splats); masks: :class:`engine.masks.ViewMasks` [H, W] or None (then
    computed by a mask source); contributors: the per-pixel contributors of the render that made
    ``image`` (:class:`engine.render.renderer.PackedContributors`, float32 weights, only the pixels
    covered enough to train on, see :func:`pack_for_training`) or None: :func:`build_caches` uses
    them instead of rendering the view a second time when their K is the one it asks for."""

    camera: Camera
    image: np.ndarray | None = None
    masks: Any = None
    contributors: Any = None


@dataclass
class ViewCache:
    """The training pixels of one view (P_v of them), on the training device.

    ids: [P_v, K] int32 contributor Gaussian indices, front to back (empty slots point at
        Gaussian 0 with weight 0); weights: [P_v, K] float32 ``alpha * T``;
    seg_c, seg_f: [P_v] int64 view-local segment IDs, -1 = unassigned at that level;
    prob: [P_v] float32 importance-sampling probabilities (sum 1); pixels: [P_v] int64 flat
    pixel index ``v * W + u``; height, width: the view's size; name: the camera's name."""

    ids: torch.Tensor
    weights: torch.Tensor
    seg_c: torch.Tensor
    seg_f: torch.Tensor
    prob: torch.Tensor
    pixels: torch.Tensor
    height: int
    width: int
    name: str = ""

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def to(self, device: torch.device | str) -> "ViewCache":
        """A copy on another device (e.g. CUDA)."""
        d = torch.device(device)
        return ViewCache(self.ids.to(d), self.weights.to(d), self.seg_c.to(d), self.seg_f.to(d), self.prob.to(d),
                         self.pixels.to(d), self.height, self.width, self.name)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.ids, self.weights, self.seg_c, self.seg_f, self.prob, self.pixels))


def importance_probabilities(seg_c: np.ndarray, seg_f: np.ndarray) -> np.ndarray:
    """Per-pixel sampling probabilities [P] float64 (see module doc) for IDs [P] (-1 = none)."""
    p = np.zeros(seg_c.shape[0], dtype=np.float64)
    levels = [s for s in (seg_c, seg_f) if (s >= 0).any()]
    for seg in levels:
        ok = seg >= 0
        _, inv, counts = np.unique(seg[ok], return_inverse=True, return_counts=True)
        p[ok] += 1.0 / (len(levels) * len(counts) * counts[inv.reshape(-1)])
    total = p.sum()
    return p / total if total > 0 else p


def cache_from_contributors(
    ids: np.ndarray | torch.Tensor,
    weights: np.ndarray | torch.Tensor,
    masks: Any,
    *,
    device: torch.device | str = "cpu",
    name: str = "",
    drop_slivers: bool = True,
    trim_edges: bool = True,
) -> ViewCache | None:
    """Build a :class:`ViewCache` from one view's contributors (ids int [H, W, K], -1 = empty;
    weights float [H, W, K]) and its :class:`ViewMasks`. Mask clean-up (ours, module doc), each
    level separately: with ``drop_slivers`` (default) sliver segments become unassigned
    (:func:`remove_slivers`), then with ``trim_edges`` (default) the pixels where two segments
    meet (:func:`trim_boundaries`). Returns None when no pixel is both assigned and covered (the
    caller reports the view)."""
    ids_t = torch.as_tensor(ids)
    w_t = torch.as_tensor(weights, dtype=torch.float32)
    h, w, k = ids_t.shape
    if masks.shape != (h, w):
        raise TrainingError(f"view {name!r}: masks are {masks.shape[1]}x{masks.shape[0]} but the camera is {w}x{h}")
    coarse, fine = np.asarray(masks.coarse), np.asarray(masks.fine)
    if drop_slivers:
        coarse, fine = remove_slivers(coarse), remove_slivers(fine)
    if trim_edges:
        coarse, fine = trim_boundaries(coarse), trim_boundaries(fine)
    seg_c = coarse.reshape(-1).astype(np.int64)
    seg_f = fine.reshape(-1).astype(np.int64)
    ids_t = ids_t.reshape(h * w, k).cpu()
    w_t = w_t.reshape(h * w, k).cpu()
    cover = w_t.clamp_min(0).sum(1).numpy()
    keep = ((seg_c >= 0) | (seg_f >= 0)) & (cover >= MIN_COVERAGE)
    if not keep.any():
        return None
    pix = np.flatnonzero(keep)
    sub_ids = ids_t[torch.from_numpy(pix)].long()
    sub_w = w_t[torch.from_numpy(pix)]
    empty = sub_ids < 0
    sub_w = sub_w.masked_fill(empty, 0.0)
    sub_ids = sub_ids.masked_fill(empty, 0)
    # drop trailing slots no pixel uses (contributors are front to back, empties at the end)
    used = (sub_w > 0).any(0).nonzero()
    k_eff = int(used.max()) + 1 if used.numel() else 1
    sub_ids, sub_w = sub_ids[:, :k_eff].contiguous(), sub_w[:, :k_eff].contiguous()
    sc, sf = seg_c[pix], seg_f[pix]
    prob = importance_probabilities(sc, sf)
    dev = torch.device(device)
    return ViewCache(
        ids=sub_ids.to(torch.int32).to(dev),
        weights=sub_w.to(dev),
        seg_c=torch.from_numpy(sc).to(dev),
        seg_f=torch.from_numpy(sf).to(dev),
        prob=torch.from_numpy(prob.astype(np.float32)).to(dev),
        pixels=torch.from_numpy(pix.astype(np.int64)).to(dev),
        height=h,
        width=w,
        name=name,
    )


def build_caches(
    gaussians: Any,
    views: Sequence[TrainView],
    contributors_k: int,
    *,
    progress: Callable[[int, int], Any] | None = None,
    cancel: threading.Event | None = None,
) -> tuple[list[ViewCache], list[str]]:
    """Render every view once with its top-K contributors and keep its training pixels.

    Returns (caches, warnings). Views whose masks assign no covered pixel are skipped with a
    warning; raises :class:`TrainingError` when no view is left."""
    from ..render.renderer import render

    caches: list[ViewCache] = []
    warnings: list[str] = []
    for i, view in enumerate(views):
        if cancel is not None and cancel.is_set():
            raise Cancelled("training cancelled while preparing views")
        name = view.camera.name or f"view {i}"
        if view.masks is None:
            raise TrainingError(f"{name} has no masks (give a mask source or masks for every view)")
        kept = view.contributors
        if kept is not None and kept.k == contributors_k:  # from the render that made the image
            contrib = kept.to_dense()
        else:
            contrib = render(gaussians, view.camera, contributors_k=contributors_k).contributors
        if contrib is None:
            raise TrainingError("the renderer returned no contributors")
        cache = cache_from_contributors(contrib.ids, contrib.weights, view.masks, device=gaussians.device, name=name)
        del contrib
        if cache is None:
            warnings.append(f"{name}: no masked pixel is covered by the splats; view skipped")
        else:
            caches.append(cache)
        if progress is not None:
            progress(i + 1, len(views))
    if not caches:
        raise TrainingError(
            f"none of the {len(views)} training views has a usable mask (all masks empty or on empty space)"
        )
    return caches, warnings


def check_views(views: Sequence[TrainView]) -> None:
    """Raise a clear error for an unusable list of views."""
    if not views:
        raise TrainingError("no training views given")
    for i, v in enumerate(views):
        name = v.camera.name or f"view {i}"
        if not isinstance(v.camera, Camera):
            raise TrainingError(f"{name}: camera is a {type(v.camera).__name__}, not an engine Camera")
        if v.masks is not None and tuple(v.masks.shape) != (v.camera.height, v.camera.width):
            raise TrainingError(
                f"{name}: masks are {v.masks.shape[1]}x{v.masks.shape[0]} but the camera is "
                f"{v.camera.width}x{v.camera.height}"
            )
        if v.image is not None:
            img = np.asarray(v.image)
            if img.ndim != 3 or img.shape[:2] != (v.camera.height, v.camera.width):
                raise CameraError(
                    f"{name}: image is {list(img.shape)} but the camera is {v.camera.width}x{v.camera.height}"
                )


def load_image(path: str, width: int, height: int) -> np.ndarray:
    """An image file as uint8 [height, width, 3] RGB (resized with Lanczos when its size differs)."""
    from PIL import Image

    if not os.path.isfile(path):
        raise CameraError(f"image {path} does not exist")
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (width, height):
                im = im.resize((width, height), Image.LANCZOS)
            return np.asarray(im, dtype=np.uint8).copy()
    except OSError as exc:
        raise CameraError(f"image {path} cannot be read ({exc})") from None


def render_image(gaussians: Any, camera: Camera) -> np.ndarray:
    """The splats' own colour image of a camera: uint8 [H, W, 3] RGB over a black background."""
    return render_image_and_contributors(gaussians, camera, 0)[0]


def render_image_and_contributors(gaussians: Any, camera: Camera, contributors_k: int) -> tuple[np.ndarray, Any]:
    """The splats' colour image of a camera (as :func:`render_image`) and, with
    ``contributors_k`` > 0, the contributors of the same render packed by
    :func:`pack_for_training` (else None).

    Why: the training cache (:func:`build_caches`) needs each view's top-K contributors, and
    the tile rasterizer yields them in the pass that renders the image, with the image unchanged
    (its blended sums do not depend on K); rendering a view once instead of twice halves the
    preparation's rendering, which is most of it at a million Gaussians. Where gsplat renders
    the image (CUDA) the contributors are not taken from it (gsplat returns none), so the image
    stays gsplat's and the cache is rendered later as before (None is returned)."""
    from ..render.renderer import gsplat_available, render

    k = int(contributors_k)
    if k and gaussians.device.type == "cuda" and gsplat_available():
        k = 0
    out = render(gaussians, camera, contributors_k=k)
    rgb = out.values[..., :3].clamp(0, 1).mul(255).round().to(torch.uint8)
    packed = pack_for_training(out.contributors) if out.contributors is not None else None
    return rgb.cpu().numpy(), packed


def pack_for_training(contrib: Any) -> Any:
    """A :class:`~engine.render.renderer.Contributors`' pixels that a training cache can keep, in
    the compact CSR layout with exact (float32) weights: pixels whose weights sum below
    :data:`MIN_COVERAGE` are left empty (:func:`cache_from_contributors` drops them whatever their
    masks, so the cache built from ``.to_dense()`` is the one built from ``contrib``)."""
    from ..render.renderer import Contributors, PackedContributors

    ids = contrib.ids.reshape(-1, contrib.k)
    cover = contrib.weights.reshape(-1, contrib.k).float().clamp_min(0).sum(1)
    ids = ids.masked_fill((cover < MIN_COVERAGE)[:, None], -1).reshape(contrib.ids.shape)
    return PackedContributors.from_dense(Contributors(ids, contrib.weights), weight_dtype=torch.float32)


# Bytes per view pixel held until training ends, by layout: the image (3), two int32 mask maps
# (8), the training cache (:class:`ViewCache`: per kept pixel 32 contributor slots of int32 id +
# float32 weight and 28 bytes of segment IDs, probability and pixel index: 284) and, for a view
# rendered from the splats, the contributors of that render kept for the cache
# (:class:`~engine.render.renderer.PackedContributors`: an int64 offset per pixel and int32 id +
# float32 weight per filled slot: up to 264). A real capture covers the whole frame and its masks
# most of it, so the figure is the full-frame one (every pixel kept, every slot filled): 559.
# Measured (``python -m engine.bench train`` prints the cache size): the fox, an object on an
# empty background (20% of pixels kept, 26% covered), holds 3 + 8 + 57 (cache) + 53
# (contributors) = 121 per view pixel. An estimate to refuse absurd requests, not a budget.
_BYTES_PER_PIXEL = 3 + 8 + 284 + 264


def check_memory_for_views(cameras: Sequence[Camera]) -> None:
    """TrainingError when ``cameras`` obviously cannot be held in this machine's memory (e.g.
    100,000 views asked for by mistake), before hours are spent rendering them."""
    pixels = sum(int(c.width) * int(c.height) for c in cameras)
    need = pixels * _BYTES_PER_PIXEL
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # not on every OS
        return
    if need > have:
        raise TrainingError(
            f"{len(cameras)} training views of {pixels / len(cameras):,.0f} pixels need about {need / 2**30:.0f} GiB "
            f"for images, masks and caches, more than this machine's {have / 2**30:.0f} GiB: use fewer or smaller views"
        )


def view_geometry(gaussians: Any, camera: Camera, up_world: np.ndarray | None = None) -> Any:
    """The :class:`engine.masks.geometry.ViewGeometry` of a view rendered from the splats: depth,
    normals and opacity (:func:`engine.render.geometry.render_geometry`), the camera's intrinsics
    and ``up_world`` [3] (the scene's up, world frame) turned into the camera frame."""
    from ..masks.geometry import ViewGeometry
    from ..render.geometry import render_geometry

    depth, normals, alpha = render_geometry(gaussians, camera)
    up = None if up_world is None else np.asarray(camera.viewmat, np.float64)[:3, :3] @ np.asarray(up_world, np.float64)
    return ViewGeometry(depth, normals, alpha, np.asarray(camera.K, np.float64), up)


def views_from_scene(
    scene: Any,
    cameras: Sequence[Camera],
    mask_source: Any,
    *,
    images: Sequence[np.ndarray | None] | None = None,
    gaussians: Any = None,
    cache_dir: str | None = None,
    device: str = "auto",
    progress: Callable[[str, int, int], Any] | None = None,
    cancel: threading.Event | None = None,
    on_warning: Callable[[str], Any] | None = None,
    contributors_k: int = 0,
) -> list[TrainView]:
    """Training views for ``cameras``: each camera's image (``images[i]``, else the file at
    ``camera.image_path``, else rendered from the splats) and its two-level masks from
    ``mask_source`` through :func:`engine.masks.prepare_masks` (cached on disk in ``cache_dir``).

    progress(stage, done, total) with stage ``"images"`` or ``"masks"``; on_warning(message) receives
    the mask preparation's non-fatal warnings (a view without segments, an unwritable cache).
    With ``contributors_k`` > 0 a view whose image is rendered keeps the top-K contributors of
    that render (:func:`render_image_and_contributors`), so :func:`build_caches` with the same K
    does not render it again.

    A mask source that uses geometry (:func:`engine.masks.source.takes_geometry`: the built-in one)
    gets, for every view whose image is rendered from the splats, that view's depth, normals and
    opacity (:func:`engine.render.geometry.render_geometry`, one more render per view) and the
    scene's up direction (:func:`engine.core.cameras.estimate_up`) in the camera's frame. Views
    with a photo get none: the photo's edges need not fall on the splats' to the pixel."""
    from ..render.gaussians import Gaussians
    from ..masks import prepare_masks
    from ..masks.source import takes_geometry

    if not cameras:
        raise CameraError("no cameras given for training")
    check_memory_for_views(cameras)
    if images is not None and len(images) != len(cameras):
        raise CameraError(f"{len(images)} images for {len(cameras)} cameras")
    if gaussians is None:
        gaussians = Gaussians.from_scene(scene, device)
    named: list[tuple[str, np.ndarray]] = []
    kept: list[Any] = []
    want_geometry = takes_geometry(mask_source)
    geometry: list[Any] = []
    up_world = None
    if want_geometry:
        from ..core.cameras import estimate_up

        up_world = estimate_up(scene, cameras)
    for i, cam in enumerate(cameras):
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled while preparing training images")
        img = images[i] if images is not None else None
        if img is None and cam.image_path:
            img = load_image(cam.image_path, cam.width, cam.height)
        contrib = None
        geo = None
        if img is None:
            img, contrib = render_image_and_contributors(gaussians, cam, contributors_k)
            if want_geometry:
                geo = view_geometry(gaussians, cam, up_world)
        kept.append(contrib)
        geometry.append(geo)
        named.append((cam.name or f"view_{i:03d}", np.ascontiguousarray(img)))
        if progress is not None:
            progress("images", i + 1, len(cameras))

    def mask_progress(*args: Any) -> None:
        if progress is not None and len(args) >= 2:
            progress("masks", int(args[0]), int(args[1]))

    masks = prepare_masks(mask_source, named, cache_dir=cache_dir, progress=mask_progress, cancel=cancel,
                          on_warning=on_warning, geometry=geometry if want_geometry else None)
    return [TrainView(camera=c, image=img, masks=m, contributors=k)
            for c, (_, img), m, k in zip(cameras, named, masks, kept)]
