"""Read and write a scene in any supported format, chosen by the file name (numpy + stdlib;
plyfile for .ply, Pillow for .sog's WebP images, zstandard for SPZ version 4 only).

| format | extension | read | write |
|---|---|---|---|
| Inria 3DGS | ``.ply`` | yes | yes (lossless) |
| SuperSplat compressed | ``.compressed.ply`` | yes | yes |
| antimatter15 | ``.splat`` | yes | yes |
| Niantic SPZ | ``.spz`` | versions 1-4 | version 3 (4 on request) |
| PlayCanvas SOG | ``.sog`` (zip) or ``meta.json`` (+ images beside it) | versions 1, 2 | version 2 |

Each format's precision and what it drops are in its module's docstring. Writes return the
warnings of what the target format dropped (SH bands, extra properties, Gaussian order) instead
of printing them. Every write is atomic per file (a temporary file beside the target, then
``os.replace``) and refuses to replace an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable

from ..errors import SceneFormatError
from ..scene import GaussianScene

__all__ = ["FORMATS", "format_of", "read_scene", "write_scene"]

FORMATS = ("ply", "compressed_ply", "splat", "spz", "sog", "sog_folder")


def format_of(path: str | os.PathLike, *, for_write: bool = False) -> str:
    """The format a file name stands for: one of :data:`FORMATS`.

    Raises:
        SceneFormatError: an extension none of the formats uses.
    """
    p = os.fspath(path)
    low = p.lower().rstrip("/\\")
    base = os.path.basename(low)
    if low.endswith(".compressed.ply"):
        return "compressed_ply"
    if low.endswith(".ply"):
        return "ply"
    if low.endswith(".splat"):
        return "splat"
    if low.endswith(".spz"):
        return "spz"
    if low.endswith(".sog"):
        return "sog"
    if base == "meta.json":
        return "sog_folder"
    if not for_write and os.path.isdir(p) and os.path.isfile(os.path.join(p, "meta.json")):
        return "sog_folder"
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
    fmt = format_of(p)
    if fmt in ("ply", "compressed_ply", "splat"):
        from .ply import read_ply
        return read_ply(p, drop_invalid=drop_invalid)
    if fmt == "spz":
        from .spz import decode_spz
        name = os.path.basename(p) or p
        if not os.path.exists(p):
            raise SceneFormatError(f"{p}: file not found")
        try:
            with open(p, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise SceneFormatError(f"{p}: cannot open: {exc.strerror or exc}") from None
        scene = decode_spz(data, name, warnings)
    else:
        from .sog import read_sog
        scene = read_sog(p, warnings=warnings)
    scene.path = p
    return _finite(scene, os.path.basename(p.rstrip("/")) or p, drop_invalid)


def _finite(scene: GaussianScene, name: str, drop_invalid: bool) -> GaussianScene:
    import numpy as np

    ok = ~np.isnan(scene.opacities)
    for a in (scene.means, scene.scales, scene.quats, scene.sh_dc, scene.sh_rest):
        ok &= np.isfinite(a).all(axis=tuple(range(1, a.ndim)))
    if ok.all():
        return scene
    if not drop_invalid:
        raise SceneFormatError(f"{name}: {int((~ok).sum())} of {ok.size} Gaussians have NaN or "
                               f"infinite values; read it with drop_invalid=True to drop them")
    kept = scene.subset(ok)
    kept.path = scene.path
    return kept


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
    fmt = format_of(p, for_write=True)
    say = progress or (lambda stage: None)
    if fmt == "ply":
        from .ply import write_ply
        say("writing .ply")
        write_ply(scene, p, overwrite=overwrite)
        return []
    _refuse_existing(p, overwrite)
    if fmt == "compressed_ply":
        from .packed import encode_compressed_ply
        say("packing chunks")
        data, warnings = encode_compressed_ply(scene, keep_order=keep_order)
        _write_atomic(p, data)
        return warnings
    if fmt == "splat":
        from .packed import encode_splat
        data, warnings = encode_splat(scene)
        _write_atomic(p, data)
        return warnings
    if fmt == "spz":
        from .spz import encode_spz
        say("packing .spz")
        data, warnings = encode_spz(scene, version=spz_version)
        _write_atomic(p, data)
        return warnings
    from .sog import encode_sog
    files, warnings = encode_sog(scene, progress=say)
    if fmt == "sog":
        import io
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:  # WebP is compressed already
            for name in ["meta.json"] + [n for n in files if n != "meta.json"]:
                z.writestr(name, files[name])
        _write_atomic(p, buf.getvalue())
        return warnings
    folder = os.path.dirname(os.path.abspath(p))
    for name, data in files.items():  # images first, meta.json (which names them) last
        if name != "meta.json":
            target = os.path.join(folder, name)
            _refuse_existing(target, overwrite)
            _write_atomic(target, data)
    _write_atomic(p, files["meta.json"])
    return warnings


def _refuse_existing(path: str, overwrite: bool) -> None:
    if os.path.isdir(path):
        raise SceneFormatError(f"{path}: is a folder")
    if os.path.exists(path) and not overwrite:
        raise SceneFormatError(f"{path}: already exists; refusing to overwrite it (pass overwrite=True)")


def _write_atomic(path: str, data: bytes) -> None:
    """Write bytes to ``path`` through a temporary file beside it and ``os.replace``."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SceneFormatError(f"{path}: cannot write: {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise SceneFormatError(f"{path}: cannot write into {folder}: {exc.strerror or exc}") from None
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else 0o644
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise SceneFormatError(f"{path}: cannot write: {exc.strerror or exc}") from None
        raise
