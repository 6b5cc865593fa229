"""The mask sources by kind: one table used by the engine session (the wire's
``set_masks_source``), the command line (``--masks`` / ``--sam-checkpoint``) and, through the
kinds the wire accepts (:data:`engine.link.protocol.MASK_SOURCE_KINDS`), the Blender panel.
Adding a source is one factory here."""

from __future__ import annotations

import os
from typing import Any, Callable

from ..core.errors import MaskError
from ..link.protocol import MASK_SOURCE_KINDS


def _builtin(*, options: dict[str, Any], **_: Any) -> Any:
    from .builtin import BuiltinMaskSource

    return BuiltinMaskSource(**options)


def _sam(*, checkpoint: str | None, model_type: str | None, device: str | None, options: dict[str, Any],
         **_: Any) -> Any:
    if not checkpoint:
        raise MaskError("mask source 'sam' needs a checkpoint path")
    from .sam import SamMaskSource

    return SamMaskSource(os.path.expanduser(checkpoint), model_type=model_type, device=device, **options)


def _folder(*, folder: str | None, options: dict[str, Any], **_: Any) -> Any:
    if not folder:
        raise MaskError("mask source 'folder' needs a folder path")
    from .folder import FolderMaskSource

    return FolderMaskSource(os.path.expanduser(folder), **options)


SOURCES: dict[str, Callable[..., Any]] = {"builtin": _builtin, "sam": _sam, "folder": _folder}
assert tuple(SOURCES) == MASK_SOURCE_KINDS, "the wire's kinds and the factories must agree"


def make_source(kind: str, *, checkpoint: str | None = None, model_type: str | None = None,
                folder: str | None = None, device: str | None = None,
                options: dict[str, Any] | None = None) -> Any:
    """A mask source of ``kind`` (``builtin``: no download, lower quality than SAM; ``sam``:
    segment-anything from a checkpoint file; ``folder``: masks computed elsewhere). Raises
    MaskError (one line) for an unknown kind, a missing path or options the source refuses."""
    factory = SOURCES.get(kind)
    if factory is None:
        raise MaskError(f"unknown mask source {kind!r}; use one of {', '.join(SOURCES)}")
    try:
        return factory(checkpoint=checkpoint, model_type=model_type, folder=folder, device=device,
                       options=dict(options or {}))
    except (AttributeError, ImportError) as exc:
        raise MaskError(f"mask source {kind!r} is not available in this engine ({exc})") from None
    except TypeError as exc:
        raise MaskError(f"mask source {kind!r}: bad options ({exc})") from None


def describe(kind: str, source: Any) -> dict[str, Any]:
    """What the session reports about its source: kind, name, quality."""
    return {"kind": kind, "name": getattr(source, "name", kind), "quality": getattr(source, "quality", "")}
