"""PlayCanvas SOG (numpy + the standard library; WebP through Pillow or a decoder you pass).

A SOG scene is a ``meta.json`` plus lossless WebP images, one texel per Gaussian (row-major,
images ``W x H`` with both multiples of 4), either as a folder holding ``meta.json`` or as a single
``.sog`` file (a zip of the same files). Read: versions 1 (per-channel min/max) and 2 (codebooks,
what SuperSplat and splat-transform write today). Write: version 2, as a ``.sog`` zip or, for a
target named ``meta.json``, as that file with its images beside it.

WebP: decoded and encoded with Pillow (``PIL``; lossless with ``exact`` so the RGB under a
transparent texel survive). Inside Blender, where Pillow is absent, pass ``decode_webp`` (any
callable ``bytes -> uint8 [H, W, 4]``, e.g. one built on Blender's own image loading); without
either a read is refused with a one-line message. This module imports Pillow only when used.

Version 2 layout (``meta.json``: ``version``, ``count``, and per attribute its ``files``):
- means: ``means_l.webp`` / ``means_u.webp`` low / high bytes of a 16-bit value per axis, lerped
  in ``[mins, maxs]`` of ``sign(x) * ln(|x| + 1)`` and mapped back;
- quats: ``quats.webp`` RGB = the three smaller components of the unit quaternion (w, x, y, z
  order, largest made positive) times sqrt(2), mapped from [-1, 1] to 0..255; A = 252 + index of
  the largest component;
- scales: ``scales.webp`` RGB = indices into a 256-entry ``codebook`` of log scales;
- sh0: ``sh0.webp`` RGB = indices into a 256-entry ``codebook`` of ``f_dc``; A = sigmoid(opacity)
  * 255;
- shN (optional): ``shN_centroids.webp`` (palette rows of 64 entries, each ``K`` texels wide,
  RGB = codebook indices for coefficient k) and ``shN_labels.webp`` (R + 256 G = palette index),
  with ``bands`` 1-3, ``count`` palette entries and a 256-entry ``codebook``.
Coordinates are the .ply's own (no axis change). Gaussians keep their order (splat-transform
sorts them in Morton order; nothing requires it, and the engine's per-Gaussian data rely on it).

Precision of a write-read round trip (checked by the tests):
- positions: half a 16-bit step of the log-mapped range per axis: ``|dx| <= (|x| + 1) *
  (max - min) / 131070`` (min / max of ``sign(x) ln(|x|+1)`` on that axis);
- log scales and ``f_dc``: the nearest of 256 codebook values fitted to the scene (1-D k-means
  over the three axes / channels together, its ends the smallest and largest value): at most
  half the gap between the two codebook values around the true value (exact when the scene has
  at most 256 distinct values, as the fox has);
- rotations: each component of the unit quaternion within 0.012 (8 bits for the smaller three,
  the largest derived from them);
- opacity: sigmoid(opacity) within 0.5/255;
- SH rest: each Gaussian gets the nearest of up to 65,536 palette entries (k-means over the
  coefficients, then 256 codebook values): lossy, error reported as RMS by the tests.
Dropped: extra per-Gaussian properties (a warning names them).
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Callable

import numpy as np

from ..errors import SceneFormatError
from ..quaternion import from_smallest_three, smallest_three
from ..scene import GaussianScene, PlyLayout, sh_coeffs_for_degree
from .common import ALPHA_EPS, display, refuse_existing, write_bytes

__all__ = ["read_sog", "encode_sog", "write_sog", "WebPDecoder"]

WebPDecoder = Callable[[bytes], np.ndarray]
_SQRT2 = math.sqrt(2.0)
_MAX_COUNT = 100_000_000


# ----------------------------------------------------------------------------------------- WebP

def _pillow_decode(data: bytes) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise SceneFormatError("reading .sog needs a WebP decoder: install Pillow or pass "
                               "decode_webp") from None
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGBA"), dtype=np.uint8)


def _pillow_encode(rgba: np.ndarray) -> bytes:
    try:
        from PIL import Image
    except ImportError:
        raise SceneFormatError("writing .sog needs a WebP encoder: install Pillow") from None
    buf = io.BytesIO()
    # exact: keep the RGB of texels whose alpha is 0 (opacity codes); method 4 is libwebp's
    # default effort, a fair size / time trade
    Image.fromarray(rgba, "RGBA").save(buf, "WEBP", lossless=True, exact=True, quality=100, method=4)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------- read

class _Files:
    """The SOG's files by name: from a zip or from the folder of its meta.json."""

    def __init__(self, path: str, name: str):
        self.name = name
        self.zip: zipfile.ZipFile | None = None
        if os.path.isdir(path):
            path = os.path.join(path, "meta.json")
        if not os.path.exists(path):
            raise SceneFormatError(f"{name}: file not found")
        if os.path.basename(path).lower() == "meta.json":
            self.folder = os.path.dirname(path)
            self.meta_name = os.path.basename(path)
            return
        self.folder = ""
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise SceneFormatError(f"{name}: not a .sog file (not a readable zip: {exc})") from None
        names = self.zip.namelist()
        metas = [n for n in names if n == "meta.json" or n.endswith("/meta.json")]
        if not metas:
            self.zip.close()
            raise SceneFormatError(f"{name}: .sog zip without meta.json (it holds "
                                   f"{', '.join(names[:5]) or 'nothing'})")
        self.meta_name = min(metas, key=len)
        self.prefix = self.meta_name[: -len("meta.json")]

    def read(self, file: str) -> bytes:
        if not isinstance(file, str) or not file or "\\" in file or file.startswith("/") \
                or ".." in file.split("/"):
            raise SceneFormatError(f"{self.name}: meta.json names a file {file!r} outside the SOG")
        try:
            if self.zip is not None:
                return self.zip.read(self.prefix + file if file != self.meta_name else file)
            with open(os.path.join(self.folder, file), "rb") as f:
                return f.read()
        except (KeyError, FileNotFoundError):  # not in the zip / not beside meta.json
            raise SceneFormatError(f"{self.name}: {file} named in meta.json is missing") from None
        except OSError as exc:
            raise SceneFormatError(f"{self.name}: cannot read {file}: {exc.strerror or exc}") from None
        except (zipfile.BadZipFile, EOFError) as exc:
            raise SceneFormatError(f"{self.name}: cannot read {file}: {exc}") from None

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def read_sog(path: str | os.PathLike, *, decode_webp: WebPDecoder | None = None,
             warnings: list[str] | None = None) -> GaussianScene:
    """Read a SOG scene (``.sog`` zip, ``meta.json``, or a folder holding ``meta.json``).

    Returns:
        A :class:`GaussianScene` in Inria conventions (wxyz unit quaternions, log scales, opacity
        logits, SH [N, K, 3]), ``layout.source == "sog"``, ``path`` set.

    Raises:
        SceneFormatError: missing files, a bad meta.json, undecodable or too small images.
    """
    path = os.fspath(path)
    name = display(path)
    files = _Files(path, name)
    decode = decode_webp or _pillow_decode
    try:
        try:
            meta = json.loads(files.read(files.meta_name).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SceneFormatError(f"{name}: bad meta.json: {exc}") from None
        if not isinstance(meta, dict):
            raise SceneFormatError(f"{name}: bad meta.json: not a JSON object")
        try:
            scene = _decode(meta, files, decode, name)
        except KeyError as exc:
            raise SceneFormatError(f"{name}: bad meta.json: it has no {exc} entry") from None
        except (TypeError, ValueError, IndexError) as exc:
            raise SceneFormatError(f"{name}: bad meta.json: {type(exc).__name__}: {exc}") from None
    finally:
        files.close()
    scene.path = path
    return scene


def _image(files: _Files, meta_part: dict, i: int, decode: WebPDecoder, count: int,
           name: str) -> np.ndarray:
    """[count, 4] uint8 texels of the i-th file of an attribute, row-major."""
    file = meta_part["files"][i]
    try:
        rgba = decode(files.read(file))
    except SceneFormatError:
        raise
    except Exception as exc:  # any decoder's failure on a damaged image
        raise SceneFormatError(f"{name}: cannot decode {file}: {exc}") from None
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8:
        raise SceneFormatError(f"{name}: {file} is not an RGBA image")
    flat = rgba.reshape(-1, 4)
    if flat.shape[0] < count:
        raise SceneFormatError(f"{name}: {file} has {flat.shape[0]} texels for {count} Gaussians")
    return flat[:count]


def _codebook(meta_part: dict, name: str, what: str) -> np.ndarray:
    cb = np.asarray(meta_part["codebook"], dtype=np.float64)
    if cb.ndim != 1 or cb.size == 0 or cb.size > 256 or not np.isfinite(cb).all():
        raise SceneFormatError(f"{name}: bad meta.json: {what}.codebook is not 1-256 finite numbers")
    return np.concatenate([cb, np.zeros(256 - cb.size)]).astype(np.float32)


def _vector(meta_part: dict, key: str, size: int, name: str, what: str) -> np.ndarray:
    v = np.asarray(meta_part[key], dtype=np.float64).reshape(-1)
    if v.size < size or not np.isfinite(v[:size]).all():
        raise SceneFormatError(f"{name}: bad meta.json: {what}.{key} needs {size} finite numbers")
    return v[:size]


def _decode(meta: dict, files: _Files, decode: WebPDecoder, name: str) -> GaussianScene:
    version = meta.get("version")
    if version is None:
        count = meta["means"]["shape"][0]
    elif version == 2:
        count = meta["count"]
    else:
        raise SceneFormatError(f"{name}: SOG version {version!r} is not supported (1 and 2 are)")
    if not isinstance(count, int) or isinstance(count, bool) or count <= 0 or count > _MAX_COUNT:
        raise SceneFormatError(f"{name}: bad meta.json: count {count!r} is not a positive integer")
    n = count

    lo = _image(files, meta["means"], 0, decode, n, name).astype(np.uint32)
    hi = _image(files, meta["means"], 1, decode, n, name).astype(np.uint32)
    q16 = (lo[:, :3] | (hi[:, :3] << 8)).astype(np.float64) / 65535.0
    mins = _vector(meta["means"], "mins", 3, name, "means")
    maxs = _vector(meta["means"], "maxs", 3, name, "means")
    span = np.where(maxs - mins == 0, 1.0, maxs - mins)  # as the reference: a flat axis stays min
    t = mins + span * q16
    means = (np.sign(t) * np.expm1(np.abs(t))).astype(np.float32)

    qt = _image(files, meta["quats"], 0, decode, n, name)
    quats = _unpack_quats(qt)

    st = _image(files, meta["scales"], 0, decode, n, name)
    c0 = _image(files, meta["sh0"], 0, decode, n, name)
    if version == 2:
        scales = _codebook(meta["scales"], name, "scales")[st[:, :3]]
        sh_dc = _codebook(meta["sh0"], name, "sh0")[c0[:, :3]]
        alpha = np.clip(c0[:, 3].astype(np.float64) / 255.0, ALPHA_EPS, 1.0 - ALPHA_EPS)
        opacities = np.log(alpha / (1.0 - alpha)).astype(np.float32)
    else:
        smin = _vector(meta["scales"], "mins", 3, name, "scales")
        smax = _vector(meta["scales"], "maxs", 3, name, "scales")
        scales = (smin + (smax - smin) * st[:, :3] / 255.0).astype(np.float32)
        cmin = _vector(meta["sh0"], "mins", 4, name, "sh0")
        cmax = _vector(meta["sh0"], "maxs", 4, name, "sh0")
        lin = cmin + (cmax - cmin) * c0.astype(np.float64) / 255.0
        sh_dc = lin[:, :3].astype(np.float32)
        opacities = lin[:, 3].astype(np.float32)  # version 1 stores the logit itself

    sh_rest = np.zeros((n, 0, 3), np.float32)
    if meta.get("shN"):
        sh_rest = _decode_shn(meta, files, decode, n, version, name)
    layout = PlyLayout(vertex_dtype=np.dtype([]), format="binary_little_endian", comments=[],
                       obj_info=[], source="sog")
    return GaussianScene(means=means, scales=np.ascontiguousarray(scales, np.float32), quats=quats,
                         opacities=opacities, sh_dc=np.ascontiguousarray(sh_dc, np.float32),
                         sh_rest=sh_rest, extra={}, layout=layout)


def _unpack_quats(qt: np.ndarray) -> np.ndarray:
    """[N, 4] texels -> [N, 4] wxyz unit quaternions; an invalid tag (not 252-255) is identity,
    as the reference reads it."""
    tag = qt[:, 3].astype(np.intp)
    valid = (tag >= 252) & (tag <= 255)
    largest = np.where(valid, tag - 252, 0)
    abc = (qt[:, :3].astype(np.float32) / 255.0 * 2.0 - 1.0) / np.float32(_SQRT2)
    quats = from_smallest_three(largest, abc)
    quats[~valid] = (1.0, 0.0, 0.0, 0.0)
    return quats


def _decode_shn(meta: dict, files: _Files, decode: WebPDecoder, n: int, version: int | None,
                name: str) -> np.ndarray:
    shn = meta["shN"]
    cent_bytes = files.read(shn["files"][0])
    try:
        cent = np.asarray(decode(cent_bytes))
    except SceneFormatError:
        raise
    except Exception as exc:
        raise SceneFormatError(f"{name}: cannot decode {shn['files'][0]}: {exc}") from None
    if cent.ndim != 3 or cent.shape[2] != 4:
        raise SceneFormatError(f"{name}: {shn['files'][0]} is not an RGBA image")
    if version == 2:
        bands = shn["bands"]
        if bands not in (1, 2, 3):
            raise SceneFormatError(f"{name}: bad meta.json: shN.bands {bands!r} (1-3)")
        k = sh_coeffs_for_degree(bands)
        table = _codebook(shn, name, "shN")
        palette = int(shn["count"])
    else:
        k = {192: 3, 512: 8, 960: 15}.get(cent.shape[1], 0)
        if not k:
            raise SceneFormatError(f"{name}: {shn['files'][0]} width {cent.shape[1]} is none of "
                                   f"192 / 512 / 960 (SH bands 1-3)")
        lo_v, hi_v = float(shn["mins"]), float(shn["maxs"])
        table = (lo_v + (hi_v - lo_v) * np.arange(256) / 255.0).astype(np.float32)
        palette = (cent.shape[1] // k) * cent.shape[0]
    if cent.shape[1] != 64 * k:
        raise SceneFormatError(f"{name}: {shn['files'][0]} is {cent.shape[1]} texels wide; "
                               f"{64 * k} expected for {k} coefficients")
    labels_t = _image(files, shn, 1, decode, n, name)
    labels = labels_t[:, 0].astype(np.intp) | (labels_t[:, 1].astype(np.intp) << 8)
    entries = cent.reshape(cent.shape[0], 64, k, 4).reshape(-1, k, 4)[:, :, :3]  # [P, K, 3]
    palette = min(palette, entries.shape[0])
    values = table[entries[:palette]]  # [P, K, 3]
    bad = labels >= palette
    sh = values[np.where(bad, 0, labels)]
    sh[bad] = 0.0  # the reference leaves such Gaussians' SH at zero
    return np.ascontiguousarray(sh, dtype=np.float32)


# ---------------------------------------------------------------------------------------- write

def encode_sog(scene: GaussianScene, *, encode_webp: Callable[[np.ndarray], bytes] | None = None,
               iterations: int = 10, seed: int = 0,
               progress: Callable[[str], None] | None = None) -> tuple[dict[str, bytes], list[str]]:
    """Encode a scene as SOG version 2 files.

    Args:
        scene: Inria conventions.
        encode_webp: ``uint8 [H, W, 4] -> lossless WebP bytes`` (default: Pillow).
        iterations: k-means iterations for the SH palette.
        seed: the k-means seed (the output is deterministic for a seed).
        progress: called with a short stage name as the work goes on.

    Returns:
        ({file name: bytes} with ``meta.json`` and the images, warnings).
    """
    n = scene.num_gaussians
    if n == 0:
        raise SceneFormatError("cannot write an empty scene as .sog")
    enc = encode_webp or _pillow_encode
    say = progress or (lambda stage: None)
    warnings: list[str] = []
    if scene.extra:
        warnings.append(f".sog keeps no extra properties: dropped {', '.join(scene.extra)}")
    width = int(math.ceil(math.sqrt(n) / 4) * 4)
    height = int(math.ceil(n / width / 4) * 4)

    def texture(texels: np.ndarray, w: int = width, h: int = height) -> bytes:
        img = np.zeros((w * h, 4), np.uint8)
        img[:, 3] = 255
        img[: texels.shape[0], : texels.shape[1]] = texels
        return enc(img.reshape(h, w, 4))

    files: dict[str, bytes] = {}
    say("means")
    lt = np.sign(scene.means.astype(np.float64)) * np.log1p(np.abs(scene.means.astype(np.float64)))
    mins, maxs = lt.min(axis=0), lt.max(axis=0)
    span = np.where(maxs - mins == 0, 1.0, maxs - mins)
    q16 = np.clip(np.rint((lt - mins) / span * 65535.0), 0, 65535).astype(np.uint32)
    files["means_l.webp"] = texture((q16 & 0xFF).astype(np.uint8))
    files["means_u.webp"] = texture((q16 >> 8).astype(np.uint8))

    say("quats")
    files["quats.webp"] = texture(_pack_quats(scene.unit_quats()))

    say("scales")
    s_cb, s_idx = quantize_1d(scene.scales)
    files["scales.webp"] = texture(s_idx)

    say("colours")
    c_cb, c_idx = quantize_1d(scene.sh_dc)
    alpha = np.clip(np.rint(scene.activated_opacities().astype(np.float64) * 255.0), 0, 255)
    files["sh0.webp"] = texture(np.concatenate([c_idx, alpha.astype(np.uint8)[:, None]], axis=1))

    meta: dict = {
        "version": 2, "asset": {"generator": "click-gaussian engine"}, "count": n,
        "means": {"mins": mins.tolist(), "maxs": maxs.tolist(),
                  "files": ["means_l.webp", "means_u.webp"]},
        "scales": {"codebook": s_cb.tolist(), "files": ["scales.webp"]},
        "quats": {"files": ["quats.webp"]},
        "sh0": {"codebook": c_cb.tolist(), "files": ["sh0.webp"]},
    }
    k = scene.sh_rest.shape[1]
    if k:
        say("SH palette (k-means)")
        bands = scene.sh_degree
        palette_size = int(min(64, 2 ** math.floor(math.log2(n / 1024))) * 1024) if n >= 1024 else n
        palette_size = max(1, min(palette_size, n))
        # k-means on [N, 3K] in file order (channel-major f_rest), as the reference clusters
        data = np.ascontiguousarray(scene.sh_rest.transpose(0, 2, 1).reshape(n, 3 * k), np.float32)
        centroids, labels = kmeans(data, palette_size, iterations, seed)
        sh_cb, cent_idx = quantize_1d(centroids)
        p = centroids.shape[0]
        rows = int(math.ceil(p / 64))
        cent_tex = np.zeros((rows * 64, k, 4), np.uint8)
        cent_tex[:, :, 3] = 255
        cent_tex[:p, :, :3] = cent_idx.reshape(p, 3, k).transpose(0, 2, 1)
        files["shN_centroids.webp"] = enc(cent_tex.reshape(rows, 64 * k, 4))
        lab = np.zeros((n, 3), np.uint8)
        lab[:, 0] = labels & 0xFF
        lab[:, 1] = labels >> 8
        files["shN_labels.webp"] = texture(lab)
        meta["shN"] = {"count": p, "bands": bands, "codebook": sh_cb.tolist(),
                       "files": ["shN_centroids.webp", "shN_labels.webp"]}
    files["meta.json"] = json.dumps(meta, separators=(",", ":")).encode("utf-8")
    return files, warnings


def write_sog(scene: GaussianScene, path: str | os.PathLike, *, overwrite: bool = False,
              progress: Callable[[str], None] | None = None) -> list[str]:
    """Write a scene as SOG version 2 (each file atomically): a ``.sog`` zip, or for a target
    named ``meta.json`` that file with its images beside it (images first, ``meta.json``, which
    names them, last). Returns the warnings of :func:`encode_sog`."""
    p = os.fspath(path)
    refuse_existing(p, overwrite)
    files, warnings = encode_sog(scene, progress=progress)
    if os.path.basename(p).lower() != "meta.json":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:  # WebP is compressed already
            for name in ["meta.json"] + [n for n in files if n != "meta.json"]:
                z.writestr(name, files[name])
        write_bytes(p, buf.getvalue())
        return warnings
    folder = os.path.dirname(os.path.abspath(p))
    for name, data in files.items():
        if name != "meta.json":
            target = os.path.join(folder, name)
            refuse_existing(target, overwrite)
            write_bytes(target, data)
    write_bytes(p, files["meta.json"])
    return warnings


def _pack_quats(q: np.ndarray) -> np.ndarray:
    """[N, 4] unit wxyz -> [N, 4] uint8 texels (smallest three * sqrt2, tag 252 + largest)."""
    largest, abc = smallest_three(q)
    out = np.empty((q.shape[0], 4), np.uint8)
    out[:, :3] = np.clip(np.rint(255.0 * (abc * _SQRT2 * 0.5 + 0.5)), 0, 255)
    out[:, 3] = 252 + largest
    return out


def quantize_1d(values: np.ndarray, k: int = 256, iterations: int = 30
                ) -> tuple[np.ndarray, np.ndarray]:
    """A k-entry codebook for all values of ``values`` pooled, and each value's nearest entry.

    Values with at most k distinct numbers get exactly those. Otherwise a weighted 1-D k-means
    (Lloyd's algorithm) runs over histogram bins placed half evenly in value and half by rank,
    each bin weighted by the square root of its count, so sparse tails (the largest scales, the
    brightest colours) still earn entries instead of being pulled into the dense middle (the same
    idea as splat-transform's quantiser).

    Returns:
        (codebook float32 [k] ascending, indices uint8 shaped like ``values``).
    """
    flat = values.astype(np.float64).reshape(-1)
    uniq, counts = np.unique(flat, return_counts=True)
    if uniq.size <= k:
        c = np.concatenate([uniq, np.full(k - uniq.size, uniq[-1])]).astype(np.float32)
        idx = np.searchsorted(uniq, flat).astype(np.uint8)
        return c, idx.reshape(values.shape)
    lo, hi = uniq[0], uniq[-1]
    csum_n = np.concatenate([[0], np.cumsum(counts)])
    ranks = np.linspace(0, flat.size, 2049)[1:-1]
    edges = np.unique(np.concatenate([np.linspace(lo, hi, 2049)[1:-1],
                                      uniq[np.searchsorted(csum_n[1:], ranks)]]))
    which = np.searchsorted(edges, uniq, side="right")
    nb = edges.size + 1
    bin_n = np.bincount(which, weights=counts, minlength=nb)
    bin_s = np.bincount(which, weights=uniq * counts, minlength=nb)
    keep = bin_n > 0
    centre, weight = bin_s[keep] / bin_n[keep], np.sqrt(bin_n[keep])
    # start from the weighted quantiles
    cw = np.cumsum(weight)
    c = centre[np.minimum(np.searchsorted(cw, (np.arange(k) + 0.5) / k * cw[-1]), centre.size - 1)]
    c = np.unique(c)
    if c.size < k:  # fill with an even spread where quantiles coincided
        c = np.unique(np.concatenate([c, np.linspace(lo, hi, k - c.size + 2)[1:-1]]))[:k]
    for _ in range(iterations):
        c = np.sort(c)
        nearest = np.searchsorted(0.5 * (c[1:] + c[:-1]), centre)
        wsum = np.bincount(nearest, weights=weight, minlength=c.size)
        vsum = np.bincount(nearest, weights=weight * centre, minlength=c.size)
        new = np.where(wsum > 0, vsum / np.maximum(wsum, 1e-300), c)
        if np.allclose(new, c, rtol=0, atol=1e-12 * max(1.0, hi - lo)):
            break
        c = new
    # the ends are the extreme values themselves, so every value lies between two entries and
    # its error is at most half their gap (a fitted end entry can sit far inside a sparse tail)
    c = np.sort(c)
    c[0], c[-1] = lo, hi
    c = np.concatenate([c, np.full(k - c.size, c[-1])]).astype(np.float32)
    mid = 0.5 * (c[1:].astype(np.float64) + c[:-1])
    idx = np.searchsorted(mid, flat).astype(np.uint8)
    return c, idx.reshape(values.shape)


def _nearest(x: np.ndarray, c: np.ndarray, rows: int = 16384) -> np.ndarray:
    """Index of each row of x [M, D]'s nearest row of c [K, D] (squared Euclidean), in blocks."""
    c2 = np.einsum("kd,kd->k", c, c)
    out = np.empty(x.shape[0], np.intp)
    for r0 in range(0, x.shape[0], rows):
        block = x[r0:r0 + rows]
        out[r0:r0 + rows] = np.argmin(c2[None, :] - 2.0 * block @ c.T, axis=1)
    return out


def _lloyd(x: np.ndarray, k: int, iterations: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    k = min(k, x.shape[0])
    c = x[rng.choice(x.shape[0], k, replace=False)].copy()
    labels = np.zeros(x.shape[0], np.intp)
    for _ in range(iterations):
        labels = _nearest(x, c)
        sums = np.zeros_like(c, dtype=np.float64)
        np.add.at(sums, labels, x)
        counts = np.bincount(labels, minlength=k)
        filled = counts > 0
        c[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
    labels = _nearest(x, c)
    return c, labels


def kmeans(x: np.ndarray, k: int, iterations: int = 10, seed: int = 0
           ) -> tuple[np.ndarray, np.ndarray]:
    """Two-level k-means of x [N, D] float32 into about k centroids: 256 coarse clusters fitted
    on a sample, then each split by its own k-means into a share of k proportional to its size
    (a flat k-means with k = 65,536 would cost N * k * D per iteration).

    Returns:
        (centroids float32 [P, D] with P <= k, labels int [N] in 0..P-1).
    """
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    k = max(1, min(k, n))
    k1 = min(256, k)
    sample = x[rng.choice(n, min(n, 65536), replace=False)]
    coarse, _ = _lloyd(sample, k1, iterations, rng)
    top = _nearest(x, coarse)
    counts = np.bincount(top, minlength=coarse.shape[0])
    share = np.maximum(1, np.floor(counts * ((k - k1) / n) if k > k1 else counts * (k / n))).astype(np.int64)
    share[counts == 0] = 0
    centroids, labels = [], np.empty(n, np.int64)
    base = 0
    order = np.argsort(top, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    for j in range(coarse.shape[0]):
        members = order[bounds[j]:bounds[j + 1]]
        if members.size == 0:
            continue
        kj = int(min(share[j], members.size))
        if kj <= 1:
            centroids.append(x[members].mean(axis=0, keepdims=True))
            labels[members] = base
            base += 1
            continue
        cj, lj = _lloyd(x[members], kj, max(1, iterations // 2), rng)
        centroids.append(cj)
        labels[members] = base + lj
        base += cj.shape[0]
    return np.concatenate(centroids).astype(np.float32), labels
