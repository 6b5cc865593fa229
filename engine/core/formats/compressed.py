"""SuperSplat / PlayCanvas ``.compressed.ply``: read and write (numpy; plyfile parses the
container through :mod:`engine.core.formats.ply`, whose :func:`read_ply` hands a file of this
layout here: a ``.ply``'s content, not its name, decides the layout).

``.compressed.ply`` (PlayCanvas): chunks of 256 Gaussians, each chunk with float32 min/max of
position, log scale and colour; per Gaussian four uint32: position 11/10/11 bits and log scale
11/10/11 bits lerped in the chunk's bounds (log scales bounded to [-20, 20]), rotation as the
smallest three components of the unit quaternion (w, x, y, z order, largest made positive; its
index in bits 30-31, then 10 bits each of ``q * sqrt(2)/2 + 0.5``), colour RGBA 8 bits each (RGB
= ``f_dc * SH_C0 + 0.5`` lerped in the chunk's colour bounds, A = sigmoid(opacity)); optional
``sh`` element of uint8 ``f_rest_*`` codes, ``trunc((v / 8 + 0.5) * 256)``. The Gaussians are
written in Morton (Z-curve) order by default, as SuperSplat and splat-transform do: chunk bounds
then span small neighbourhoods, which is where the precision comes from. ``keep_order=True``
keeps the scene's order (bounds then span whatever each run of 256 Gaussians spans).

Precision of a write-read round trip, per Gaussian, with ``R`` the chunk's range on that axis:
- position: ``R / 4094`` (x, z; 11 bits) and ``R / 2046`` (y; 10 bits);
- log scale: the same with the chunk's log-scale range;
- rotation: each unit-quaternion component within 0.003;
- colour ``SH_C0 * f_dc + 0.5``: half a step of 8 bits in the chunk's colour range;
- opacity: sigmoid(opacity) within 0.5/255;
- SH rest: 1/64 inside [-4, 4) (clamped outside).
Dropped: extra per-Gaussian properties (a warning names them).

Reading decodes to the Inria conventions (log scales, logit opacity, ``f_dc`` from colour, wxyz
quaternions) with the same maths as playcanvas/splat-transform's ``decompress-ply``; a scene read
from this format is written back by :func:`engine.core.formats.ply.write_ply` as a standard Inria
``.ply``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import plyfile

from ..click import morton_order
from ..errors import SceneFormatError
from ..quaternion import from_smallest_three, smallest_three
from ..scene import SH_C0, GaussianScene, PlyLayout, inria_vertex_dtype, sh_degree_for_coeffs
from .common import ALPHA_EPS, write_encoded

__all__ = ["is_compressed_ply", "decode_compressed", "encode_compressed_ply", "write_compressed_ply"]

_CHUNK = 256
_CHUNK_BOUNDS = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                 "min_scale_x", "min_scale_y", "min_scale_z",
                 "max_scale_x", "max_scale_y", "max_scale_z")
_CHUNK_COLOUR = ("min_r", "min_g", "min_b", "max_r", "max_g", "max_b")
_CHUNK_PROPS = _CHUNK_BOUNDS + _CHUNK_COLOUR
_PACKED = ("packed_position", "packed_rotation", "packed_scale", "packed_color")


# ----------------------------------------------------------------------------------------- read

def is_compressed_ply(data: plyfile.PlyData) -> bool:
    """True when a parsed PLY is SuperSplat's compressed layout (``chunk`` + packed ``vertex``)."""
    names = [e.name for e in data.elements]
    if "chunk" not in names or "vertex" not in names:
        return False
    vprops = {p.name for p in data["vertex"].properties}
    cprops = {p.name for p in data["chunk"].properties}
    return set(_PACKED) <= vprops and set(_CHUNK_BOUNDS) <= cprops


def _from_unorm(values: np.ndarray, shift: int, bits: int) -> np.ndarray:
    mask = (1 << bits) - 1
    return ((values >> np.uint32(shift)) & np.uint32(mask)).astype(np.float32) / np.float32(mask)


def _lerp(lo: np.ndarray, hi: np.ndarray, t: np.ndarray) -> np.ndarray:
    return lo * (1.0 - t) + hi * t


