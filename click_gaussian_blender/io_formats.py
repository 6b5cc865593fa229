"""The scene formats as the extension reads and writes them (numpy, the standard library and
Blender's own image loading; no Pillow, no zstandard).

- Reading: ``.ply`` / ``.compressed.ply`` / ``.splat`` through the engine's PLY reader (SH in the
  per-coefficient order the mesh attributes take), ``.spz`` through
  :func:`engine.core.formats.scene_io.read_scene`, ``.sog`` (a zip, or a ``meta.json`` with its images
  beside it) through :func:`engine.core.formats.sog.read_sog` with :func:`blender_webp_decoder`:
  Blender decodes the WebP images itself. SPZ version 4 needs zstd, which Blender's Python lacks:
  such a file is refused in one line (the engine converts it: ``python -m engine convert``).
- Writing: :func:`write_for_blender`: :func:`engine.core.formats.scene_io.write_scene` picks the
  format from the file name and returns what the format dropped as warnings; ``.sog`` is encoded
  by :func:`engine.core.formats.sog.encode_sog` with :func:`blender_webp_encoder` (Blender's own
  lossless WebP writer). :data:`EXPORT_EXTENSIONS` maps the exporter's format choice to a name.
- The names of per-group files (:func:`safe_file_name`, :func:`group_file_names`) and the
  per-Gaussian segment-id properties (:data:`SEGMENT_COARSE`, :data:`SEGMENT_FINE`,
  :data:`SEGMENT_GROUP`, :func:`group_ids`).
"""

from __future__ import annotations

import os
import re
import tempfile

import bpy
import numpy as np

from .engine.core.errors import SceneFormatError
from .engine.core.scene import GaussianScene

# Import: what the file browser lists and what drag and drop accepts. A SOG folder is imported
# through its meta.json (the browser lists it; a dropped .json is not claimed: any JSON would be).
IMPORT_GLOB = "*.ply;*.splat;*.spz;*.sog;meta.json"
DROP_EXTENSIONS = ".ply;.splat;.spz;.sog"  # .ply first: the FileHandler's export extension

# Export: the format choice and the file name ending that names it for write_scene.
EXPORT_EXTENSIONS = {
    "PLY": ".ply",
    "SPZ": ".spz",
    "SOG": ".sog",
    "COMPRESSED_PLY": ".compressed.ply",
    "SPLAT": ".splat",
}
AUTO = "AUTO"
EXPORT_FORMAT_ITEMS = [
    (AUTO, "By Extension", "The format the file name's extension names (.ply when it names none)"),
    ("PLY", "PLY (.ply)", "Inria 3DGS .ply: every property exact, extra properties kept"),
    ("SPZ", "SPZ (.spz)", "Niantic SPZ version 3: about 10x smaller than .ply; quantised, "
                          "extra properties dropped"),
    ("SOG", "SOG (.sog)", "PlayCanvas SOG (WebP images in a zip): smallest; quantised, SH from a "
                          "palette, extra properties dropped"),
    ("COMPRESSED_PLY", "Compressed PLY (.compressed.ply)",
     "SuperSplat compressed .ply: quantised per chunk of 256, extra properties dropped"),
    ("SPLAT", "Splat (.splat)", "antimatter15 .splat: no SH bands beyond the colour, extra "
                                "properties dropped"),
]

# Segment ids written as extra .ply properties (int32, one per Gaussian).
SEGMENT_COARSE = "segment_coarse"  # coarse cluster label of the trained features, -1 = none
SEGMENT_FINE = "segment_fine"  # fine cluster label, -1 = none
SEGMENT_GROUP = "segment_group"  # 0 = in no vertex group, i = the i-th group (header comments)
SEGMENT_PROPERTIES = (SEGMENT_COARSE, SEGMENT_FINE, SEGMENT_GROUP)
GROUP_COMMENT = SEGMENT_GROUP + " "  # header comment "segment_group <id> = <group name>"


def format_of_path(path: str) -> str | None:
    """The export format (a key of :data:`EXPORT_EXTENSIONS`) a file name ends with, or None."""
    low = os.fspath(path).lower()
    for fmt, ext in sorted(EXPORT_EXTENSIONS.items(), key=lambda kv: -len(kv[1])):
        if low.endswith(ext):
            return fmt
    return None


