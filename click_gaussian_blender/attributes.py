"""How a Gaussian scene is stored on a Blender mesh (names and meanings; no bpy here).

One mesh vertex per Gaussian; the vertex position is the Gaussian's mean in the object's local
space (the file's coordinates mapped by the import's axis conversion). Every Gaussian property is
a POINT-domain attribute, in the file's own conventions, so nothing is lost:

====================  ============  ======================================================
attribute             type          meaning
====================  ============  ======================================================
``gs_position``       FLOAT_VECTOR  the mean as read from the file (file axes); export uses it
                                    with the current position to work out what was edited
``gs_index``          INT           the Gaussian's row in the source file (features, clicks)
``gs_f_dc``           FLOAT_VECTOR  SH degree-0 coefficient (f_dc_0-2), RGB
``gs_sh<k>``          FLOAT_VECTOR  SH coefficient k = 1..15 (basis order), RGB; in the file it
                                    is ``f_rest_{c*K + k-1}`` for channel c
``gs_opacity``        FLOAT         opacity logit
``gs_scale``          FLOAT_VECTOR  log standard deviations (scale_0-2)
``gs_rotation``       QUATERNION    rotation wxyz (rot_0-3), as stored (maybe unnormalised)
``gs_x_<name>``       FLOAT / INT   any other per-vertex property of the file (nx, ny, ...)
``gs_color``          FLOAT_COLOR   display colour: SH DC colour (linear) with alpha = opacity
====================  ============  ======================================================

Object custom properties (``gs_*``) record the file layout (JSON), the axis conversion matrix
applied at import (4x4, file -> local) and the source path, so export undoes the conversion
exactly and writes the input's property layout.
"""

from __future__ import annotations

import json

import numpy as np

from .engine.core.scene import SH_C0, GaussianScene, PlyLayout

POSITION = "gs_position"
INDEX = "gs_index"
F_DC = "gs_f_dc"
OPACITY = "gs_opacity"
SCALE = "gs_scale"
ROTATION = "gs_rotation"
COLOR = "gs_color"
EXTRA_PREFIX = "gs_x_"


def sh_name(k: int) -> str:
    """Attribute name of SH coefficient ``k`` (1..15, gsplat basis order)."""
    return f"gs_sh{k}"


# object custom properties
PROP_LAYOUT = "gs_layout"
PROP_AXIS = "gs_axis_matrix"
PROP_SOURCE = "gs_source"
PROP_SH_DEGREE = "gs_sh_degree"
PROP_COUNT = "gs_count"


def layout_to_json(layout: PlyLayout | None) -> str:
    """JSON text of a PLY layout (vertex dtype as ``descr``), or "" for none."""
    if layout is None:
        return ""
    return json.dumps(
        {
            "descr": [list(d) for d in layout.vertex_dtype.descr],
            "format": layout.format,
            "comments": list(layout.comments),
            "obj_info": list(layout.obj_info),
            "source": layout.source,
        }
    )


def layout_from_json(text: str) -> PlyLayout | None:
    """Inverse of :func:`layout_to_json`; None for "" or unreadable text."""
    if not text:
        return None
    try:
        d = json.loads(text)
        dtype = np.dtype([tuple(x) for x in d["descr"]])
        return PlyLayout(dtype, d["format"], list(d["comments"]), list(d["obj_info"]), d["source"])
    except (ValueError, KeyError, TypeError):
        return None


_SRGB_LUT_SIZE = 4096
_SRGB_TO_LINEAR = (lambda c: np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4))(
    np.linspace(0.0, 1.0, _SRGB_LUT_SIZE)).astype(np.float32)


def display_colors(scene: GaussianScene) -> np.ndarray:
    """[N, 4] float32 RGBA display colour: the SH DC colour as 3DGS renders it (an sRGB-like
    display value ``SH_C0 * f_dc + 0.5`` clipped to [0, 1]) converted to Blender's scene-linear
    space through a 4096-entry table (error < 1e-3), and alpha = opacity (sigmoid of the logit).
    Computed in place in float32 (a few passes over the data, no float64 temporaries)."""
    n = scene.num_gaussians
    rgba = np.empty((n, 4), np.float32)
    scale = np.float32(SH_C0 * (_SRGB_LUT_SIZE - 1))
    code = scene.sh_dc * scale  # float32 [N, 3]
    code += np.float32(0.5 * (_SRGB_LUT_SIZE - 1) + 0.5)
    np.clip(code, 0, _SRGB_LUT_SIZE - 1, out=code)
    rgba[:, :3] = _SRGB_TO_LINEAR[code.astype(np.int32)]
    alpha = np.negative(scene.opacities, dtype=np.float32)
    with np.errstate(over="ignore"):
        np.exp(alpha, out=alpha)
    alpha += np.float32(1.0)
    np.reciprocal(alpha, out=alpha)
    rgba[:, 3] = alpha
    return rgba


def coefficient_major(sh_rest: np.ndarray, block: int = 16384) -> np.ndarray:
    """[N, K, 3] -> contiguous float32 [K, N, 3], copied in row blocks that stay in cache
    (a one-shot transposing copy reads the whole array K times)."""
    n, k, c = sh_rest.shape
    out = np.empty((k, n, c), np.float32)
    for r0 in range(0, n, block):
        out[:, r0:r0 + block] = sh_rest[r0:r0 + block].transpose(1, 0, 2)
    return out


def map_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """[N, 3] float32 points through a [4, 4] affine. A signed axis permutation without
    translation (every axis-conversion choice of the importer) is applied as a column gather
    and sign flip: exact, and far cheaper than a float64 product on millions of points."""
    m = np.asarray(matrix, dtype=np.float64).reshape(4, 4)
    lin = m[:3, :3]
    if not m[:3, 3].any() and np.array_equal(np.abs(lin), np.abs(lin) > 0.5) and (np.abs(lin).sum(0) == 1).all():
        perm = np.argmax(np.abs(lin), axis=1)  # output axis i takes input axis perm[i]
        signs = lin[np.arange(3), perm].astype(np.float32)
        out = np.asarray(points, dtype=np.float32)[:, perm]
        if (signs < 0).any():
            out *= signs
        return out
    return (np.asarray(points, dtype=np.float64) @ lin.T + m[:3, 3]).astype(np.float32)
