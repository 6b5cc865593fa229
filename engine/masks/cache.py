"""Masks for a list of training views, cached on disk per view.

A view's cache entry is keyed by a SHA-256 of its image (shape and pixels) and of the mask
source's settings (for SAM: model type, generator settings and the checkpoint file's identity),
so it is reused exactly when those inputs are unchanged, whatever the view is called or where
the images live. Entries are ``<cache_dir>/masks-<source>-<key>.npz`` with int32 ``coarse`` and
``fine`` [H, W] (-1 = unassigned), the ``key`` and the source settings as JSON (``source``);
they are written atomically (temporary file + ``os.replace``) as each view finishes, so a
cancelled or crashed run keeps every completed view. A damaged or mismatching entry is
recomputed and replaced. Sources without ``settings()`` or with ``cacheable = False`` (the
folder source, as cheap to read as the cache) are not cached.

Empty masks: a view where the source finds no segment gets all -1 maps (the training losses
ignore it) and a :class:`MaskWarning` naming the view; when *every* view is empty,
:func:`prepare_masks` raises MaskError, since nothing could be trained.

numpy only (plus the source's own imports).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic import atomic_write
from ..core.errors import Cancelled, MaskError
from .area_rule import ViewMasks
from .source import MaskWarning, check_image, takes_geometry, view_masks_from

CACHE_VERSION = 1

Progress = Callable[[int, int, str], Any]


def source_fingerprint(source: Any) -> dict[str, Any] | None:
    """JSON-able description of a source for cache keys, or None when it cannot be cached."""
    settings = getattr(source, "settings", None)
    if not callable(settings) or not getattr(source, "cacheable", True):
        return None
    return {
        "cache_version": CACHE_VERSION,
        "source": type(source).__module__ + "." + type(source).__qualname__,
        "name": getattr(source, "name", ""),
        "settings": settings(),
    }


def image_digest(image: np.ndarray) -> str:
    """SHA-256 hex of an image's shape, dtype and pixels."""
    arr = np.ascontiguousarray(image)
    h = hashlib.sha256(f"{arr.shape}|{arr.dtype.str}|".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def cache_key(fingerprint: dict[str, Any], image: np.ndarray, geometry: Any = None) -> str:
    """The cache key (hex, 40 characters) of one view for one source fingerprint; with the view's
    :class:`engine.masks.geometry.ViewGeometry` when the source uses it (a source that reads
    depth and normals gives other masks for the same image with other geometry, or none)."""
    h = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode())
    h.update(image_digest(image).encode())
    if geometry is not None:
        h.update(b"|geometry|" + geometry.digest().encode())
    return h.hexdigest()[:40]


class MaskCache:
    """The on-disk per-view mask cache in one folder (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder).expanduser()

    def path(self, name: str, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "source"
        return self.folder / f"masks-{safe}-{key}.npz"

    def load(self, path: Path, key: str, shape: tuple[int, int]) -> ViewMasks | None:
        """The cached masks, or None when the entry is missing, damaged or not for this key and
        image size."""
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) != key:
                    return None
                vm = ViewMasks(z["coarse"], z["fine"])
        except Exception:  # damaged or foreign file: recompute (and replace) it
            return None
        return vm if vm.shape == shape else None

    def save(self, path: Path, key: str, masks: ViewMasks, fingerprint: dict[str, Any]) -> None:
        """Write one entry atomically (:func:`engine.core.atomic.atomic_write`)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, suffix=".npz") as f:
            np.savez_compressed(
                f,
                coarse=masks.coarse,
                fine=masks.fine,
                key=np.array(key),
                source=np.array(json.dumps(fingerprint, sort_keys=True, default=str)),
            )


