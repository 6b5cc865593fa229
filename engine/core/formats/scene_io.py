"""Read and write a scene in any supported format, chosen by the file name (numpy + stdlib;
plyfile for .ply, Pillow for .sog's WebP images, zstandard for SPZ version 4 only).

| format | extension | read | write |
|---|---|---|---|
| Inria 3DGS | ``.ply`` | yes | yes (lossless) |
| SuperSplat compressed | ``.compressed.ply`` | yes | yes |
| antimatter15 | ``.splat`` | yes | yes |
| Niantic SPZ | ``.spz`` | versions 1-4 | version 3 (4 on request) |
| PlayCanvas SOG | ``.sog`` (zip) or ``meta.json`` (+ images beside it) | versions 1, 2 | version 2 |

One registry (:data:`REGISTRY`) maps each file-name ending to its format's reader and writer;
each format lives in one module (``ply``, ``compressed``, ``splat``, ``spz``, ``sog``) with its
precision and what it drops in the docstring. Writes return the warnings of what the target
format dropped (SH bands, extra properties, Gaussian order) instead of printing them. Every
write is atomic per file (:func:`engine.core.formats.common.target_file`, through
:mod:`engine.core.atomic`) and refuses to replace an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import SceneFormatError
from ..scene import GaussianScene
from .common import check_finite, display
from .compressed import write_compressed_ply
from .ply import read_ply, write_ply
from .sog import read_sog, write_sog
from .splat import write_splat
from .spz import read_spz, write_spz

__all__ = ["FORMATS", "REGISTRY", "SceneFormat", "format_of", "read_scene", "write_scene"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SceneFormat:
    """One format: its name, the file-name ending that names it, and its reader and writer.

    ``read(path, drop_invalid, warnings)`` returns the scene (``path`` set, NaN / inf refused or
    dropped); ``write(scene, path, overwrite, options, progress)`` returns the warnings, with
    ``options`` the format-specific keywords of :func:`write_scene`."""

    name: str
    ending: str
    read: Callable[[str, bool, list[str] | None], GaussianScene]
    write: Callable[[GaussianScene, str, bool, dict, Progress], list[str]]


def _read_ply_family(path: str, drop_invalid: bool, warnings: list[str] | None) -> GaussianScene:
    # .ply and .compressed.ply: the content decides the layout; .splat unless it is a PLY inside
    return read_ply(path, drop_invalid=drop_invalid)


def _read_sog(path: str, drop_invalid: bool, warnings: list[str] | None) -> GaussianScene:
    return check_finite(read_sog(path, warnings=warnings), display(path), drop_invalid)


def _write_ply(scene: GaussianScene, path: str, overwrite: bool, options: dict,
               progress: Progress) -> list[str]:
    progress("writing .ply")
    write_ply(scene, path, overwrite=overwrite)
    return []


# Matched in this order (``.compressed.ply`` before ``.ply``); ``meta.json`` is a whole file
# name, and a folder holding one reads as SOG too.
REGISTRY: tuple[SceneFormat, ...] = (
    SceneFormat("compressed_ply", ".compressed.ply", _read_ply_family,
                lambda scene, path, overwrite, options, progress: write_compressed_ply(
                    scene, path, overwrite=overwrite, keep_order=options["keep_order"],
                    progress=progress)),
    SceneFormat("ply", ".ply", _read_ply_family, _write_ply),
    SceneFormat("splat", ".splat", _read_ply_family,
                lambda scene, path, overwrite, options, progress: write_splat(
                    scene, path, overwrite=overwrite, progress=progress)),
    SceneFormat("spz", ".spz",
                lambda path, drop_invalid, warnings: read_spz(
                    path, drop_invalid=drop_invalid, warnings=warnings),
                lambda scene, path, overwrite, options, progress: write_spz(
                    scene, path, overwrite=overwrite, version=options["spz_version"],
                    progress=progress)),
    SceneFormat("sog", ".sog", _read_sog,
                lambda scene, path, overwrite, options, progress: write_sog(
                    scene, path, overwrite=overwrite, progress=progress)),
    SceneFormat("sog_folder", "meta.json", _read_sog,
                lambda scene, path, overwrite, options, progress: write_sog(
                    scene, path, overwrite=overwrite, progress=progress)),
)
_BY_NAME = {f.name: f for f in REGISTRY}
FORMATS = tuple(f.name for f in REGISTRY)


def format_of(path: str | os.PathLike, *, for_write: bool = False) -> str:
    """The format a file name stands for: one of :data:`FORMATS`.

    Raises:
        SceneFormatError: an extension none of the formats uses.
    """
    p = os.fspath(path)
    low = p.lower().rstrip("/\\")
    for fmt in REGISTRY:
        if fmt.ending == "meta.json":
            if os.path.basename(low) == "meta.json" or (
                    not for_write and os.path.isdir(p) and os.path.isfile(os.path.join(p, "meta.json"))):
                return fmt.name
        elif low.endswith(fmt.ending):
            return fmt.name
    raise SceneFormatError(
        f"{p}: unknown scene format (use .ply, .compressed.ply, .splat, .spz, .sog or meta.json)")


def read_scene(path: str | os.PathLike, *, drop_invalid: bool = False,
               warnings: list[str] | None = None) -> GaussianScene:
    """Read a scene from any supported file (format from the name; a .ply's content decides
    between the Inria and compressed layouts).

    Args:
        path: the file, or for SOG a ``meta.json`` or the folder holding it.
        drop_invalid: drop Gaussians with NaN / inf values instead of refusing the file.
        warnings: where to append what the scene could not hold (e.g. SPZ SH degree 4).

    Raises:
        SceneFormatError: one line naming the file and the problem.
    """
    p = os.fspath(path)
    return _BY_NAME[format_of(p)].read(p, drop_invalid, warnings)


def write_scene(scene: GaussianScene, path: str | os.PathLike, *, overwrite: bool = False,
                spz_version: int = 3, keep_order: bool = False,
                progress: Callable[[str], None] | None = None) -> list[str]:
    """Write a scene in the format its file name names.

    Args:
        scene: Inria conventions (as read from any format).
        path: the target; ``.sog`` is one zip file, ``meta.json`` a SOG with its images beside it.
        overwrite: replace existing files.
        spz_version: 3 (default) or 4 (or 2) for ``.spz``.
        keep_order: for ``.compressed.ply``, keep the scene's Gaussian order instead of Morton.
        progress: called with a short stage name as a long write goes on.

    Returns:
        Warnings: what the format dropped or changed, one line each.

    Raises:
        SceneFormatError: the target exists and ``overwrite`` is False, cannot be written, or the
            scene does not fit the format.
    """
    p = os.fspath(path)
    fmt = _BY_NAME[format_of(p, for_write=True)]
    options = {"spz_version": spz_version, "keep_order": keep_order}
    return fmt.write(scene, p, overwrite, options, progress or (lambda stage: None))
