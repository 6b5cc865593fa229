"""The one atomic file write: a temporary file beside the target, renamed over it
(``os.replace``) only when everything was written, removed on any failure. A reader never sees a
half-written file and an interrupted write never destroys the file it would have replaced.

The new file gets the mode of the file it replaces, or 0644 for a new one (the temporary file is
private, 0600, while it is written). Standard library only: the Blender extension, the engine and
the scripts all write through here."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from typing import IO, Any


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, text: bool = False, fsync: bool = False,
                 suffix: str = ".tmp") -> Iterator[IO[Any]]:
    """``with atomic_write(path) as f: f.write(...)``: ``f`` is a binary (or, with ``text``,
    UTF-8 text) file beside ``path``; it replaces ``path`` when the block ends without an
    exception. ``fsync`` flushes it to disk first (for files worth a crash). Raises OSError as
    the system gives it (the folder refuses new files, the disk is full, ...)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + ".", suffix=suffix, dir=folder)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else 0o644
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with (os.fdopen(fd, "w", encoding="utf-8") if text else os.fdopen(fd, "wb")) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, text=True) as f:
        f.write(text)


def replace_with_copy(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Copy ``source``'s bytes to ``path`` atomically."""
    import shutil

    with open(source, "rb") as src, atomic_write(path) as f:
        shutil.copyfileobj(src, f, 1 << 20)


def write_png(path: str | os.PathLike[str], image: Any) -> str:
    """Write an image array (uint8 [H, W], [H, W, 3] or [H, W, 4]; uint16 [H, W] for label
    PNGs) to ``path`` atomically; returns the path. Needs Pillow (the engine's environment has
    it; Blender's does not and never writes PNGs through here)."""
    import numpy as np
    from PIL import Image

    with atomic_write(path, suffix=".png") as f:
        Image.fromarray(np.ascontiguousarray(image)).save(f, format="PNG")
    return os.fspath(path)
