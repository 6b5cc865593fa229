"""The project's one 3DGS ``.ply`` reader and writer (numpy + plyfile; no torch, no bpy).

Reads
- the Inria layout written by graphdeco-inria/gaussian-splatting, gsplat, nerfstudio, SuperSplat
  (uncompressed) and most other tools: ``x y z [nx ny nz] f_dc_0-2 [f_rest_0..3K-1] opacity
  scale_0-2 rot_0-3`` in any order, binary little/big endian or ASCII, SH degree 0-3 detected from
  the number of ``f_rest_*`` properties, any other per-vertex property kept in
  :attr:`GaussianScene.extra` (in file order), trailing bytes after the last record ignored;
- through :func:`read_ply` also SuperSplat / PlayCanvas ``.compressed.ply`` (the file's content
  decides, decoded by :mod:`engine.core.formats.compressed`) and antimatter15 ``.splat`` files
  (decoded by :mod:`engine.core.formats.splat`), both to the Inria conventions (log scales, logit
  opacity, ``f_dc`` from colour, wxyz quaternions). Scenes from those two are written back here
  as standard Inria ``.ply`` files; their own writers live in their modules.
Every format by file name: :mod:`engine.core.formats.scene_io`.

Values are stored as read: quaternions are never normalised here (see
:meth:`GaussianScene.unit_quats`), log scales and opacity logits are not clamped.

Writes keep the source layout (:class:`engine.core.scene.PlyLayout`: property order, types, byte order,
format, comments), so reading and writing an unedited scene reproduces the vertex data byte for
byte. A scene without a layout (or one read from a compressed file) is written in the standard
Inria layout for its SH degree (``nx ny nz`` are written as zeros, as the Inria code does).
Writes are atomic (:func:`engine.core.formats.common.target_file`) and refuse to replace an
existing file unless ``overwrite=True``.

Non-finite values: by default a file whose Gaussian parameters hold NaN (or +-inf anywhere except
the opacity logit) is refused with a :class:`SceneFormatError` that says how many rows are bad;
``read_ply(path, drop_invalid=True)`` drops those rows instead (the rest keep their order). An
opacity logit of +-inf is a saturated opacity (sigmoid = 1 or 0), written by some trainers (37
Gaussians of ``fox_cc0.ply`` have +inf); it is valid and kept as stored.

Speed: the vertex records of the usual vertex-only binary file are read straight from the file
after plyfile parses the header, and split into the scene's arrays in one pass, block by
cache-sized block of records (every property of a block is copied out while it is in cache; a
pass per property over the whole file leaves cache every time). Other binary files are memory-mapped by
plyfile (its default ``mmap='c'``; without the map plyfile parses row by row) and
split the same way. Read and write speed: ``python -m engine.bench io`` (figures in README;
shared machine). ``read_ply(..., sh_coefficient_major=True)`` gathers the SH straight into the
per-coefficient order Blender's attributes want. Writes pack records in reused 64k-row chunks.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable

import numpy as np
import plyfile

from ..errors import SceneFormatError
from ..scene import GaussianScene, PlyLayout, inria_vertex_dtype, sh_degree_for_coeffs
from .common import check_finite, display, refuse_existing, target_file
from .compressed import decode_compressed, is_compressed_ply
from .splat import decode_splat

__all__ = ["read_ply", "write_ply", "inria_vertex_dtype", "is_compressed_ply"]

_REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
_CHUNK_ROWS = 65536  # rows per chunk of work on whole files (16 MiB of records at SH degree 3)
_GATHER_ROWS = 8192  # records per block of the read's single pass (2 MiB at SH degree 3: in cache)


# ----------------------------------------------------------------------------------------- read

def read_ply(path: str | os.PathLike, *, drop_invalid: bool = False,
             sh_coefficient_major: bool = False) -> GaussianScene:
    """Read a 3DGS scene from an Inria-layout ``.ply``, a SuperSplat ``.compressed.ply`` or an
    antimatter15 ``.splat`` file.

    Args:
        path: the file.
        drop_invalid: drop Gaussians whose parameters hold NaN or +-inf instead of refusing the
            file.
        sh_coefficient_major: return ``sh_rest`` [N, K, 3] as a view of a C-contiguous
            [K, N, 3] buffer, so ``scene.sh_rest.transpose(1, 0, 2)[j]`` is coefficient j+1's
            contiguous [N, 3] RGB block (what Blender's per-coefficient attributes take without
            another copy). Same values; from a standard .ply it costs nothing extra (the SH are
            gathered into that order in the one pass over the file).

    Returns:
        A :class:`GaussianScene` (float32 arrays, ``path`` set, ``layout`` describing the file).

    Raises:
        SceneFormatError: missing or unreadable file, not a PLY, truncated data, no Gaussian
            properties (e.g. a plain mesh or point cloud), an invalid SH layout, or non-finite
            values (unless ``drop_invalid``). The message names the file.
    """
    path = os.fspath(path)
    name = display(path)
    if path.lower().endswith(".splat") and _has_no_ply_magic(path):
        scene = check_finite(decode_splat(path, name), name, drop_invalid)
        return _sh_order(scene, sh_coefficient_major)
    data, records = _read_plydata(path, name)
    try:
        if is_compressed_ply(data):
            scene, known_finite = decode_compressed(data, name), False
        else:
            scene, known_finite = _decode_inria(data, records, name, sh_coefficient_major)
    finally:
        del data, records  # release any memory map before anyone wants to replace the file
    scene.path = path
    return _sh_order(check_finite(scene, name, drop_invalid, known_finite), sh_coefficient_major)


def _sh_order(scene: GaussianScene, coefficient_major: bool) -> GaussianScene:
    """Give ``scene.sh_rest`` the coefficient-major memory order when asked and not already so."""
    if coefficient_major and not scene.sh_rest.transpose(1, 0, 2).flags.c_contiguous:
        scene.sh_rest = np.ascontiguousarray(scene.sh_rest.transpose(1, 0, 2)).transpose(1, 0, 2)
    return scene


def _has_no_ply_magic(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(3) != b"ply"
    except OSError:
        return False  # the PLY path reports missing / unreadable files


class _Records:
    """A vertex element's records, handed out in consecutive blocks: slices of an array (parsed or
    memory-mapped by plyfile), or read from a binary file straight after its header, block by
    block into one reused buffer."""

    def __init__(self, dtype: np.dtype, count: int, array: np.ndarray | None = None,
                 path: str | None = None, offset: int = 0, name: str = ""):
        self.dtype, self.count, self.array = dtype, count, array
        self.path, self.offset, self.name = path, offset, name

    def blocks(self, rows: int):
        """Yield (first row, records [<= rows]); a yielded file block is overwritten by the next."""
        if self.array is not None:
            for r0 in range(0, self.count, rows):
                yield r0, self.array[r0:r0 + rows]
            return
        buf = np.empty(min(rows, self.count), self.dtype)
        raw = memoryview(buf.view(np.uint8))
        size = self.dtype.itemsize
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                for r0 in range(0, self.count, rows):
                    b = min(rows, self.count - r0)
                    got = f.readinto(raw[: b * size])
                    if got != b * size:  # the file shrank after its size was checked
                        raise SceneFormatError(
                            f"{self.name}: truncated file: element 'vertex' declares {self.count} "
                            f"records but only {r0 + got // size} are complete")
                    yield r0, buf[:b]
        except OSError as exc:  # (errors of the consumer never arrive here: only the file's)
            raise SceneFormatError(f"{self.name}: cannot read PLY: {exc.strerror or exc}") from None


def _read_plydata(path: str, name: str) -> tuple[plyfile.PlyData, _Records | None]:
    """The parsed file and, for the usual one-element files, its vertex records (None: plyfile
    read every element into ``data``)."""
    if not os.path.exists(path):
        raise SceneFormatError(f"{path}: file not found")
    if os.path.isdir(path):
        raise SceneFormatError(f"{path}: is a folder, not a .ply file")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise SceneFormatError(f"{path}: cannot open: {exc.strerror or exc}") from None
    if magic not in (b"ply\n", b"ply\r"):
        raise SceneFormatError(f"{name}: not a PLY file (it does not start with 'ply')")
    try:
        fast = _read_vertex_only(path, name)
        if fast is not None:
            return fast
        # mmap='c' (plyfile's default, copy-on-write): binary elements are memory-mapped,
        # trailing bytes after the last element are ignored, a short file raises early EOF.
        return plyfile.PlyData.read(path, mmap="c"), None
    except plyfile.PlyElementParseError as exc:
        if "early end-of-file" in str(exc.message):
            elt = exc.element
            count = elt.count if elt is not None else "?"
            got = exc.row if exc.row is not None else "?"
            raise SceneFormatError(
                f"{name}: truncated file: element '{getattr(elt, 'name', '?')}' declares {count} "
                f"records but only {got} are complete"
            ) from None
        raise SceneFormatError(f"{name}: malformed PLY data: {exc}") from None
    except plyfile.PlyHeaderParseError as exc:
        raise SceneFormatError(f"{name}: malformed PLY header: {exc}") from None
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise SceneFormatError(f"{name}: cannot read PLY: {exc}") from None


def _read_vertex_only(path: str, name: str) -> tuple[plyfile.PlyData, _Records] | None:
    """Files holding only a vertex element without list properties (every 3DGS trainer's
    output): plyfile's header parser, then
    - binary: the records are read block by block straight from the file when the scene is
      gathered (a reused 2 MiB buffer: gathering from plyfile's memory map instead pays page
      faults that cost more than copying the bytes); trailing bytes after the records are ignored, as plyfile does;
    - ASCII: ``np.loadtxt`` into the element's dtype (vectorised, unlike plyfile's row-by-row
      ASCII reader; same values: both parse each token to the property's type).
    None when the file has another shape (plyfile then reads it)."""
    parse_header = getattr(plyfile.PlyData, "_parse_header", None)
    if parse_header is None:  # a plyfile without it: use the plain (slower) path
        return None
    with open(path, "rb") as f:
        data = parse_header(f)
        _check_counts(data, name, os.fstat(f.fileno()).st_size - f.tell())
        if [e.name for e in data.elements] != ["vertex"]:
            return None
        element = data.elements[0]
        if not element.properties or any(isinstance(p, plyfile.PlyListProperty)
                                         for p in element.properties):
            return None
        if not data.text:
            dtype = _property_dtype(element, data.byte_order)
            offset = f.tell()
            complete = max(0, os.fstat(f.fileno()).st_size - offset) // dtype.itemsize
            if complete < element.count:
                raise SceneFormatError(
                    f"{name}: truncated file: element 'vertex' declares {element.count} records "
                    f"but only {complete} are complete")
            return data, _Records(dtype, element.count, path=path, offset=offset, name=name)
        dtype = _property_dtype(element, "=")
        text = io.TextIOWrapper(f, encoding="ascii", errors="strict", newline=None)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "input contained no data" for 0 rows
                arr = np.loadtxt(text, dtype=dtype, max_rows=element.count, comments=None, ndmin=1)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SceneFormatError(f"{name}: malformed ASCII vertex data: {exc}") from None
    if arr.shape[0] < element.count:
        raise SceneFormatError(
            f"{name}: truncated file: element 'vertex' declares {element.count} records but only "
            f"{arr.shape[0]} are complete")
    return data, _Records(arr.dtype, arr.shape[0], array=arr)


def _check_counts(data: plyfile.PlyData, name: str, body_bytes: int) -> None:
    """Refuse element counts the file cannot hold, from the header alone: a negative count, or
    more records than the bytes after the header can contain (each binary record takes at least
    its scalar properties' bytes, each ASCII record at least two characters per property). Said
    here, before any array is sized by the count: a count of -5 or 2**40 would otherwise reach
    numpy as a negative or impossible allocation."""
    need = 0
    for element in data.elements:
        if element.count < 0:
            raise SceneFormatError(f"{name}: malformed PLY header: element '{element.name}' "
                                   f"has a negative count ({element.count})")
        if data.text:
            per_record = 2 * max(1, len(element.properties))
        else:
            per_record = sum(np.dtype(p.list_dtype(data.byte_order)[0] if isinstance(p, plyfile.PlyListProperty)
                                      else p.dtype(data.byte_order)).itemsize
                             for p in element.properties)
        if need + element.count * per_record > body_bytes:
            exact = not data.text and not any(isinstance(p, plyfile.PlyListProperty)
                                              for p in element.properties)
            what = (f"but only {max(0, body_bytes - need) // max(1, per_record)} are complete"
                    if exact else f"more than the {body_bytes} bytes after the header can hold")
            raise SceneFormatError(f"{name}: truncated file: element '{element.name}' declares "
                                   f"{element.count} records {what}")
        need += element.count * per_record


def _property_dtype(element: plyfile.PlyElement, byte_order: str) -> np.dtype:
    """The on-disk structured dtype of an element without list properties."""
    fields = []
    for p in element.properties:
        if isinstance(p, plyfile.PlyListProperty):
            raise SceneFormatError(
                f"element '{element.name}' has a list property '{p.name}'; 3DGS vertices have none")
        fields.append((p.name, p.dtype(byte_order)))
    return np.dtype(fields)


def _run_dtype(dtype: np.dtype, names: list[str] | tuple[str, ...], opaque: bool = False
               ) -> np.dtype | None:
    """A dtype of the same item size whose one field ``b`` spans the fields ``names`` when they are
    one scalar type at adjacent byte offsets in that order (None otherwise): as a sub-array
    ``(type, (len,))``, or with ``opaque`` as one ``V(bytes)`` item (copied as a unit per
    record, several times faster than numpy's per-value strided copy of short rows)."""
    t, offset = dtype.fields[names[0]][:2]
    if t.shape:
        return None
    for i, f in enumerate(names):
        ft, fo = dtype.fields[f][:2]
        if ft != t or fo != offset + i * t.itemsize:
            return None
    fmt = f"V{t.itemsize * len(names)}" if opaque else (t, (len(names),))
    return np.dtype({"names": ["b"], "formats": [fmt], "offsets": [offset], "itemsize": dtype.itemsize})


class _FieldCopy:
    """Copies fields ``names`` of structured records into the columns of a float32 [N, k] array
    (C-contiguous rows), choosing once the fastest way the record layout allows."""

    def __init__(self, dtype: np.dtype, names: list[str] | tuple[str, ...], out: np.ndarray):
        self.names, self.out = names, out
        self.opaque = None
        if dtype.fields[names[0]][0] == out.dtype:  # same type and byte order: raw bytes
            self.opaque = _run_dtype(dtype, names, opaque=True)
        self.run = None if self.opaque is not None else _run_dtype(dtype, names)

    def __call__(self, rec: np.ndarray, r0: int) -> None:
        out = self.out[r0:r0 + rec.shape[0]]
        if self.opaque is not None:
            out.view(self.opaque.fields["b"][0]).reshape(rec.shape[0])[...] = rec.view(self.opaque)["b"]
        elif self.run is not None:
            out[...] = rec.view(self.run)["b"]  # converting (other width / byte order)
        else:
            for j, f in enumerate(self.names):
                out[:, j] = rec[f]


def _sum_is_finite(block: np.ndarray) -> bool:
    """Whether every value of a float block is finite: its sum is finite iff so (NaN and inf
    propagate), unless finite values overflow the sum, which the exact check then sorts out.
    One fast reduction instead of an ``isfinite`` temporary per value."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(block, axis=None)):
            return True
    return bool(np.isfinite(block).all())


def _gather_vertices(records: _Records, k: int, extra_names: list[str], sh_coefficient_major: bool
                     ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], bool]:
    """Split the vertex records into the scene's float32 arrays in ONE pass over the file.

    Works in blocks of ``_GATHER_ROWS`` records (~2 MiB at SH degree 3): each block is read (or
    faulted in from a memory map) once and stays in cache while every property is copied out of
    it (a pass per property over the whole file, plus a separate SH reordering, was 2-4x
    slower). The SH go channel by channel: channel c's K coefficients are adjacent in the file
    (``f_rest_{c*K+j}``) and land in sh_rest[:, :, c] with long strided runs (the
    [N, 3, K] -> [N, K, 3] transpose in one assignment iterates 3-value rows: 2x slower).

    Returns (arrays: means, sh_dc, opacities, scales, quats, sh_rest; extras in file order;
    whether every vertex value of the file is known to be finite)."""
    n = records.count
    dt = records.dtype
    f32 = np.float32
    out = {"means": np.empty((n, 3), f32), "sh_dc": np.empty((n, 3), f32),
           "opacities": np.empty(n, f32), "scales": np.empty((n, 3), f32),
           "quats": np.empty((n, 4), f32)}
    sh_kn3 = np.empty((k, n, 3), f32) if sh_coefficient_major else np.empty((n, k, 3), f32).transpose(1, 0, 2)
    out["sh_rest"] = sh_kn3.transpose(1, 0, 2)  # [N, K, 3] either way
    copies = [_FieldCopy(dt, names, target) for target, names in (
        (out["means"], ("x", "y", "z")), (out["sh_dc"], ("f_dc_0", "f_dc_1", "f_dc_2")),
        (out["opacities"].reshape(n, 1), ("opacity",)),
        (out["scales"], ("scale_0", "scale_1", "scale_2")),
        (out["quats"], ("rot_0", "rot_1", "rot_2", "rot_3")))]
    # f_rest_{c*K + j} (channel-major in the file) -> sh_rest[:, j, c]
    rest_names = [f"f_rest_{i}" for i in range(3 * k)]
    rest_run = _run_dtype(dt, rest_names) if k else None
    extra = {p: np.empty(n, dt[p].newbyteorder("=")) for p in extra_names}
    whole = _run_dtype(dt, dt.names)  # every value one type, packed: checked for finiteness
    known_finite = whole is not None and whole.fields["b"][0].base.kind == "f"
    for r0, block in records.blocks(_GATHER_ROWS):
        r1 = r0 + block.shape[0]
        for copy in copies:
            copy(block, r0)
        if rest_run is not None:
            rest = block.view(rest_run)["b"].reshape(r1 - r0, 3, k)
            for c in range(3):
                sh_kn3[:, r0:r1, c] = rest[:, c, :].T
        else:
            for c in range(3):
                for j in range(k):
                    sh_kn3[j, r0:r1, c] = block[rest_names[c * k + j]]
        for p, values in extra.items():
            values[r0:r1] = block[p]
        if known_finite:
            known_finite = _sum_is_finite(block.view(whole)["b"])
    return out, extra, known_finite


def _decode_inria(data: plyfile.PlyData, records: _Records | None, name: str,
                  sh_coefficient_major: bool = False) -> tuple[GaussianScene, bool]:
    """(scene, whether every vertex value is known to be finite)."""
    if "vertex" not in [e.name for e in data.elements]:
        raise SceneFormatError(f"{name}: no 'vertex' element, so no Gaussians")
    vertex = data["vertex"]
    if any(isinstance(p, plyfile.PlyListProperty) for p in vertex.properties):
        raise SceneFormatError(f"{name}: vertex element has list properties; not a 3DGS scene")
    prop_names = [p.name for p in vertex.properties]
    missing = [p for p in _REQUIRED if p not in prop_names]
    if missing:
        faces = " (it looks like a mesh: it has faces)" if "face" in [e.name for e in data.elements] else ""
        raise SceneFormatError(
            f"{name}: not a 3D Gaussian Splatting scene{faces}: missing vertex properties "
            f"{', '.join(missing)}")
    rest = [p for p in prop_names if p.startswith("f_rest_")]
    if len(rest) % 3 != 0:
        raise SceneFormatError(
            f"{name}: {len(rest)} f_rest_* properties; expected 0, 9, 24 or 45 (SH degree 0-3)")
    k = len(rest) // 3
    try:
        sh_degree_for_coeffs(k)
    except ValueError:
        raise SceneFormatError(
            f"{name}: {len(rest)} f_rest_* properties; expected 0, 9, 24 or 45 (SH degree 0-3)"
        ) from None
    rest_names = [f"f_rest_{i}" for i in range(3 * k)]
    if set(rest_names) != set(rest):
        raise SceneFormatError(f"{name}: f_rest_* properties are not numbered 0..{3 * k - 1}")

    if records is None:
        records = _Records(vertex.data.dtype, vertex.data.shape[0], array=vertex.data)
    n = records.count
    if n == 0:
        raise SceneFormatError(f"{name}: the file holds no Gaussians (element vertex 0)")
    known = set(_REQUIRED) | set(rest_names)
    arrays, extra, known_finite = _gather_vertices(
        records, k, [p for p in prop_names if p not in known], sh_coefficient_major)
    layout = PlyLayout(
        vertex_dtype=_property_dtype(vertex, data.byte_order),
        format="ascii" if data.text else _FORMAT_NAMES[_resolve_order(data.byte_order)],
        comments=list(data.comments),
        obj_info=list(data.obj_info),
        source="ply",
    )
    return GaussianScene(**arrays, extra=extra, layout=layout), known_finite


# ---------------------------------------------------------------------------------------- write

_FORMAT_NAMES = {"<": "binary_little_endian", ">": "binary_big_endian"}
_FORMAT_ORDERS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": "="}


def _resolve_order(order: str) -> str:
    if order in ("=", "|"):
        return "<" if np.little_endian else ">"
    return order


def _output_dtype(scene: GaussianScene) -> tuple[np.dtype, str, list[str], list[str]]:
    """(vertex dtype with byte order, format, comments, obj_info) to write the scene with."""
    k = scene.sh_rest.shape[1]
    gaussian = set(_REQUIRED) | {f"f_rest_{i}" for i in range(3 * k)}
    layout = scene.layout
    if layout is not None and layout.source == "ply":
        fmt = layout.format if layout.format in _FORMAT_ORDERS else "binary_little_endian"
        dt = layout.vertex_dtype
        if set(dt.names) == gaussian | set(scene.extra):
            order = _FORMAT_ORDERS[fmt]
            if fmt == "ascii":
                order = "="
            fields = [(n, dt.fields[n][0].newbyteorder(order)) for n in dt.names]
            return np.dtype(fields), fmt, list(layout.comments), list(layout.obj_info)
        # the scene was edited (SH degree or extra properties changed): standard layout, same format
        order = _FORMAT_ORDERS[fmt] if fmt != "ascii" else "<"
        comments, obj_info = list(layout.comments), list(layout.obj_info)
    else:
        fmt, order, comments, obj_info = "binary_little_endian", "<", [], []
    base = inria_vertex_dtype(scene.sh_degree, order)
    fields = [(n, base.fields[n][0]) for n in base.names]
    names = set(base.names)
    for n, arr in scene.extra.items():
        t = _ply_scalar_type(n, arr.dtype).newbyteorder(order)
        if n in names:
            # nx/ny/nz carried as extras take the standard slot with their own type
            fields = [(f, t if f == n else ft) for f, ft in fields]
        else:
            fields.append((n, t))
    if fmt == "ascii":
        fields = [(n, t.newbyteorder("=")) for n, t in fields]
    return np.dtype(fields), fmt, comments, obj_info


_PLY_SCALARS = {np.dtype(t) for t in ("i1", "u1", "i2", "u2", "i4", "u4", "f4", "f8")}


def _ply_scalar_type(name: str, dtype: np.dtype) -> np.dtype:
    """The PLY scalar type storing an extra property: its own type, bool as uchar; a type PLY
    cannot hold (64-bit integers, complex, strings, sub-arrays) is refused."""
    native = dtype.newbyteorder("=") if dtype.byteorder not in ("|", "=") else dtype
    if native == np.dtype(bool):
        return np.dtype("u1")
    if native in _PLY_SCALARS:
        return native
    raise SceneFormatError(
        f"extra property {name!r} has type {dtype}, which a PLY file cannot store "
        f"(use int8-32, uint8-32, float32 or float64)")


def _column_sources(scene: GaussianScene) -> Callable[[str], tuple[np.ndarray, int]]:
    """name -> (2-D array, column) holding that property in file conventions."""
    n = scene.num_gaussians
    k = scene.sh_rest.shape[1]
    table: dict[str, tuple[np.ndarray, int]] = {}
    for i, c in enumerate("xyz"):
        table[c] = (scene.means, i)
    for i in range(3):
        table[f"f_dc_{i}"] = (scene.sh_dc, i)
        table[f"scale_{i}"] = (scene.scales, i)
    for i in range(4):
        table[f"rot_{i}"] = (scene.quats, i)
    table["opacity"] = (scene.opacities.reshape(n, 1), 0)
    rest: list[np.ndarray] = []

    def rest_in_file_order() -> np.ndarray:
        if not rest:  # [N, K, 3] -> [N, 3K] in file order f_rest_{c*K + k}, one np.take pass
            perm = np.array([j * 3 + c for c in range(3) for j in range(k)], dtype=np.intp)
            rest.append(np.take(scene.sh_rest.reshape(n, 3 * k), perm, axis=1))
        return rest[0]

    for name, arr in scene.extra.items():
        table[name] = (arr.reshape(n, 1), 0)
    zeros = np.zeros((n, 3), np.float32)
    for i, c in enumerate(("nx", "ny", "nz")):
        table.setdefault(c, (zeros, i))  # the standard layout's normals, when the scene has none

    def lookup(name: str) -> tuple[np.ndarray, int]:
        if name.startswith("f_rest_") and name not in table and k:
            i = int(name[len("f_rest_"):])
            if 0 <= i < 3 * k:
                return rest_in_file_order(), i
        if name not in table:
            raise SceneFormatError(f"property {name!r} of the layout has no data in the scene")
        return table[name]

    return lookup


def _record_chunks(scene: GaussianScene, dtype: np.dtype, rows: int | None = None):
    """Yield the scene's vertex records of ``dtype`` in consecutive chunks of up to ``rows``
    (views of one reused buffer: write each out before taking the next).

    Chunking keeps the packing cache-sized and avoids faulting in a whole-file buffer (hundreds
    of MiB for a large scene, page-faulted in before a byte is written). Runs of adjacent
    same-typed fields that come from adjacent columns of one array are written as one opaque
    V(4k) item per row (one element copy per row instead of k); the f_rest block through an [N, 3, K] sub-array
    view straight from ``sh_rest`` [N, K, 3]."""
    n = scene.num_gaussians
    rows = rows or _CHUNK_ROWS
    lookup = _column_sources(scene)
    names = list(dtype.names)
    k = scene.sh_rest.shape[1]
    rest_view = None
    if k and _is_run(dtype, [f"f_rest_{i}" for i in range(3 * k)]):
        t, offset = dtype.fields["f_rest_0"][:2]
        rest_view = np.dtype({"names": ["b"], "formats": [(t, (3, k))], "offsets": [offset],
                              "itemsize": dtype.itemsize})
        names = [f for f in names if not f.startswith("f_rest_")]
    plan = []  # (source [N, *], first column, count, type, opaque dtype)
    i = 0
    while i < len(names):
        arr, col = lookup(names[i])
        t, offset = dtype.fields[names[i]][:2]
        j = i + 1
        while j < len(names):
            arr2, col2 = lookup(names[j])
            t2, off2 = dtype.fields[names[j]][:2]
            if arr2 is not arr or col2 != col + (j - i) or t2 != t or off2 != offset + (j - i) * t.itemsize:
                break
            j += 1
        count = j - i
        opaque = np.dtype({"names": ["b"], "formats": [f"V{count * t.itemsize}"],
                           "offsets": [offset], "itemsize": dtype.itemsize})
        plan.append((arr, col, count, t, opaque))
        i = j
    buf = np.empty(min(rows, n), dtype)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        rec = buf[: stop - start]
        if rest_view is not None:
            rec.view(rest_view)["b"] = scene.sh_rest[start:stop].transpose(0, 2, 1)
        for arr, col, count, t, opaque in plan:
            block = np.ascontiguousarray(arr[start:stop, col:col + count], dtype=t)  # file type
            rec.view(opaque)["b"] = block.view(f"V{count * t.itemsize}").reshape(stop - start)
        yield rec


def _is_run(dtype: np.dtype, names: list[str]) -> bool:
    """True when ``names`` are fields of ``dtype`` of one type at adjacent byte offsets."""
    if any(f not in dtype.fields for f in names):
        return False
    t, offset = dtype.fields[names[0]][:2]
    return all(dtype.fields[f][0] == t and dtype.fields[f][1] == offset + i * t.itemsize
               for i, f in enumerate(names))


def write_ply(scene: GaussianScene, path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Write a scene as an Inria-layout ``.ply`` (atomically).

    The scene's :class:`PlyLayout` (from :func:`read_ply`) is kept when it still matches the
    scene's properties, so an unedited scene is written back with byte-identical vertex data;
    otherwise (no layout, compressed source, SH degree or extra properties changed) the standard
    Inria layout for the scene's SH degree is used, with extra properties appended.

    Args:
        scene: the scene to write.
        path: the target file.
        overwrite: replace an existing file (including the scene's own source file).

    Raises:
        SceneFormatError: the target exists and ``overwrite`` is False, or it cannot be written.
    """
    path = os.fspath(path)
    refuse_existing(path, overwrite, scene.path)
    dtype, fmt, comments, obj_info = _output_dtype(scene)
    byte_order = "=" if fmt == "ascii" else _FORMAT_ORDERS[fmt]
    # plyfile writes the header (its own property type names), we write the data in chunks
    properties = plyfile.PlyElement.describe(np.empty(0, dtype), "vertex").properties
    element = plyfile.PlyElement("vertex", properties, scene.num_gaussians)
    header = plyfile.PlyData([element], text=(fmt == "ascii"), byte_order=byte_order,
                             comments=comments, obj_info=obj_info).header
    with target_file(path) as f:  # read-only folder, full disk, ...: one line naming the target
        f.write(header.encode("ascii", errors="replace") + b"\n")  # PLY headers are ASCII
        for records in _record_chunks(scene, dtype):
            if fmt == "ascii":
                _write_ascii_rows(f, records)
            else:
                f.write(memoryview(records.view(np.uint8)))


def _write_ascii_rows(f, records: np.ndarray) -> None:
    """ASCII vertex rows in plyfile's own number format ('%.18g' of each value as a double), so
    plyfile-written ASCII files round-trip byte for byte; vectorised instead of plyfile's
    row-by-row ``savetxt``."""
    if records.size == 0:
        return
    mat = np.empty((records.shape[0], len(records.dtype.names)), np.float64)
    for j, name in enumerate(records.dtype.names):
        mat[:, j] = records[name]
    np.savetxt(f, mat, fmt="%.18g", delimiter=" ", newline="\n")

