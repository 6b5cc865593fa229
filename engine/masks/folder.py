"""Masks computed elsewhere (e.g. SAM run on another machine), read from a folder.

Files are matched to a view by the stem of the view's name (``images/frame_0003.jpg`` ->
``frame_0003``). Exactly one of these must exist in the folder for every view:

============================  ================================================================
``<stem>.npz``                either two-level maps: integer arrays ``coarse`` and ``fine``
                              [H, W] (negative = unassigned), used as they are; or a segment
                              stack under ``masks`` / ``segmentation`` / ``segments`` (or the
                              file's only array): bool or 0/1 [S, H, W], optional ``areas`` [S]
``<stem>.npy``                a segment stack bool or 0/1 [S, H, W]; or an integer label map
                              [H, W] (negative = unassigned, each other value one segment)
``<stem>.png``                a label map: single-channel 8-bit (L or palette) or 16-bit PNG;
                              value v is segment v - 1, **0 and the largest value of the bit
                              depth (255, or 65535 for 16-bit) are unassigned**
``<stem>.coarse.png`` and     two label maps (same rules as ``<stem>.png``), one per level
``<stem>.fine.png``
``<stem>/``                   a folder of binary mask PNGs, one segment each (any non-zero pixel
                              is in the segment): the layout segment-anything's
                              ``scripts/amg.py`` writes (``0.png``, ``1.png``, ...; other files
                              such as ``metadata.csv`` are ignored)
============================  ================================================================

:func:`write_view_masks` writes masks (e.g. SAM's, computed on a GPU machine) in the
``<stem>.coarse.png`` + ``<stem>.fine.png`` layout, 16-bit, ID + 1 (0 = unassigned), so this
source reads them back exactly, and they can be inspected or touched up in an image editor.

Segment stacks go through the area rule (coarse keeps the largest overlapping segment, fine the
smallest). A single label map has no overlaps, so both levels get the same map.

numpy + Pillow only. Reading is as cheap as the mask cache, so this source is not cached.
"""

from __future__ import annotations

import os
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import MaskError
from .area_rule import UNASSIGNED, ViewMasks, area_rule_stack
from .source import MaskSourceBase, Report, check_image

_STACK_KEYS = ("masks", "segmentation", "segments")


def view_stem(name: str) -> str:
    """The stem a view's mask files are named by: ``"a/b/frame_01.jpg"`` -> ``"frame_01"``."""
    return Path(str(name).replace("\\", "/")).stem


def read_label_png(path: Path) -> np.ndarray:
    """A label PNG -> int32 [H, W] IDs: value v is segment v - 1; 0 and the bit depth's maximum
    (255 / 65535) are unassigned (-1). Raises MaskError for colour images or unreadable files."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.asarray(im)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise MaskError(f"mask image {path} cannot be read as a PNG ({exc})") from exc
    if mode in ("L", "P"):
        top = 255
    elif mode.startswith("I;16") or mode == "I":
        top = 65535  # PNG grey is at most 16-bit; Pillow may widen it to mode "I"
    elif mode == "1":
        top = -2  # binary: 1 is the only segment
    else:
        raise MaskError(f"label image {path} is {mode}; a label map must be a single-channel 8- or 16-bit PNG")
    values = arr.astype(np.int32)
    return np.where((values == 0) | (values == top), UNASSIGNED, values - 1).astype(np.int32)


def read_binary_png(path: Path) -> np.ndarray:
    """A binary mask PNG (any channels) -> bool [H, W] (non-zero = inside)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise MaskError(f"mask image {path} cannot be read as a PNG ({exc})") from exc
    return arr.any(axis=2) if arr.ndim == 3 else arr != 0


def _label_masks(ids: np.ndarray) -> ViewMasks:
    ids = np.where(ids < 0, UNASSIGNED, ids).astype(np.int32)
    return ViewMasks(ids, ids.copy())


def _stack_masks(stack: np.ndarray, path: Path, areas: np.ndarray | None = None) -> ViewMasks:
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise MaskError(f"segment stack in {path} must be [S, H, W], got shape {stack.shape}")
    if stack.dtype != bool:
        if not np.isin(stack, (0, 1)).all():
            raise MaskError(f"segment stack in {path} is not binary (values other than 0/1)")
        stack = stack.astype(bool)
    if areas is not None and np.asarray(areas).shape != (stack.shape[0],):
        raise MaskError(f"'areas' in {path} must have one value per segment ({stack.shape[0]})")
    return area_rule_stack(stack, areas)