def prepare_masks(
    source: Any,
    images: Sequence[tuple[str, np.ndarray]],
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    *,
    on_warning: Callable[[str], Any] | None = None,
    geometry: Sequence[Any] | None = None,
) -> list[ViewMasks]:
    """Two-level masks for every view, computed by ``source`` or read from the cache.

    Args:
        source: a mask source (:class:`engine.masks.MaskSource`; the project's sources, or any
            object with ``segments(image)``).
        images: (view name, image uint8 [H, W, 3] RGB) per view; the name is used in messages
            and by the folder source to find a view's files.
        cache_dir: folder for the per-view cache (created when missing); None = no cache.
        progress: called as ``progress(done, total, message)`` once before the first view
            (done = 0) and after every view; sources with long per-view work (SAM) also send
            messages from inside a view (done = views finished so far).
        cancel: when set, stops before the next view (or inside a long SAM view) and raises
            :class:`engine.core.errors.Cancelled`; views finished so far stay in the cache.
        on_warning: receives non-fatal messages (an empty view, an unwritable cache); default:
            ``warnings.warn(message, MaskWarning)``.
        geometry: per view a :class:`engine.masks.geometry.ViewGeometry` (a view rendered from the
            splats) or None (a photo), handed to sources that use it
            (:func:`engine.masks.source.takes_geometry`) and then part of the view's cache key;
            None = no view has any.

    Returns:
        One :class:`ViewMasks` per view, in order, each the size of its image.

    Raises:
        MaskError for bad images or source problems, and when no view has any segment.
        Cancelled when ``cancel`` is set.
    """
    warn = on_warning or (lambda message: warnings.warn(message, MaskWarning, stacklevel=3))
    items = list(images)
    total = len(items)
    if geometry is not None and len(geometry) != total:
        raise MaskError(f"{len(geometry)} view geometries for {total} views")
    use_geometry = geometry is not None and takes_geometry(source)
    fingerprint = source_fingerprint(source) if cache_dir is not None else None
    cache = MaskCache(cache_dir) if fingerprint is not None else None
    src_name = str(getattr(source, "name", "source"))
    label = getattr(source, "quality", "") or src_name
    if progress is not None:
        progress(0, total, f"masks for {total} views ({label})")
    out: list[ViewMasks] = []
    empty: list[str] = []
    for i, item in enumerate(items):
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"mask preparation was cancelled after {i} of {total} views")
        try:
            name, image = item
        except (TypeError, ValueError):
            raise MaskError(f"view {i}: expected a (name, image) pair") from None
        name = str(name)
        image = check_image(image, name)
        shape = (int(image.shape[0]), int(image.shape[1]))
        geo = geometry[i] if use_geometry else None
        if geo is not None and geo.shape != shape:
            raise MaskError(f"view {name!r}: geometry is {geo.shape[1]}x{geo.shape[0]} but the image is {shape[1]}x{shape[0]}")
        vm, cached = None, False
        if cache is not None:
            key = cache_key(fingerprint, image, geo)
            path = cache.path(src_name, key)
            vm = cache.load(path, key, shape)
            cached = vm is not None
        if vm is None:

            def report(message: str, i: int = i, name: str = name) -> None:
                if progress is not None:
                    progress(i, total, f"view {name!r}: {message}")

            vm = view_masks_from(source, image, name, cancel, report, geometry=geo)
            if not isinstance(vm, ViewMasks) or vm.shape != shape:
                raise MaskError(f"mask source {src_name!r} returned masks of the wrong size for view {name!r}")
            if cache is not None:
                try:
                    cache.save(path, key, vm, fingerprint)
                except OSError as exc:
                    warn(f"mask cache {cache.folder} cannot be written ({exc.strerror or exc}); masks are not cached")
                    cache = None
        if vm.is_empty:
            empty.append(name)
            warn(f"view {name!r}: the {label} mask source found no segment; the view will not train")
        out.append(vm)
        if progress is not None:
            how = "cached" if cached else "computed"
            progress(
                i + 1,
                total,
                f"view {name!r}: {vm.num_segments('coarse')} coarse / {vm.num_segments('fine')} fine segments ({how})",
            )
    if total and len(empty) == total:
        raise MaskError(
            f"the {label} mask source found no segment in any of the {total} views "
            f"(e.g. {empty[0]!r}); check the images (blank renders?) or use another mask source"
        )
    return out
