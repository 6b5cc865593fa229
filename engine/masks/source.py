"""The mask-source interface shared by SAM, mask folders and the built-in segmenter.

A source turns one view's image into SAM-style segment records (overlapping bool masks); the
area rule (:mod:`.area_rule`) turns those into the two-level ID maps. A source that already
has two-level maps (a folder of precomputed maps) overrides :meth:`MaskSourceBase.view_masks`.

numpy only.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..core.errors import MaskError
from .area_rule import ViewMasks, area_rule

Report = Callable[[str], Any]  # receives progress messages from inside one view's work


class MaskWarning(UserWarning):
    """A non-fatal mask problem (e.g. a view where the source found no segment)."""


@runtime_checkable
class MaskSource(Protocol):
    """What :func:`engine.masks.prepare_masks` needs from a mask source.

    name: short identifier (``"sam"``, ``"folder"``, ``"builtin"``).
    quality: for the user, e.g. ``"sam (vit_h)"`` or ``"builtin (lower quality than SAM)"``.

    Optional: ``segments`` may also take keyword arguments ``cancel`` (threading.Event; stop
    early by raising engine.core.errors.Cancelled), ``report`` (callable receiving progress
    messages) and ``geometry`` (:class:`engine.masks.geometry.ViewGeometry` of a view rendered
    from the splats, or None; see :func:`takes_geometry`); a ``settings() -> dict`` method
    (JSON-able) makes the source's masks cacheable.
    """

    name: str
    quality: str

    def segments(self, image: np.ndarray) -> list[dict[str, Any]]:
        """image uint8 [H, W, 3] RGB -> SAM-style records (bool ``segmentation`` [H, W],
        int ``area``), overlapping allowed."""
        ...


class MaskSourceBase:
    """Shared behaviour of the project's sources.

    Subclasses set ``name`` and ``quality`` and implement :meth:`segments`; they describe their
    settings in :meth:`settings` (JSON-able; part of the mask cache key). ``cacheable`` is False
    for sources that are as cheap to read as the cache itself.
    """

    name: str = "source"
    quality: str = ""
    cacheable: bool = True
    uses_geometry: bool = False  # True: view_masks / segments take a ``geometry`` keyword

    def settings(self) -> dict[str, Any]:
        """JSON-able description of everything that changes this source's output."""
        return {}

    def segments(  # pragma: no cover - abstract
        self, image: np.ndarray, cancel: threading.Event | None = None, report: Report | None = None
    ) -> list[dict[str, Any]]:
        raise NotImplementedError

    def view_masks(
        self,
        image: np.ndarray,
        name: str | None = None,
        cancel: threading.Event | None = None,
        report: Report | None = None,
        geometry: Any = None,
    ) -> ViewMasks:
        """The two-level maps of one view: the area rule over :meth:`segments`. ``name`` is the
        view's name (image file name or stem); sources that look masks up by view use it.
        ``cancel``: sources with long per-view work stop early (raising Cancelled) when set.
        ``report``: sources with long per-view work (SAM) send progress messages to it.
        ``geometry``: the view's :class:`engine.masks.geometry.ViewGeometry`, handed to
        :meth:`segments` when this source uses it (:attr:`uses_geometry`)."""
        image = check_image(image, name)
        return area_rule(_segments(self, image, cancel, report, geometry), image.shape[0], image.shape[1])


def _keywords(fn: Any) -> tuple[set[str], bool]:
    """(names of ``fn``'s parameters, whether it takes ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return set(), False
    return set(params), any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def takes_geometry(source: Any) -> bool:
    """Whether ``source`` wants a view's geometry (:class:`engine.masks.geometry.ViewGeometry`):
    its ``uses_geometry`` attribute when it has one (the project's sources: the built-in one when
    its ``use_geometry`` setting is on; SAM and the folder source never), otherwise whether its
    ``segments`` names a ``geometry`` parameter. Callers render the geometry only for such
    sources."""
    flag = getattr(source, "uses_geometry", None)
    if flag is not None:
        return bool(flag)
    names, _ = _keywords(getattr(source, "segments", None))
    return "geometry" in names


def _segments(source: Any, image: np.ndarray, cancel: threading.Event | None, report: Report | None,
              geometry: Any = None) -> list[dict[str, Any]]:
    """source.segments(image), passing ``cancel`` / ``report`` only to sources that take them, and
    ``geometry`` only to sources that take it (:func:`takes_geometry`) when there is one."""
    names, takes_all = _keywords(source.segments)
    extra = {k: v for k, v in (("cancel", cancel), ("report", report)) if takes_all or k in names}
    if geometry is not None and takes_geometry(source) and (takes_all or "geometry" in names):
        extra["geometry"] = geometry
    return source.segments(image, **extra)


def view_masks_from(
    source: Any,
    image: np.ndarray,
    name: str | None = None,
    cancel: threading.Event | None = None,
    report: Report | None = None,
    geometry: Any = None,
) -> ViewMasks:
    """Two-level maps of one view from any source: its own ``view_masks`` for the project's
    sources, otherwise the area rule over ``segments(image)`` (the bare protocol). ``geometry``
    (:class:`engine.masks.geometry.ViewGeometry` or None) reaches only sources that take it
    (:func:`takes_geometry`)."""
    if isinstance(source, MaskSourceBase):
        if geometry is not None and takes_geometry(source):
            return source.view_masks(image, name, cancel, report, geometry=geometry)
        return source.view_masks(image, name, cancel, report)
    image = check_image(image, name)
    return area_rule(_segments(source, image, cancel, report, geometry), image.shape[0], image.shape[1])


def check_image(image: Any, name: str | None = None) -> np.ndarray:
    """Validate a view image: uint8 [H, W, 3] RGB (an [H, W, 4] RGBA image loses its alpha,
    an [H, W] grey image is repeated to 3 channels). Returns a C-contiguous uint8 [H, W, 3]."""
    label = f"image {name!r}" if name else "image"
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise MaskError(f"{label} must be uint8 RGB, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise MaskError(f"{label} must be [H, W, 3] RGB, got shape {arr.shape}")
    return np.ascontiguousarray(arr[:, :, :3])