def strip_extension(path: str) -> str:
    """``path`` without a scene-format ending (``.compressed.ply`` as a whole)."""
    fmt = format_of_path(path)
    return path[: -len(EXPORT_EXTENSIONS[fmt])] if fmt else os.path.splitext(path)[0]


def export_path(path: str, file_format: str = AUTO) -> tuple[str, str]:
    """(path, format): the path ending in the chosen format's extension (another format's ending
    replaced), or for ``AUTO`` the format its ending names (``.ply`` appended when none does)."""
    if file_format == AUTO:
        fmt = format_of_path(path)
        if fmt is not None:
            return path, fmt
        file_format = "PLY"
    if file_format not in EXPORT_EXTENSIONS:
        raise ValueError(f"unknown export format {file_format!r}")
    if format_of_path(path) == file_format:
        return path, file_format
    base = strip_extension(path) if format_of_path(path) else path
    return base + EXPORT_EXTENSIONS[file_format], file_format


# ----------------------------------------------------------------------------------------- read

def blender_webp_decoder(data: bytes) -> np.ndarray:
    """Decode a WebP image with Blender's own image loading: uint8 [H, W, 4] RGBA, rows top
    first, the 8-bit values exactly as stored (no colour management: Non-Color; alpha
    channel-packed, so RGB under a transparent texel stay as they are)."""
    with tempfile.TemporaryDirectory(prefix="clickgs_webp_") as folder:
        path = os.path.join(folder, "image.webp")
        with open(path, "wb") as f:
            f.write(data)
        try:
            img = bpy.data.images.load(path, check_existing=False)
        except RuntimeError as exc:
            raise SceneFormatError(f"Blender cannot read a WebP image of the .sog: {exc}") from None
        try:
            img.colorspace_settings.name = "Non-Color"
            img.alpha_mode = "CHANNEL_PACKED"
            w, h = img.size
            if w == 0 or h == 0 or img.channels not in (3, 4):
                raise SceneFormatError("Blender cannot decode a WebP image of the .sog")
            px = np.empty(w * h * img.channels, np.float32)
            img.pixels.foreach_get(px)  # (loads the pixels now, while the file is there)
        finally:
            bpy.data.images.remove(img)
    px *= np.float32(255.0)
    np.rint(px, out=px)
    rgba = px.astype(np.uint8).reshape(h, w, -1)[::-1]  # Blender's rows are bottom first
    if rgba.shape[2] == 3:
        rgba = np.concatenate([rgba, np.full((h, w, 1), 255, np.uint8)], axis=2)
    return np.ascontiguousarray(rgba)


def blender_webp_encoder(rgba: np.ndarray) -> bytes:
    """Encode uint8 [H, W, 4] RGBA (rows top first) as a lossless WebP with Blender's own image
    writing (quality 100 is lossless; Non-Color, channel-packed alpha: the bytes as given).

    Blender's writer does not keep the RGB of a fully transparent texel (libwebp's default): a
    texel with alpha 0 is written with alpha 1, so its RGB survive (in a .sog only ``sh0`` has
    alpha 0, for a Gaussian of opacity below 0.5/255: written as 1/255 with its colour kept)."""
    h, w, _ = rgba.shape
    px = rgba.astype(np.float32)
    px[..., 3][rgba[..., 3] == 0] = 1.0
    px *= np.float32(1.0 / 255.0)
    img = bpy.data.images.new(".clickgs_webp", w, h, alpha=True)
    try:
        img.colorspace_settings.name = "Non-Color"
        img.alpha_mode = "CHANNEL_PACKED"
        img.pixels.foreach_set(np.ascontiguousarray(px[::-1]).reshape(-1))  # bottom row first
        with tempfile.TemporaryDirectory(prefix="clickgs_webp_") as folder:
            path = os.path.join(folder, "image.webp")
            img.file_format = "WEBP"
            img.save(filepath=path, quality=100)
            with open(path, "rb") as f:
                return f.read()
    finally:
        bpy.data.images.remove(img)