class FolderMaskSource(MaskSourceBase):
    """Per-view masks read from ``folder`` (see the module docstring for the file layouts).

    Raises MaskError for a missing folder, a view with no (or more than one) mask file, a mask
    whose size differs from the view's image, and unreadable or malformed files.
    """

    name = "folder"
    cacheable = False

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise MaskError(f"mask folder not found: {self.folder}")
        self.quality = f"precomputed masks from {self.folder}"

    def settings(self) -> dict[str, Any]:
        return {"folder": str(self.folder.resolve())}

    def candidates(self, name: str) -> dict[str, list[Path]]:
        """The mask files present for one view, by layout ("npz", "npy", "png", "levels",
        "dir")."""
        stem = view_stem(name)
        f = self.folder
        found: dict[str, list[Path]] = {}
        for kind, paths in (
            ("npz", [f / f"{stem}.npz"]),
            ("npy", [f / f"{stem}.npy"]),
            ("png", [f / f"{stem}.png"]),
            ("levels", [f / f"{stem}.coarse.png", f / f"{stem}.fine.png"]),
        ):
            present = [p for p in paths if p.is_file()]
            if present:
                found[kind] = present
        if (f / stem).is_dir():
            found["dir"] = [f / stem]
        return found

    def segments(
        self, image: np.ndarray, cancel: threading.Event | None = None, report: Report | None = None
    ) -> list[dict[str, Any]]:
        raise MaskError("a mask folder is looked up by view name: use view_masks(image, name)")

    def view_masks(
        self,
        image: np.ndarray,
        name: str | None = None,
        cancel: threading.Event | None = None,
        report: Report | None = None,
    ) -> ViewMasks:
        """The two-level maps of the view ``name`` (image uint8 [H, W, 3] gives the size the
        masks must have)."""
        if not name:
            raise MaskError(f"masks from the folder {self.folder} need the view's name")
        image = check_image(image, name)
        found = self.candidates(name)
        stem = view_stem(name)
        if not found:
            raise MaskError(
                f"no mask file for view {name!r} in {self.folder} (looked for {stem}.npz, {stem}.npy, "
                f"{stem}.png, {stem}.coarse.png + {stem}.fine.png, {stem}/*.png)"
            )
        if len(found) > 1:
            listed = ", ".join(p.name for paths in found.values() for p in paths)
            raise MaskError(f"more than one mask file for view {name!r} in {self.folder}: {listed}; keep one")
        kind, paths = next(iter(found.items()))
        vm = self._read(kind, paths)
        h, w = image.shape[:2]
        if vm.shape != (h, w):
            raise MaskError(
                f"masks for view {name!r} ({paths[0]}) are {vm.shape[1]}x{vm.shape[0]} but its image is {w}x{h}"
            )
        return vm

    def _read(self, kind: str, paths: list[Path]) -> ViewMasks:
        path = paths[0]
        if kind == "npz":
            try:
                with np.load(path, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                raise MaskError(f"mask file {path} is not a readable .npz ({exc})") from exc
            if "coarse" in arrays or "fine" in arrays:
                if not ("coarse" in arrays and "fine" in arrays):
                    raise MaskError(f"mask file {path} needs both 'coarse' and 'fine' maps")
                c, f = arrays["coarse"], arrays["fine"]
                if c.ndim != 2 or c.shape != f.shape or not (np.issubdtype(c.dtype, np.integer) and np.issubdtype(f.dtype, np.integer)):
                    raise MaskError(f"'coarse' and 'fine' in {path} must be integer [H, W] maps of one size")
                return ViewMasks(np.where(c < 0, UNASSIGNED, c), np.where(f < 0, UNASSIGNED, f))
            key = next((k for k in _STACK_KEYS if k in arrays), None)
            if key is None:
                rest = [k for k in arrays if k != "areas"]
                if len(rest) != 1:
                    raise MaskError(
                        f"mask file {path} has arrays {sorted(arrays)}; expected 'coarse'+'fine' or a segment stack 'masks'"
                    )
                key = rest[0]
            return _stack_masks(arrays[key], path, arrays.get("areas"))
        if kind == "npy":
            try:
                arr = np.load(path, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise MaskError(f"mask file {path} is not a readable .npy ({exc})") from exc
            if arr.ndim == 2 and np.issubdtype(arr.dtype, np.integer):
                return _label_masks(arr)
            return _stack_masks(arr, path)
        if kind == "png":
            return _label_masks(read_label_png(path))
        if kind == "levels":
            if len(paths) != 2:
                have = paths[0].name
                raise MaskError(f"{have} in {self.folder} needs its other level (.coarse.png and .fine.png)")
            c, f = read_label_png(paths[0]), read_label_png(paths[1])
            if c.shape != f.shape:
                raise MaskError(f"{paths[0].name} and {paths[1].name} differ in size")
            return ViewMasks(c, f)
        # kind == "dir": one binary PNG per segment, in numeric order of the file names
        pngs = sorted(path.glob("*.png"), key=lambda p: (not p.stem.isdigit(), int(p.stem) if p.stem.isdigit() else 0, p.name))
        if not pngs:
            raise MaskError(f"mask folder {path} has no PNG segment files")
        masks = [read_binary_png(p) for p in pngs]
        shapes = {m.shape for m in masks}
        if len(shapes) != 1:
            raise MaskError(f"segment PNGs in {path} differ in size: {sorted(shapes)}")
        return area_rule_stack(np.stack(masks))


def write_view_masks(folder: str | os.PathLike[str], name: str, masks: ViewMasks, *, overwrite: bool = False) -> list[Path]:
    """Write one view's masks as ``<stem>.coarse.png`` and ``<stem>.fine.png`` (16-bit label
    PNGs, value = ID + 1, 0 = unassigned) in ``folder`` (created when missing); atomic writes.
    Returns the two paths. Raises MaskError for IDs above 65533 or existing files unless
    ``overwrite``."""
    from ..core.atomic import write_png

    out = Path(folder).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    stem = view_stem(name)
    paths = [out / f"{stem}.coarse.png", out / f"{stem}.fine.png"]
    if not overwrite:
        existing = [p.name for p in paths if p.exists()]
        if existing:
            raise MaskError(f"{', '.join(existing)} already in {out}; pass overwrite=True to replace")
    for path, ids in zip(paths, (masks.coarse, masks.fine)):
        if ids.size and int(ids.max()) > 65533:
            raise MaskError(f"view {name!r} has segment IDs above 65533; a 16-bit label PNG cannot hold them")
        write_png(path, (ids + 1).astype(np.uint16))
    return paths
