"""antimatter15 ``.splat``: read and write (numpy only).

32 bytes per Gaussian, no header: position float32 x3, linear scale (exp of the log scale)
float32 x3, RGBA uint8 (RGB = ``f_dc * SH_C0 + 0.5`` clipped to [0, 1], A = sigmoid(opacity)),
quaternion (w, x, y, z) as uint8 ``q * 128 + 128`` of the unit quaternion. Reading decodes to the
Inria conventions (log scales, logit opacity, ``f_dc`` from colour), no higher SH; a scene read
from this format is written back by :func:`engine.core.formats.ply.write_ply` as a standard Inria
``.ply``. :func:`engine.core.formats.ply.read_ply` reads a ``.splat`` too (through here, unless
the file starts with a PLY header).

Precision of a write-read round trip: positions and scales exact (float32); colour and opacity
0.5/255; components of the re-normalised unit quaternion within 0.012 (8 bits each, the largest
not derived but stored). Dropped: all higher SH bands and extra properties (warnings say so),
colour outside [0, 1].
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from ..errors import SceneFormatError
from ..scene import SH_C0, GaussianScene, PlyLayout, inria_vertex_dtype
from .common import ALPHA_EPS, write_encoded

__all__ = ["decode_splat", "encode_splat", "write_splat"]


# ----------------------------------------------------------------------------------------- read

_SPLAT_DTYPE = np.dtype([("position", "<f4", (3,)), ("scale", "<f4", (3,)),
                         ("rgba", "u1", (4,)), ("rot", "u1", (4,))])


def decode_splat(path: str, name: str) -> GaussianScene:
    """antimatter15's ``.splat`` (32 bytes per splat, no header: position float32 x3, linear
    scale float32 x3, RGBA uint8 with A = opacity, quaternion wxyz as uint8 q*128+128), decoded
    to Inria conventions like the compressed format; no higher SH."""
    size = os.path.getsize(path)
    if size == 0 or size % _SPLAT_DTYPE.itemsize:
        raise SceneFormatError(
            f"{name}: not a .splat file ({size} bytes is not a positive multiple of 32)")
    rec = np.fromfile(path, dtype=_SPLAT_DTYPE)
    n = rec.shape[0]
    rgba = rec["rgba"].astype(np.float32) / 255.0
    alpha = np.clip(rgba[:, 3].astype(np.float64), ALPHA_EPS, 1.0 - ALPHA_EPS)
    with np.errstate(divide="ignore"):
        scales = np.log(rec["scale"].astype(np.float64)).astype(np.float32)  # 0 -> -inf: refused
    layout = PlyLayout(vertex_dtype=inria_vertex_dtype(0), format="binary_little_endian",
                       comments=[], obj_info=[], source="splat")
    return GaussianScene(
        means=np.ascontiguousarray(rec["position"], dtype=np.float32),
        scales=scales,
        quats=((rec["rot"].astype(np.float32) - 128.0) / 128.0),
        opacities=np.log(alpha / (1.0 - alpha)).astype(np.float32),
        sh_dc=((rgba[:, :3] - 0.5) / SH_C0).astype(np.float32),
        sh_rest=np.zeros((n, 0, 3), np.float32),
        layout=layout, path=path)


# ---------------------------------------------------------------------------------------- write

def encode_splat(scene: GaussianScene) -> tuple[bytes, list[str]]:
    """Encode a scene as an antimatter15 ``.splat`` (32 bytes per Gaussian, no header).

    Returns:
        (file bytes, warnings: the SH bands and extra properties dropped, colours clipped).
    """
    n = scene.num_gaussians
    if n == 0:
        raise SceneFormatError("cannot write an empty scene as .splat")
    warnings: list[str] = []
    if scene.sh_rest.shape[1]:
        warnings.append(f".splat keeps colour only: SH degree {scene.sh_degree} bands dropped "
                        f"(view-dependent colour lost)")
    if scene.extra:
        warnings.append(f".splat keeps no extra properties: dropped {', '.join(scene.extra)}")
    rgb = scene.sh_dc.astype(np.float64) * SH_C0 + 0.5
    clipped = int(np.count_nonzero((rgb < -0.5 / 255) | (rgb > 1 + 0.5 / 255)))
    if clipped:
        warnings.append(f".splat colours are 8-bit in [0, 1]: {clipped} colour values outside "
                        f"were clipped")
    rec = np.empty(n, _SPLAT_DTYPE)
    rec["position"] = scene.means
    rec["scale"] = np.exp(scene.scales.astype(np.float64))
    rec["rgba"][:, :3] = np.clip(np.rint(rgb * 255.0), 0, 255)
    rec["rgba"][:, 3] = np.clip(np.rint(scene.activated_opacities().astype(np.float64) * 255.0), 0, 255)
    rec["rot"] = np.clip(np.rint(scene.unit_quats().astype(np.float64) * 128.0 + 128.0), 0, 255)
    return rec.tobytes(), warnings


def write_splat(scene: GaussianScene, path: str, *, overwrite: bool = False,
                progress: Callable[[str], None] | None = None) -> list[str]:
    """Write a scene as a ``.splat`` (atomically); returns the warnings of :func:`encode_splat`."""
    return write_encoded(path, overwrite, lambda: encode_splat(scene), None, progress)