def decode_compressed(data: plyfile.PlyData, name: str) -> GaussianScene:
    """SuperSplat compressed PLY -> Inria conventions (same maths as playcanvas/splat-transform's
    ``decompress-ply``: 11/10/11-bit positions and log scales lerped in per-chunk bounds,
    smallest-three quaternion with the largest component's index in the top 2 bits, 8-bit RGBA
    colour where RGB is lerped in the chunk's colour bounds when present)."""
    chunk = data["chunk"].data
    vertex = data["vertex"].data
    n = vertex.shape[0]
    n_chunks = chunk.shape[0]
    if n == 0:  # refused like an empty Inria file: an empty scene is no use to any caller
        raise SceneFormatError(f"{name}: the file holds no Gaussians (element vertex 0)")
    if n_chunks * _CHUNK < n:
        raise SceneFormatError(
            f"{name}: compressed PLY has {n_chunks} chunks for {n} splats (needs {-(-n // 256)})")
    ci = np.arange(n) // _CHUNK

    def c(field: str) -> np.ndarray:
        return np.asarray(chunk[field], dtype=np.float32)[ci]

    def packed(field: str) -> np.ndarray:
        return np.asarray(vertex[field]).astype(np.uint32)

    pos = packed("packed_position")
    means = np.stack([
        _lerp(c("min_x"), c("max_x"), _from_unorm(pos, 21, 11)),
        _lerp(c("min_y"), c("max_y"), _from_unorm(pos, 11, 10)),
        _lerp(c("min_z"), c("max_z"), _from_unorm(pos, 0, 11)),
    ], axis=1).astype(np.float32)
    sc = packed("packed_scale")
    scales = np.stack([
        _lerp(c("min_scale_x"), c("max_scale_x"), _from_unorm(sc, 21, 11)),
        _lerp(c("min_scale_y"), c("max_scale_y"), _from_unorm(sc, 11, 10)),
        _lerp(c("min_scale_z"), c("max_scale_z"), _from_unorm(sc, 0, 11)),
    ], axis=1).astype(np.float32)

    rot = packed("packed_rotation")
    norm = np.float32(np.sqrt(2.0))  # components of the smallest three lie in [-1/sqrt2, 1/sqrt2]
    abc = np.stack([(_from_unorm(rot, s, 10) - 0.5) * norm for s in (20, 10, 0)], axis=1)
    quats = from_smallest_three((rot >> np.uint32(30)).astype(np.intp), abc)

    col = packed("packed_color")
    rgb = np.stack([_from_unorm(col, 24, 8), _from_unorm(col, 16, 8), _from_unorm(col, 8, 8)], axis=1)
    cprops = {p.name for p in data["chunk"].properties}
    if set(_CHUNK_COLOUR) <= cprops:  # SuperSplat >= 1.x stores per-chunk colour bounds
        lo = np.stack([c("min_r"), c("min_g"), c("min_b")], axis=1)
        hi = np.stack([c("max_r"), c("max_g"), c("max_b")], axis=1)
        rgb = _lerp(lo, hi, rgb)
    sh_dc = ((rgb - 0.5) / SH_C0).astype(np.float32)
    alpha = np.clip(_from_unorm(col, 0, 8).astype(np.float64), ALPHA_EPS, 1.0 - ALPHA_EPS)
    opacities = np.log(alpha / (1.0 - alpha)).astype(np.float32)

    sh_rest = np.zeros((n, 0, 3), np.float32)
    if "sh" in [e.name for e in data.elements]:
        sh = data["sh"].data
        names = [p.name for p in data["sh"].properties]
        k3 = len(names)
        if k3 not in (9, 24, 45) or names != [f"f_rest_{i}" for i in range(k3)]:
            raise SceneFormatError(
                f"{name}: compressed 'sh' element has {k3} properties; expected f_rest_0.. with "
                f"9, 24 or 45 entries")
        if sh.shape[0] != n:
            raise SceneFormatError(f"{name}: 'sh' element has {sh.shape[0]} rows for {n} splats")
        mat = np.stack([sh[p] for p in names], axis=1).astype(np.float32)  # uint8 codes [N, 3K]
        t = np.where(mat == 0, 0.0, np.where(mat == 255, 1.0, (mat + 0.5) / 256.0))
        coeffs = ((t - 0.5) * 8.0).astype(np.float32)
        k = k3 // 3
        sh_rest = np.ascontiguousarray(coeffs.reshape(n, 3, k).transpose(0, 2, 1))

    layout = PlyLayout(
        vertex_dtype=inria_vertex_dtype(sh_degree_for_coeffs(sh_rest.shape[1])),
        format="binary_little_endian", comments=[], obj_info=[], source="compressed_ply")
    return GaussianScene(means=means, scales=scales, quats=quats, opacities=opacities,
                         sh_dc=sh_dc, sh_rest=sh_rest, extra={}, layout=layout)


# ---------------------------------------------------------------------------------------- write

