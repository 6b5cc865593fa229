"""What every scene format shares: the file name in messages, the NaN / inf check of a read, and
the guarded atomic write of a target file (numpy + the standard library).

Every format writes through :func:`target_file` (or :func:`write_bytes`), which writes through
:func:`engine.core.atomic.atomic_write` (fsync'd) and turns what the system refuses into one
:class:`SceneFormatError` line naming the target.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import IO, Any

import numpy as np

from ..atomic import atomic_write
from ..errors import SceneFormatError
from ..scene import GaussianScene

__all__ = ["ALPHA_EPS", "display", "check_finite", "refuse_existing", "target_file", "write_bytes", "write_encoded"]

# Decoded 8-bit opacities are kept inside their quantisation bin so the logit stays finite:
# alpha 0 and 1 (codes 0 and 255) become logit(0.5/255) = -6.24 and +6.24.
ALPHA_EPS = 0.5 / 255.0


def display(path: str) -> str:
    """The name a message gives a file: its base name (a folder's own name for SOG folders)."""
    return os.path.basename(path.rstrip("/\\")) or path


def check_finite(scene: GaussianScene, name: str, drop_invalid: bool,
                 known_finite: bool = False) -> GaussianScene:
    """Refuse (or drop) Gaussians with NaN / inf parameters. An opacity logit of +-inf is a
    saturated opacity (sigmoid 1 or 0) and kept as stored. ``known_finite``: the reader already
    found every value of the file's data finite (one fast pass over the whole matrix)."""
    if known_finite:
        return scene
    n = scene.num_gaussians
    arrays = [scene.means, scene.scales, scene.quats, scene.sh_dc, scene.sh_rest]
    ok = ~np.isnan(scene.opacities)
    for a in arrays:  # (any memory order: sh_rest may be a coefficient-major view)
        ok &= np.isfinite(a).all(axis=tuple(range(1, a.ndim)))
    if ok.all():
        return scene
    bad = int(n - np.count_nonzero(ok))
    if not drop_invalid:
        first = int(np.flatnonzero(~ok)[0])
        raise SceneFormatError(
            f"{name}: {bad} of {n} Gaussians have NaN or infinite values (first at row {first}); "
            f"re-save the scene or read it with drop_invalid=True to drop them")
    kept = scene.subset(ok)
    kept.path = scene.path
    return kept


def refuse_existing(path: str, overwrite: bool, source: str | None = None) -> None:
    """Refuse a target that exists (unless ``overwrite``) or is a folder. ``source``: the scene's
    own file, named as such when it is the target."""
    if os.path.exists(path) and not overwrite:
        same = source is not None and os.path.exists(source) and os.path.samefile(path, source)
        what = "is the scene's source file" if same else "already exists"
        raise SceneFormatError(f"{path}: {what}; refusing to overwrite it (pass overwrite=True)")
    if os.path.isdir(path):
        raise SceneFormatError(f"{path}: is a folder")


@contextlib.contextmanager
def target_file(path: str) -> Iterator[IO[Any]]:
    """``with target_file(path) as f``: a binary file that atomically replaces ``path`` (fsync'd)
    when the block ends; a missing folder, a read-only folder, a full disk, ... raise one
    :class:`SceneFormatError` line naming the target."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        what = "is a file, not a folder" if os.path.exists(folder) else "does not exist"
        raise SceneFormatError(f"{path}: cannot write: {folder} {what}")
    try:
        with atomic_write(path, fsync=True) as f:
            yield f
    except OSError as exc:
        raise SceneFormatError(f"{path}: cannot write: {exc.strerror or exc}") from None


def write_bytes(path: str, data: bytes) -> None:
    """Write a whole file's bytes through :func:`target_file`."""
    with target_file(path) as f:
        f.write(data)


def write_encoded(path: str | os.PathLike, overwrite: bool, encode: Callable[[], tuple[bytes, list[str]]],
                  stage: str | None = None, progress: Callable[[str], None] | None = None) -> list[str]:
    """A whole-file format's write: refuse an existing target (before any encoding work), report
    ``stage`` to ``progress``, ``encode()`` to (bytes, warnings), write the bytes atomically;
    returns the warnings."""
    path = os.fspath(path)
    refuse_existing(path, overwrite)
    if stage is not None and progress is not None:
        progress(stage)
    data, warnings = encode()
    write_bytes(path, data)
    return warnings
