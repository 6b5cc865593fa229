"""Niantic ``.spz`` (numpy + the standard library; zstd for version 4 only).

Reads every version the reference implementation (nianticlabs/spz, also shipped as npm
``@adobe/spz``) reads: versions 1-3, a gzip stream of a 16-byte header and the packed
attributes, and version 4, a plain 32-byte header, optional extension records, a table of
contents and six zstd-compressed attribute streams. Writes version 3 (gzip; every SPZ reader in
use opens it) or, with ``version=4``, version 4.

Decompression: gzip through the standard library; zstd (version 4 only) through the
``zstandard`` package (PyPI; not pure Python, so inside Blender a version-4 file is refused with
a one-line message saying so, while versions 1-3 read and write with the standard library).

Layout (little-endian). Header v1-3: magic ``NGSP`` (0x5053474e) u32, version u32, count u32,
SH degree u8, fractional bits u8, flags u8 (0x1 antialiased, 0x2 extensions), reserved u8.
Header v4: the same first 15 bytes, then stream count u8, TOC offset u32, 12 reserved bytes.
Attributes, in this order, each for all Gaussians:
- positions: 3 x 24-bit two's-complement fixed point with ``fractional bits`` (v1: 3 x float16);
- alphas: u8, sigmoid(opacity) * 255;
- colours: 3 x u8, ``f_dc * 0.15 * 255 + 127.5`` (a wider range than [0, 1] colour);
- scales: 3 x u8, ``(log scale + 10) * 16``;
- rotations: v3+: u32, the largest component's index (x, y, z, w = 0..3) in bits 30-31, the other
  three as sign bit + 9-bit magnitude of ``|q_i| * sqrt(2)``, first-stored in the highest bits;
  v1-2: 3 x u8 of (x, y, z) * 127.5 + 127.5 with w >= 0 derived;
- SH: ``3 * K`` u8 per Gaussian, coefficient-major with the colour channel inner
  (``sh[k][c]``), value ``(code - 128) / 128`` (written with 5 significant bits for degree 1 and
  4 for degrees 2-3, as the reference does); degree 4 (K = 24) exists in SPZ only.

Conventions: SPZ quaternions are stored (x, y, z, w); the scene's are (w, x, y, z). SPZ data are
in the RUB frame (right, up, back; OpenGL) unless an Adobe coordinate-system extension says
otherwise; the scene, like every .ply, is RDF (right, down, front). Reading and writing convert
as the reference does: y and z of positions negated, quaternion x kept and y, z negated (a 180
degree turn about x), and the SH coefficients odd in y or z negated. A file written by the
reference from a .ply (``from RDF``) therefore reads back into the .ply's own coordinates.

Precision of a write-read round trip (the bounds tests check, per Gaussian):
- positions: +-2^-(f+1) per axis with ``f`` fractional bits (12, i.e. +-0.000122, when every
  coordinate lies within +-2047; fewer bits for larger scenes, as the 24-bit range requires);
- log scales: +-1/32 inside [-10, 5.94] (clamped outside);
- rotations: each component of the unit quaternion (sign aligned) within 0.003 (v3+; the
  largest is derived from the other three); version 2 (8-bit x, y, z) is far coarser near w = 0;
- opacity: sigmoid(opacity) within 0.5/255 (+-inf logits become 0.5/255 from 0 or 1);
- colour ``f_dc``: +-1/(2 * 0.15 * 255) = +-0.0131 inside [-3.33, 3.33] (clamped outside);
- SH rest: +-1/32 (degree 1) and +-1/16 (degrees 2, 3) inside [-1, 1] (clamped outside).
Dropped: extra per-Gaussian properties (a warning names them). Kept: SH degree 0-3; a file of
degree 4 reads as degree 3 with a warning.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Callable

import numpy as np

from ..errors import SceneFormatError
from ..scene import GaussianScene, PlyLayout, sh_coeffs_for_degree
from .common import ALPHA_EPS, check_finite, display, write_encoded

__all__ = ["read_spz", "decode_spz", "encode_spz", "write_spz", "SPZ_MAGIC"]

SPZ_MAGIC = 0x5053474E
_LATEST = 4
_COLOR_SCALE = 0.15
_SQRT1_2 = np.float32(0.7071067811865476)
_FLAG_ANTIALIASED = 0x1
_FLAG_EXTENSIONS = 0x2
_EXT_SH_QUANT = 0xADBE0001  # Adobe: SH min/max rescaling (an early extension; never length-framed)
_EXT_ORBIT = 0xADBE0002  # Adobe: safe orbit camera (metadata only)
_EXT_COORDS = 0xADBE0003  # Adobe: the coordinate system the data are stored in
_MAX_POINTS = 100_000_000  # refuse absurd header counts before allocating anything

# Sign of each of the 24 SH coefficients (gsplat / Inria order) under a flip of the x, y, z axes;
# the reference's ``coordinateConverter`` table.
def _sh_flips(x: float, y: float, z: float) -> np.ndarray:
    return np.array([y, z, x, x * y, y * z, 1, x * z, 1, y, x * y * z, y, z, x, z, x,
                     x * y, y * z, x * y, y * z, 1, x * z, 1, x * z, y], np.float32)


# The Adobe coordinate-system values 1..8: (x right?, y up?, z front?) from bits 0, 1, 2 of value-1
def _axis_flips(stored: int) -> tuple[float, float, float]:
    """Per-axis signs taking coordinates stored in system ``stored`` to RDF (the .ply frame)."""
    if stored == 0:
        stored = 4  # UNSPECIFIED: the reference reads it as RUB
    bits = stored - 1
    rdf = 6 - 1
    return tuple(1.0 if ((bits >> i) & 1) == ((rdf >> i) & 1) else -1.0 for i in range(3))  # type: ignore[return-value]


def _sh_dim(degree: int) -> int:
    return (degree + 1) ** 2 - 1


# ----------------------------------------------------------------------------------------- read

def read_spz(path: str | os.PathLike, *, drop_invalid: bool = False,
             warnings: list[str] | None = None) -> GaussianScene:
    """Read a ``.spz`` file (:func:`decode_spz` of its bytes); ``path`` set. NaN / inf values are
    refused, or dropped with ``drop_invalid``."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise SceneFormatError(f"{p}: file not found")
    try:
        with open(p, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SceneFormatError(f"{p}: cannot open: {exc.strerror or exc}") from None
    scene = decode_spz(data, display(p), warnings)
    scene.path = p
    return check_finite(scene, display(p), drop_invalid)


def decode_spz(data: bytes, name: str, warnings: list[str] | None = None) -> GaussianScene:
    """Decode the bytes of a ``.spz`` file (any version 1-4) into a scene in Inria conventions.

    Args:
        data: the whole file.
        name: the file's name for messages.
        warnings: where to append what the scene cannot hold (SH degree 4 is cut to 3).

    Returns:
        A :class:`GaussianScene` (float32; wxyz quaternions of unit length; log scales; opacity
        logits; RDF coordinates), ``layout.source == "spz"``.

    Raises:
        SceneFormatError: not an SPZ file, truncated or inconsistent data, an unknown version.
    """
    if len(data) >= 4 and struct.unpack_from("<I", data, 0)[0] == SPZ_MAGIC:
        return _decode_v4(data, name, warnings)
    if data[:2] != b"\x1f\x8b":
        raise SceneFormatError(f"{name}: not an SPZ file (neither a gzip stream nor an NGSP header)")
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise SceneFormatError(f"{name}: truncated or corrupt SPZ (gzip): {exc}") from None
    if len(raw) < 16:
        raise SceneFormatError(f"{name}: truncated SPZ: {len(raw)} bytes after decompression, "
                               f"the header alone takes 16")
    magic, version, count, degree, frac, flags, _ = struct.unpack_from("<IIIBBBB", raw, 0)
    if magic != SPZ_MAGIC:
        raise SceneFormatError(f"{name}: not an SPZ file (magic {magic:#010x}, expected NGSP)")
    if version not in (1, 2, 3):
        raise SceneFormatError(f"{name}: SPZ version {version} in a gzip stream is not defined "
                               f"(gzip files are versions 1-3)")
    _check_header(name, count, degree, frac)
    sizes = _stream_sizes(version, count, degree)
    payload = sum(sizes)
    body = memoryview(raw)[16:]
    if len(body) < payload:
        raise SceneFormatError(f"{name}: truncated SPZ: {count} Gaussians need {payload} bytes of "
                               f"data, the file holds {len(body)}")
    ext_bytes = b""
    start = 0
    if flags & _FLAG_EXTENSIONS and len(body) > payload:
        # Extensions sat right after the header in early writers and after the data since:
        # a known type ID at the start tells which.
        first = struct.unpack_from("<I", body, 0)[0] if len(body) >= 4 else 0
        if first in (_EXT_SH_QUANT, _EXT_ORBIT, _EXT_COORDS):
            start = len(body) - payload
            ext_bytes = bytes(body[:start])
        else:
            ext_bytes = bytes(body[payload:])
    streams = _split(body[start:start + payload], sizes)
    ext = _parse_extensions(ext_bytes, name)
    return _unpack(streams, version, count, degree, frac, ext, name, warnings)


def _decode_v4(data: bytes, name: str, warnings: list[str] | None) -> GaussianScene:
    if len(data) < 32:
        raise SceneFormatError(f"{name}: truncated SPZ: {len(data)} bytes, the version-4 header "
                               f"alone takes 32")
    _, version, count, degree, frac, flags, n_streams, toc = struct.unpack_from("<IIIBBBBI", data, 0)
    if version != 4:
        if version < 4:
            raise SceneFormatError(f"{name}: SPZ version {version} with a plain NGSP header is not "
                                   f"defined (versions 1-3 are gzip streams)")
        raise SceneFormatError(f"{name}: SPZ version {version} is newer than this reader "
                               f"(it reads versions 1-{_LATEST})")
    _check_header(name, count, degree, frac)
    sizes = [s for s in _stream_sizes(4, count, degree) if s]
    if n_streams != len(sizes):
        raise SceneFormatError(f"{name}: SPZ header lists {n_streams} streams; {len(sizes)} "
                               f"expected for SH degree {degree}")
    toc_end = toc + 16 * n_streams
    if toc < 32 or toc_end > len(data):
        raise SceneFormatError(f"{name}: truncated SPZ: its table of contents ends at byte "
                               f"{toc_end}, the file has {len(data)}")
    ext = _parse_extensions(data[32:toc], name) if flags & _FLAG_EXTENSIONS else {}
    try:
        import zstandard
    except ImportError:
        raise SceneFormatError(f"{name}: SPZ version 4 needs zstd decompression (the 'zstandard' "
                               f"package), which this Python lacks; re-save it as version 3") from None
    dctx = zstandard.ZstdDecompressor()
    offset, streams = toc_end, []
    for i, want in enumerate(sizes):
        csize, usize = struct.unpack_from("<QQ", data, toc + 16 * i)
        if usize != want:
            raise SceneFormatError(f"{name}: SPZ stream {i} holds {usize} bytes; {want} expected")
        if offset + csize > len(data):
            raise SceneFormatError(f"{name}: truncated SPZ: stream {i} ends at byte "
                                   f"{offset + csize}, the file has {len(data)}")
        try:
            out = dctx.decompress(data[offset:offset + csize], max_output_size=want)
        except zstandard.ZstdError as exc:
            raise SceneFormatError(f"{name}: corrupt SPZ stream {i} (zstd): {exc}") from None
        if len(out) != want:
            raise SceneFormatError(f"{name}: SPZ stream {i} decompressed to {len(out)} bytes; "
                                   f"{want} expected")
        streams.append(out)
        offset += csize
    if degree == 0:
        streams.append(b"")
    return _unpack(streams, 4, count, degree, frac, ext, name, warnings)


def _check_header(name: str, count: int, degree: int, frac: int) -> None:
    if count == 0:
        raise SceneFormatError(f"{name}: the file holds no Gaussians (SPZ count 0)")
    if count > _MAX_POINTS:
        raise SceneFormatError(f"{name}: SPZ header claims {count} Gaussians (more than "
                               f"{_MAX_POINTS}); the file is corrupt")
    if degree > 4:
        raise SceneFormatError(f"{name}: SPZ SH degree {degree}; SPZ defines degrees 0-4")
    if frac > 23:
        raise SceneFormatError(f"{name}: SPZ fractional bits {frac}; at most 23 fit 24-bit positions")


def _stream_sizes(version: int, count: int, degree: int) -> list[int]:
    """Byte sizes of positions, alphas, colours, scales, rotations, SH."""
    return [count * (6 if version == 1 else 9), count, count * 3, count * 3,
            count * (4 if version >= 3 else 3), count * _sh_dim(degree) * 3]


def _split(body: memoryview, sizes: list[int]) -> list[bytes]:
    out, o = [], 0
    for s in sizes:
        out.append(body[o:o + s])
        o += s
    return out


def _parse_extensions(raw: bytes, name: str) -> dict[int, bytes]:
    """Extension records -> {type: payload}. Records are ``[u32 type][u32 length][payload]``;
    the early Adobe SH-quantisation and orbit records carry no length (10 and 12 bytes)."""
    out: dict[int, bytes] = {}
    o = 0
    while o + 4 <= len(raw):
        t = struct.unpack_from("<I", raw, o)[0]
        if o + 8 <= len(raw):
            length = struct.unpack_from("<I", raw, o + 4)[0]
            if o + 8 + length <= len(raw) and not (t == _EXT_SH_QUANT and length > 64):
                out[t] = bytes(raw[o + 8:o + 8 + length])
                o += 8 + length
                continue
        fixed = {_EXT_SH_QUANT: 10, _EXT_ORBIT: 12}.get(t)
        if fixed is None or o + 4 + fixed > len(raw):
            break  # an unknown unframed record: nothing after it can be located
        out[t] = bytes(raw[o + 4:o + 4 + fixed])
        o += 4 + fixed
    return out


def _unpack(streams: list, version: int, n: int, degree: int, frac: int,
            ext: dict[int, bytes], name: str, warnings: list[str] | None) -> GaussianScene:
    pos_b, alpha_b, col_b, scale_b, rot_b, sh_b = (np.frombuffer(s, np.uint8) for s in streams)
    stored = 4  # RUB
    if _EXT_COORDS in ext and len(ext[_EXT_COORDS]) >= 4:
        stored = struct.unpack_from("<I", ext[_EXT_COORDS], 0)[0]
        if stored > 8:
            raise SceneFormatError(f"{name}: SPZ coordinate system {stored} swaps axes; only the "
                                   f"axis-flip systems 1-8 are read")
    fx, fy, fz = _axis_flips(stored)

    if version == 1:
        means = pos_b.view("<f2").reshape(n, 3).astype(np.float32)
    else:
        p = pos_b.reshape(n * 3, 3).astype(np.int32)
        fixed = p[:, 0] | (p[:, 1] << 8) | (p[:, 2] << 16)
        fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
        means = (fixed.astype(np.float32) * np.float32(1.0 / (1 << frac))).reshape(n, 3)
    means *= np.array([fx, fy, fz], np.float32)

    scales = (scale_b.reshape(n, 3).astype(np.float32) / 16.0 - 10.0).astype(np.float32)
    alpha = np.clip(alpha_b.astype(np.float64) / 255.0, ALPHA_EPS, 1.0 - ALPHA_EPS)
    opacities = np.log(alpha / (1.0 - alpha)).astype(np.float32)
    sh_dc = ((col_b.reshape(n, 3).astype(np.float32) / 255.0 - 0.5) / _COLOR_SCALE).astype(np.float32)

    xyzw = np.empty((n, 4), np.float32)
    if version >= 3:
        comp = rot_b.view("<u4").astype(np.uint32)
        largest = (comp >> np.uint32(30)).astype(np.intp)
        sumsq = np.zeros(n, np.float32)
        slot = np.zeros(n, np.intp)  # 0 = lowest 10 bits = the last stored component
        for i in (3, 2, 1, 0):  # components in reverse order, skipping the largest
            here = largest != i
            bits = (comp >> np.uint32(10) * slot.astype(np.uint32)) & np.uint32(0x3FF)
            mag = (bits & np.uint32(0x1FF)).astype(np.float32) * (_SQRT1_2 / np.float32(511.0))
            val = np.where(bits & np.uint32(0x200), -mag, mag)
            xyzw[:, i] = np.where(here, val, 0.0)
            sumsq += np.where(here, val * val, 0.0)
            slot += here
        xyzw[np.arange(n), largest] = np.sqrt(np.maximum(0.0, 1.0 - sumsq))
    else:
        xyz = rot_b.reshape(n, 3).astype(np.float32) / np.float32(127.5) - np.float32(1.0)
        xyzw[:, :3] = xyz
        xyzw[:, 3] = np.sqrt(np.maximum(0.0, 1.0 - np.sum(xyz * xyz, axis=1)))
    # a turn by the axis flips: with an even number of flips each quaternion axis component
    # takes the product of the other two axes' signs, the real part is kept
    xyzw[:, :3] *= np.array([fy * fz, fx * fz, fx * fy], np.float32)
    quats = np.ascontiguousarray(xyzw[:, [3, 0, 1, 2]])

    k = _sh_dim(degree)
    sh = ((sh_b.reshape(n, k, 3).astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if _EXT_SH_QUANT in ext and len(ext[_EXT_SH_QUANT]) >= 10:
        lo, hi = struct.unpack_from("<ff", ext[_EXT_SH_QUANT], 2)
        if (lo, hi) != (-1.0, 1.0) and hi > lo:  # min/max rescaled codes (code / 255 in range)
            sh = (lo + sh_b.reshape(n, k, 3).astype(np.float32) / 255.0 * (hi - lo)).astype(np.float32)
    sh *= _sh_flips(fx, fy, fz)[:k, None]
    if degree == 4:
        sh = np.ascontiguousarray(sh[:, :15])
        if warnings is not None:
            warnings.append(f"{name}: SH degree 4 (24 coefficients per channel) cut to degree 3: "
                            f"the scene holds degrees 0-3")
    layout = PlyLayout(vertex_dtype=np.dtype([]), format="binary_little_endian",
                       comments=[], obj_info=[], source="spz")
    return GaussianScene(means=np.ascontiguousarray(means), scales=scales, quats=quats,
                         opacities=opacities, sh_dc=sh_dc, sh_rest=sh, extra={}, layout=layout)


# ---------------------------------------------------------------------------------------- write

def encode_spz(scene: GaussianScene, *, version: int = 3, antialiased: bool = False,
               sh1_bits: int = 5, sh_rest_bits: int = 4) -> tuple[bytes, list[str]]:
    """Encode a scene as the bytes of a ``.spz`` file.

    Args:
        scene: Inria conventions, RDF coordinates (as read from any .ply).
        version: 3 (gzip, the default: every SPZ reader opens it), 2 (8-bit first-three
            quaternions, for old readers) or 4 (zstd streams; needs ``zstandard``).
        antialiased: set the header's antialiasing (mip-splatting) flag.
        sh1_bits, sh_rest_bits: significant bits kept of the 8-bit SH codes (degree 1 / 2-3),
            the reference's defaults 5 and 4; fewer bits compress better.

    Returns:
        (file bytes, warnings: what the format drops, e.g. extra properties).

    Raises:
        SceneFormatError: an empty scene, an unknown version, or no zstd for version 4.
    """
    n = scene.num_gaussians
    if n == 0:
        raise SceneFormatError("cannot write an empty scene as .spz")
    if n > _MAX_POINTS:
        raise SceneFormatError(f"{n} Gaussians: more than SPZ readers accept ({_MAX_POINTS})")
    if version not in (2, 3, 4):
        raise SceneFormatError(f"SPZ version {version} cannot be written (2, 3 or 4)")
    if not (1 <= sh1_bits <= 8 and 1 <= sh_rest_bits <= 8):
        raise SceneFormatError("SPZ SH bits must be 1-8")
    warnings: list[str] = []
    if scene.extra:
        warnings.append(f".spz keeps no extra properties: dropped {', '.join(scene.extra)}")
    fx, fy, fz = 1.0, -1.0, -1.0  # RDF (the scene) -> RUB (the file)
    degree = scene.sh_degree

    means = scene.means.astype(np.float64) * np.array([fx, fy, fz])
    extent = float(np.max(np.abs(means[np.isfinite(means)]), initial=0.0))
    frac = 12  # the reference's choice: 1/4096 units
    while frac > 0 and extent * (1 << frac) >= (1 << 23) - 1:
        frac -= 1
    if extent * (1 << frac) >= (1 << 23) - 1:
        raise SceneFormatError(f"positions up to {extent:.4g} exceed the 24-bit range of .spz")
    if frac < 12:
        warnings.append(f".spz positions stored with {frac} fractional bits (the scene spans "
                        f"+-{extent:.4g}): precision {2.0 ** -(frac + 1):.3g} instead of 0.000122")
    fixed = np.rint(means * (1 << frac)).astype(np.int64).reshape(-1)
    pos = np.empty((fixed.size, 3), np.uint8)
    pos[:, 0] = fixed & 0xFF
    pos[:, 1] = (fixed >> 8) & 0xFF
    pos[:, 2] = (fixed >> 16) & 0xFF

    alpha = _u8(scene.activated_opacities().astype(np.float64) * 255.0)
    colors = _u8(scene.sh_dc.astype(np.float64) * (_COLOR_SCALE * 255.0) + 127.5)
    scales = _u8((scene.scales.astype(np.float64) + 10.0) * 16.0)

    q = scene.unit_quats().astype(np.float64)[:, [1, 2, 3, 0]]  # wxyz -> xyzw
    q[:, :3] *= np.array([fy * fz, fx * fz, fx * fy])
    if version >= 3:
        rot = _pack_smallest_three(q)
    else:
        q = np.where(q[:, 3:4] < 0, -q, q)
        rot = _u8(q[:, :3] * 127.5 + 127.5)

    k = sh_coeffs_for_degree(degree)
    sh = scene.sh_rest.astype(np.float64) * _sh_flips(fx, fy, fz)[:k, None]
    codes = np.rint(sh * 128.0) + 128.0
    bucket = np.array([1 << (8 - sh1_bits)] * min(k, 3) + [1 << (8 - sh_rest_bits)] * max(0, k - 3),
                      np.float64)[None, :, None]
    codes = np.floor((codes + bucket // 2) / bucket) * bucket
    sh_u8 = np.clip(codes, 0, 255).astype(np.uint8)

    streams = [pos.tobytes(), alpha.tobytes(), colors.tobytes(), scales.tobytes(),
               rot.tobytes(), sh_u8.tobytes()]
    flags = _FLAG_ANTIALIASED if antialiased else 0
    if version < 4:
        header = struct.pack("<IIIBBBB", SPZ_MAGIC, version, n, degree, frac, flags, 0)
        return gzip.compress(header + b"".join(streams), compresslevel=6, mtime=0), warnings
    try:
        import zstandard
    except ImportError:
        raise SceneFormatError("writing SPZ version 4 needs the 'zstandard' package; "
                               "write version 3 instead") from None
    cctx = zstandard.ZstdCompressor(level=12)
    chunks = [(cctx.compress(s), len(s)) for s in streams if s]
    toc_offset = 32
    header = struct.pack("<IIIBBBBI12x", SPZ_MAGIC, 4, n, degree, frac, flags, len(chunks), toc_offset)
    toc = b"".join(struct.pack("<QQ", len(c), u) for c, u in chunks)
    return header + toc + b"".join(c for c, _ in chunks), warnings


def write_spz(scene: GaussianScene, path: str | os.PathLike, *, overwrite: bool = False,
              version: int = 3, progress: Callable[[str], None] | None = None) -> list[str]:
    """Write a scene as a ``.spz`` (atomically); returns the warnings of :func:`encode_spz`."""
    return write_encoded(path, overwrite, lambda: encode_spz(scene, version=version), "packing .spz", progress)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _pack_smallest_three(q: np.ndarray) -> np.ndarray:
    """[N, 4] unit xyzw -> [N] little-endian u32 bytes [N, 4]: the reference's smallest-three
    packing (largest component made positive and dropped; 9-bit magnitudes of the others)."""
    n = q.shape[0]
    largest = np.argmax(np.abs(q), axis=1)
    negate = q[np.arange(n), largest] < 0
    comp = largest.astype(np.uint32)
    for i in range(4):
        here = largest != i
        neg = ((q[:, i] < 0) ^ negate).astype(np.uint32)
        mag = np.floor(511.0 * (np.abs(q[:, i]) / 0.7071067811865476) + 0.5)
        mag = np.minimum(mag, 511).astype(np.uint32)
        comp = np.where(here, (comp << np.uint32(10)) | (neg << np.uint32(9)) | mag, comp)
    return comp.astype("<u4").view(np.uint8).reshape(n, 4)