def _to_unorm(t: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    return np.clip(np.floor(t * top + 0.5), 0, top).astype(np.uint32)


def _normalise(v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """[C, 256] values -> [0, 1] in per-chunk bounds [C, 1] (a flat chunk axis gives 0)."""
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(span < 1e-5, 0.0, (v - lo) / np.where(span < 1e-5, 1.0, span))
    return np.clip(t, 0.0, 1.0)


def encode_compressed_ply(scene: GaussianScene, *, keep_order: bool = False,
                          comment: str = "Generated by click-gaussian engine"
                          ) -> tuple[bytes, list[str]]:
    """Encode a scene as a SuperSplat ``.compressed.ply``.

    Returns:
        (file bytes, warnings). Gaussians are in Morton order unless ``keep_order``; a warning
        says so, since per-Gaussian data kept elsewhere no longer lines up.
    """
    n = scene.num_gaussians
    if n == 0:
        raise SceneFormatError("cannot write an empty scene as .compressed.ply")
    warnings: list[str] = []
    if scene.extra:
        warnings.append(f".compressed.ply keeps no extra properties: dropped {', '.join(scene.extra)}")
    order = np.arange(n) if keep_order else morton_order(scene.means.astype(np.float64))
    if not keep_order:
        warnings.append(".compressed.ply: Gaussians written in Morton order (as SuperSplat "
                        "does, for tighter chunk bounds); their order differs from the scene's")
    chunks = -(-n // _CHUNK)
    pad = chunks * _CHUNK - n
    # pad the last chunk by repeating its last Gaussian, as the reference does
    idx = np.concatenate([order, np.full(pad, order[-1])])

    def per_chunk(a: np.ndarray) -> np.ndarray:  # [N, d] -> [C, 256, d] in write order
        return a.astype(np.float64)[idx].reshape(chunks, _CHUNK, -1)

    pos = per_chunk(scene.means)
    scl = per_chunk(scene.scales)
    rgb = per_chunk(scene.sh_dc) * SH_C0 + 0.5
    p_lo, p_hi = pos.min(axis=1), pos.max(axis=1)
    s_lo, s_hi = np.clip(scl.min(axis=1), -20, 20), np.clip(scl.max(axis=1), -20, 20)
    c_lo, c_hi = rgb.min(axis=1), rgb.max(axis=1)

    def pack111011(v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        t = _normalise(v, lo[:, None, :], hi[:, None, :])
        return (_to_unorm(t[..., 0], 11) << np.uint32(21)) | (_to_unorm(t[..., 1], 10) << np.uint32(11)) \
            | _to_unorm(t[..., 2], 11)

    packed = np.empty((chunks, _CHUNK, 4), "<u4")
    packed[..., 0] = pack111011(pos, p_lo, p_hi)
    packed[..., 2] = pack111011(scl, s_lo, s_hi)
    largest, abc = smallest_three(scene.unit_quats()[idx])
    rot = largest.astype(np.uint32)
    for j in range(3):
        rot = (rot << np.uint32(10)) | _to_unorm(abc[:, j] * (np.sqrt(2.0) * 0.5) + 0.5, 10)
    packed[..., 1] = rot.reshape(chunks, _CHUNK)
    t = _normalise(rgb, c_lo[:, None, :], c_hi[:, None, :])
    alpha = scene.activated_opacities().astype(np.float64)[idx].reshape(chunks, _CHUNK)
    packed[..., 3] = (_to_unorm(t[..., 0], 8) << np.uint32(24)) | (_to_unorm(t[..., 1], 8) << np.uint32(16)) \
        | (_to_unorm(t[..., 2], 8) << np.uint32(8)) | _to_unorm(alpha, 8)

    chunk_data = np.concatenate([p_lo, p_hi, s_lo, s_hi, c_lo, c_hi], axis=1).astype("<f4")
    k = scene.sh_rest.shape[1]
    lines = ["ply", "format binary_little_endian 1.0", f"comment {comment}",
             f"element chunk {chunks}"] + [f"property float {p}" for p in _CHUNK_PROPS] + \
        [f"element vertex {n}", "property uint packed_position", "property uint packed_rotation",
         "property uint packed_scale", "property uint packed_color"]
    sh_bytes = b""
    if k:
        lines += [f"element sh {n}"] + [f"property uchar f_rest_{i}" for i in range(3 * k)]
        rest = scene.sh_rest[order].transpose(0, 2, 1).reshape(n, 3 * k).astype(np.float64)
        sh_bytes = np.clip(np.trunc((rest / 8.0 + 0.5) * 256.0), 0, 255).astype(np.uint8).tobytes()
    header = ("\n".join(lines + ["end_header"]) + "\n").encode("ascii")
    body = packed.reshape(-1, 4)[:n].tobytes()
    return header + chunk_data.tobytes() + body + sh_bytes, warnings


def write_compressed_ply(scene: GaussianScene, path: str, *, overwrite: bool = False,
                         keep_order: bool = False,
                         progress: Callable[[str], None] | None = None) -> list[str]:
    """Write a scene as a ``.compressed.ply`` (atomically); returns the warnings of
    :func:`encode_compressed_ply`."""
    return write_encoded(path, overwrite, lambda: encode_compressed_ply(scene, keep_order=keep_order),
                         "packing chunks", progress)