def write_for_blender(scene: GaussianScene, path: str, overwrite: bool = False) -> list[str]:
    """Write ``scene`` in the format ``path`` names (see the module docstring); returns the
    format's warnings. Raises :class:`SceneFormatError` with one line naming the file."""
    if format_of_path(path) != "SOG":
        from .engine.core.formats.scene_io import write_scene
        return write_scene(scene, path, overwrite=overwrite)
    import io
    import zipfile

    from .engine.core.atomic import atomic_write
    from .engine.core.formats.sog import encode_sog

    if os.path.exists(path) and not overwrite:
        raise SceneFormatError(f"{path}: already exists; refusing to overwrite it (pass overwrite=True)")
    files, warnings = encode_sog(scene, encode_webp=blender_webp_encoder)
    faint = int((scene.activated_opacities() * 255.0 < 0.5).sum())
    if faint:
        warnings.append(f"{faint} Gaussians of opacity below 0.5/255 written with opacity 1/255 "
                        "(Blender's WebP writer keeps no colour under alpha 0)")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:  # WebP is compressed already
        for name in ["meta.json"] + [n for n in files if n != "meta.json"]:
            z.writestr(name, files[name])
    try:
        with atomic_write(path, fsync=True) as f:
            f.write(buf.getvalue())
    except OSError as exc:
        raise SceneFormatError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return warnings


def is_sog(path: str) -> bool:
    low = os.fspath(path).lower().rstrip("/\\")
    return (low.endswith(".sog") or os.path.basename(low) == "meta.json"
            or (os.path.isdir(path) and os.path.isfile(os.path.join(path, "meta.json"))))


def read_for_blender(path: str, warnings: list[str] | None = None) -> GaussianScene:
    """Read any supported scene file for the importer (see the module docstring). Raises
    :class:`SceneFormatError` with one line naming the file on bad input."""
    p = os.fspath(path)
    low = p.lower()
    if low.endswith((".ply", ".splat")):
        from .engine.core.formats.ply import read_ply
        return read_ply(p, sh_coefficient_major=True)  # SH in Blender's per-coefficient order
    if is_sog(p):
        from .engine.core.formats.sog import read_sog
        scene = read_sog(p, decode_webp=blender_webp_decoder, warnings=warnings)
        _check_finite(scene, os.path.basename(p.rstrip("/\\")) or p)
        return scene
    from .engine.core.formats.scene_io import read_scene
    return read_scene(p, warnings=warnings)


def _check_finite(scene: GaussianScene, name: str) -> None:
    ok = ~np.isnan(scene.opacities)
    for a in (scene.means, scene.scales, scene.quats, scene.sh_dc, scene.sh_rest):
        ok &= np.isfinite(a).all(axis=tuple(range(1, a.ndim)))
    if not ok.all():
        raise SceneFormatError(f"{name}: {int((~ok).sum())} of {ok.size} Gaussians have NaN or "
                               "infinite values")


# ----------------------------------------------------------------------------- per-group files

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def safe_file_name(name: str, fallback: str = "group") -> str:
    """A file name (without extension) made from a vertex-group name that every common file
    system takes: runs of anything but ASCII letters, digits, ``. _ + -`` become one ``_``
    (``CG coarse 3`` -> ``CG_coarse_3``), no leading dot or trailing dot, at most 100 characters,
    not a reserved Windows device name; ``fallback`` when nothing is left."""
    s = _UNSAFE.sub("_", name).strip("._")[:100].rstrip("._")
    if not s:
        s = fallback
    if s.split(".")[0].lower() in _RESERVED:
        s = "_" + s
    return s


def group_file_names(names: list[str]) -> list[str]:
    """:func:`safe_file_name` of each group, made unique (case-insensitively, for file systems
    that ignore case) by ``_2``, ``_3``, ... in order."""
    out: list[str] = []
    used: set[str] = set()
    for name in names:
        base = safe_file_name(name)
        s, i = base, 2
        while s.lower() in used:
            s, i = f"{base}_{i}", i + 1
        used.add(s.lower())
        out.append(s)
    return out


def exported_groups(obj: bpy.types.Object) -> list[bpy.types.VertexGroup]:
    """The object's vertex groups that are selections (every group but internal ones, whose
    names start with a dot), in the object's order."""
    return [vg for vg in obj.vertex_groups if not vg.name.startswith(".")]


def group_ids(n: int, members: list[np.ndarray]) -> np.ndarray:
    """[n] int32 segment-group id: 0 for a Gaussian in no group, i for one in the i-th group of
    ``members`` (1-based); one in several groups gets the highest id (the group made last)."""
    ids = np.zeros(n, np.int32)
    for i, idx in enumerate(members, start=1):
        ids[idx] = i
    return ids
