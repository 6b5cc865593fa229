"""Procedural 3DGS scenes with known ground truth: a little tabletop of objects made of parts.

The scenes serve two purposes: the quality benchmark (every Gaussian carries its ground-truth
object and part id, so segmentation can be scored exactly) and the product's demo default
(a recognisable scene on a fresh machine with nothing downloaded).

Conventions
-----------
- World frame: **y-down**, like COLMAP / Inria 3DGS captures. The table top is the plane y = 0
  and objects stand on it, extending towards *negative* y ("up" is -y). Internally the scene is
  built z-up and rotated once by :data:`ZUP_TO_WORLD`.
- Gaussians follow the Inria conventions of :class:`engine.core.scene.GaussianScene`: log scales,
  logit opacities, ``sh_dc`` with SH degree 0 (view-independent colour; simple Lambert shading
  from a fixed light is baked into the colour so shapes read well).
- Gaussians lie on surfaces (never in volumes): flat discs whose tangent standard deviation is
  ~0.8 of the local sample spacing (1.1 on the sparser table top) and whose normal standard
  deviation is 0.2 of that, which is
  what a trained 3DGS scene of an opaque object looks like. Surface points hidden inside another
  primitive (a handle entering a mug, a bottom face on the table) are removed, as 3DGS would
  never have reconstructed them.
- Ids: ``object_id`` int32 [N], 0 = the table (ground), 1..K = objects; ``part_id`` int32 [N],
  globally unique, 0 = the table (its own single part), 1..P = object parts.
- Cameras: :meth:`engine.core.cameras.Camera.look_at` placed on fixed-radius orbits (:func:`orbit`);
  OpenCV convention (x right, y down, z forward), the image's "up" is the world's -y.

numpy only (torch-free at import time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...core.cameras import Camera
from ...core.scene import SH_C0, GaussianScene

# z-up construction frame -> y-down world: (x, y, z) -> (x, -z, y). A proper rotation (det +1).
ZUP_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
WORLD_UP = np.array([0.0, -1.0, 0.0])  # "up" in the y-down world (image up for the cameras)

# ---------------------------------------------------------------------------------------------
# Primitives: signed distance functions and surface samplers in a local frame
# ---------------------------------------------------------------------------------------------


@dataclass
class Primitive:
    """One solid shape of a part, placed by a rigid transform (z-up construction frame).

    ``kind``: "box" (params = half extents [3]), "ellipsoid" (radii [3]), "cylinder" (radius,
    half height; axis local z), "cone" (bottom radius, top radius, half height; axis local z),
    "torus" (ring radius, tube radius; ring in the local xy plane).
    ``rotation`` [3, 3] local-to-frame, ``center`` [3]; ``part`` is the global part id.
    """

    kind: str
    params: tuple[float, ...]
    center: np.ndarray
    rotation: np.ndarray
    part: int
    obj: int

    def to_local(self, p: np.ndarray) -> np.ndarray:
        """[M, 3] frame points -> [M, 3] local points."""
        return (p - self.center) @ self.rotation

    def to_frame(self, q: np.ndarray) -> np.ndarray:
        return q @ self.rotation.T + self.center

    def sdf(self, p: np.ndarray) -> np.ndarray:
        """Signed distance [M] (negative inside) of frame points [M, 3]; exact for box,
        cylinder, cone and torus, a bound-like approximation for ellipsoids."""
        return _sdf_local(self.kind, self.params, self.to_local(p))

    def area(self) -> float:
        return _area(self.kind, self.params)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """[n, 3] frame points uniformly (by area) on the surface."""
        return self.to_frame(_sample_local(self.kind, self.params, n, rng))


def _sdf_local(kind: str, prm: tuple[float, ...], q: np.ndarray) -> np.ndarray:
    if kind == "box":
        d = np.abs(q) - np.asarray(prm)
        return np.linalg.norm(np.maximum(d, 0.0), axis=1) + np.minimum(d.max(axis=1), 0.0)
    if kind == "ellipsoid":
        r = np.asarray(prm)
        k0 = np.linalg.norm(q / r, axis=1)
        k1 = np.linalg.norm(q / (r * r), axis=1)
        return np.where(k1 > 1e-12, k0 * (k0 - 1.0) / np.maximum(k1, 1e-12), -min(prm))
    if kind == "cylinder":
        r, hh = prm
        dx = np.linalg.norm(q[:, :2], axis=1) - r
        dy = np.abs(q[:, 2]) - hh
        outside = np.hypot(np.maximum(dx, 0.0), np.maximum(dy, 0.0))
        return np.minimum(np.maximum(dx, dy), 0.0) + outside
    if kind == "cone":  # capped cone (frustum), I. Quilez's exact formula
        r1, r2, h = prm
        qx = np.linalg.norm(q[:, :2], axis=1)
        qy = q[:, 2]
        k2x, k2y = r2 - r1, 2.0 * h
        cax = qx - np.minimum(qx, np.where(qy < 0.0, r1, r2))
        cay = np.abs(qy) - h
        t = np.clip(((r2 - qx) * k2x + (h - qy) * k2y) / (k2x * k2x + k2y * k2y), 0.0, 1.0)
        cbx = qx - r2 + k2x * t
        cby = qy - h + k2y * t
        s = np.where((cbx < 0.0) & (cay < 0.0), -1.0, 1.0)
        return s * np.sqrt(np.minimum(cax * cax + cay * cay, cbx * cbx + cby * cby))
    if kind == "torus":
        big, small = prm
        return np.hypot(np.linalg.norm(q[:, :2], axis=1) - big, q[:, 2]) - small
    raise ValueError(f"unknown primitive kind {kind!r}")


def _area(kind: str, prm: tuple[float, ...]) -> float:
    if kind == "box":
        a, b, c = prm
        return 8.0 * (a * b + b * c + a * c)
    if kind == "ellipsoid":  # Knud Thomsen's approximation (<1.1% error)
        a, b, c = prm
        p = 1.6075
        return 4.0 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3.0) ** (1.0 / p)
    if kind == "cylinder":
        r, hh = prm
        return 2.0 * math.pi * r * 2.0 * hh + 2.0 * math.pi * r * r
    if kind == "cone":
        r1, r2, h = prm
        slant = math.hypot(r1 - r2, 2.0 * h)
        return math.pi * (r1 + r2) * slant + math.pi * (r1 * r1 + r2 * r2)
    if kind == "torus":
        big, small = prm
        return 4.0 * math.pi * math.pi * big * small
    raise ValueError(f"unknown primitive kind {kind!r}")


def _disc(n: int, r: float, rng: np.random.Generator) -> np.ndarray:
    rad = r * np.sqrt(rng.random(n))
    ang = rng.random(n) * 2.0 * math.pi
    return np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)


def _sample_local(kind: str, prm: tuple[float, ...], n: int, rng: np.random.Generator) -> np.ndarray:
    if n <= 0:
        return np.zeros((0, 3))
    if kind == "box":
        h = np.asarray(prm)
        face_area = np.array([h[1] * h[2], h[0] * h[2], h[0] * h[1]])
        axis = rng.choice(3, size=n, p=face_area / face_area.sum())
        pts = (rng.random((n, 3)) * 2.0 - 1.0) * h
        sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
        pts[np.arange(n), axis] = sign * h[axis]
        return pts
    if kind == "ellipsoid":
        r = np.asarray(prm)
        out = []
        need = n
        gmax = np.linalg.norm(1.0 / r) * r.prod()
        while need > 0:
            u = rng.normal(size=(2 * need + 16, 3))
            u /= np.linalg.norm(u, axis=1, keepdims=True)
            g = r.prod() * np.linalg.norm(u / r, axis=1)  # area element of the sphere->ellipsoid map
            keep = u[rng.random(len(u)) < g / gmax] * r
            out.append(keep[:need])
            need -= len(out[-1])
        return np.concatenate(out)
    if kind == "cylinder":
        r, hh = prm
        side, cap = 2.0 * math.pi * r * 2.0 * hh, math.pi * r * r
        which = rng.choice(3, size=n, p=np.array([side, cap, cap]) / (side + 2 * cap))
        pts = np.zeros((n, 3))
        s = which == 0
        ang = rng.random(s.sum()) * 2.0 * math.pi
        pts[s] = np.stack([r * np.cos(ang), r * np.sin(ang), (rng.random(s.sum()) * 2 - 1) * hh], axis=1)
        for w, z in ((1, hh), (2, -hh)):
            m = which == w
            pts[m, :2] = _disc(m.sum(), r, rng)
            pts[m, 2] = z
        return pts
    if kind == "cone":
        r1, r2, h = prm
        side = math.pi * (r1 + r2) * math.hypot(r1 - r2, 2.0 * h)
        c1, c2 = math.pi * r1 * r1, math.pi * r2 * r2
        which = rng.choice(3, size=n, p=np.array([side, c1, c2]) / (side + c1 + c2))
        pts = np.zeros((n, 3))
        s = which == 0
        # radius linear in t in [0, 1]; area density proportional to the radius
        u = rng.random(s.sum())
        if abs(r2 - r1) < 1e-9:
            t = u
        else:
            t = (np.sqrt(r1 * r1 + u * (r2 * r2 - r1 * r1)) - r1) / (r2 - r1)
        rad = r1 + (r2 - r1) * t
        ang = rng.random(s.sum()) * 2.0 * math.pi
        pts[s] = np.stack([rad * np.cos(ang), rad * np.sin(ang), -h + 2.0 * h * t], axis=1)
        for w, rr, z in ((1, r1, -h), (2, r2, h)):
            m = which == w
            pts[m, :2] = _disc(m.sum(), rr, rng)
            pts[m, 2] = z
        return pts
    if kind == "torus":
        big, small = prm
        out = []
        need = n
        while need > 0:
            th = rng.random(2 * need + 16) * 2.0 * math.pi
            ph = rng.random(2 * need + 16) * 2.0 * math.pi
            keep = rng.random(len(th)) < (big + small * np.cos(ph)) / (big + small)
            th, ph = th[keep][:need], ph[keep][:need]
            ring = big + small * np.cos(ph)
            out.append(np.stack([ring * np.cos(th), ring * np.sin(th), small * np.sin(ph)], axis=1))
            need -= len(th)
        return np.concatenate(out)
    raise ValueError(f"unknown primitive kind {kind!r}")


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


# ---------------------------------------------------------------------------------------------
# Object templates (z-up, standing on z = 0, centred on the z axis)
# ---------------------------------------------------------------------------------------------

# Each template returns (parts, footprint radius); a part is (name, [(kind, params, center, R)]).
_Shape = tuple[str, tuple[float, ...], tuple[float, float, float], np.ndarray]
_I = np.eye(3)


def _mug(rng: np.random.Generator) -> tuple[list[tuple[str, list[_Shape]]], float]:
    r, h = rng.uniform(0.14, 0.18), rng.uniform(0.26, 0.34)
    body = [("cylinder", (r, h / 2), (0.0, 0.0, h / 2), _I)]
    ring = h * 0.28
    handle = [("torus", (ring, 0.028), (r + ring * 0.55, 0.0, h * 0.52), _rot_x(math.pi / 2))]
    return [("body", body), ("handle", handle)], r + ring * 1.6


def _lamp(rng: np.random.Generator) -> tuple[list[tuple[str, list[_Shape]]], float]:
    stem_h = rng.uniform(0.42, 0.55)
    base = [("cylinder", (0.16, 0.025), (0.0, 0.0, 0.025), _I)]
    stem = [("cylinder", (0.022, stem_h / 2), (0.0, 0.0, 0.05 + stem_h / 2), _I)]
    sh = rng.uniform(0.11, 0.14)
    shade = [("cone", (0.24, 0.12, sh), (0.0, 0.0, 0.05 + stem_h - 0.04 + sh), _I)]
    return [("base", base), ("stem", stem), ("shade", shade)], 0.25


def _chair(rng: np.random.Generator) -> tuple[list[tuple[str, list[_Shape]]], float]:
    w, seat_z = rng.uniform(0.24, 0.3), rng.uniform(0.32, 0.4)
    seat = [("box", (w, w, 0.03), (0.0, 0.0, seat_z), _I)]
    leg = 0.028
    legs = [
        ("box", (leg, leg, (seat_z - 0.03) / 2), (sx * (w - leg), sy * (w - leg), (seat_z - 0.03) / 2), _I)
        for sx in (-1, 1)
        for sy in (-1, 1)
    ]
    back_h = rng.uniform(0.22, 0.3)
    back = [("box", (0.025, w, back_h / 2), (-w + 0.025, 0.0, seat_z + 0.03 + back_h / 2), _I)]
    return [("seat", seat), ("legs", legs), ("backrest", back)], w * 1.42


def _teapot(rng: np.random.Generator) -> tuple[list[tuple[str, list[_Shape]]], float]:
    rx, rz = rng.uniform(0.19, 0.23), rng.uniform(0.14, 0.17)
    body = [("ellipsoid", (rx, rx, rz), (0.0, 0.0, rz), _I)]
    lid = [
        ("ellipsoid", (rx * 0.45, rx * 0.45, 0.05), (0.0, 0.0, 2 * rz - 0.01), _I),
        ("ellipsoid", (0.035, 0.035, 0.035), (0.0, 0.0, 2 * rz + 0.05), _I),
    ]
    spout = [("cone", (0.045, 0.022, 0.13), (rx + 0.06, 0.0, rz * 1.15), _rot_y(math.radians(50)))]
    handle = [("torus", (0.09, 0.022), (-rx - 0.02, 0.0, rz * 1.05), _rot_x(math.pi / 2))]
    return [("body", body), ("lid", lid), ("spout", spout), ("handle", handle)], rx + 0.17


def _books(rng: np.random.Generator) -> tuple[list[tuple[str, list[_Shape]]], float]:
    parts: list[tuple[str, list[_Shape]]] = []
    z = 0.0
    n = int(rng.integers(2, 4))
    for i in range(n):
        t = rng.uniform(0.035, 0.06)
        a, b = rng.uniform(0.17, 0.22), rng.uniform(0.12, 0.16)
        parts.append((f"book {i + 1}", [("box", (a, b, t), (0.0, 0.0, z + t), _rot_z(rng.uniform(-0.3, 0.3)))]))
        z += 2 * t
    return parts, 0.27


def _fruit(rng: np.random.Generator) -> tuple[list[tuple[str, list[_Shape]]], float]:
    r = rng.uniform(0.12, 0.15)
    body = [("ellipsoid", (r, r, r * 0.9), (0.0, 0.0, r * 0.9), _I)]
    stem = [("cylinder", (0.012, 0.045), (0.0, 0.0, 1.8 * r + 0.03), _rot_y(0.25))]
    leaf = [("ellipsoid", (0.07, 0.03, 0.008), (0.06, 0.0, 1.8 * r + 0.035), _rot_y(-0.4))]
    return [("fruit", body), ("stem", stem), ("leaf", leaf)], r * 1.1


def _bottle(rng: np.random.Generator) -> tuple[list[tuple[str, list[_Shape]]], float]:
    r, h = rng.uniform(0.08, 0.1), rng.uniform(0.32, 0.4)
    body = [("cylinder", (r, h / 2), (0.0, 0.0, h / 2), _I)]
    neck = [("cone", (r, 0.035, 0.07), (0.0, 0.0, h + 0.07), _I)]
    cap = [("cylinder", (0.04, 0.03), (0.0, 0.0, h + 0.17), _I)]
    return [("body", body), ("neck", neck), ("cap", cap)], r * 1.1


def _snowman(rng: np.random.Generator) -> tuple[list[tuple[str, list[_Shape]]], float]:
    r1, r2 = rng.uniform(0.14, 0.17), rng.uniform(0.09, 0.11)
    bottom = [("ellipsoid", (r1, r1, r1), (0.0, 0.0, r1 * 0.95), _I)]
    head = [("ellipsoid", (r2, r2, r2), (0.0, 0.0, 1.9 * r1 + r2 * 0.8), _I)]
    hat_z = 1.9 * r1 + 1.7 * r2
    hat = [
        ("cylinder", (r2 * 1.3, 0.012), (0.0, 0.0, hat_z), _I),
        ("cylinder", (r2 * 0.75, 0.06), (0.0, 0.0, hat_z + 0.06), _I),
    ]
    return [("body", bottom), ("head", head), ("hat", hat)], r1 * 1.05


TEMPLATES = {
    "mug": _mug,
    "lamp": _lamp,
    "chair": _chair,
    "teapot": _teapot,
    "books": _books,
    "fruit": _fruit,
    "bottle": _bottle,
    "snowman": _snowman,
}

# Albedo palette (linear-ish RGB in [0, 1]); several pairs are deliberately alike.
PALETTE = np.array(
    [
        [0.80, 0.15, 0.12],  # red
        [0.72, 0.20, 0.18],  # brick red (alike red)
        [0.15, 0.35, 0.75],  # blue
        [0.20, 0.42, 0.70],  # steel blue (alike blue)
        [0.18, 0.60, 0.25],  # green
        [0.92, 0.78, 0.20],  # yellow
        [0.93, 0.90, 0.85],  # off-white
        [0.20, 0.20, 0.22],  # charcoal
        [0.55, 0.32, 0.65],  # purple
        [0.95, 0.50, 0.15],  # orange
        [0.35, 0.75, 0.75],  # teal
        [0.60, 0.42, 0.25],  # tan (close to the table)
    ]
)
TABLE_ALBEDO = np.array([0.62, 0.45, 0.30])  # wood
LIGHT_DIR = np.array([0.45, -0.35, 0.82]) / np.linalg.norm([0.45, -0.35, 0.82])  # z-up frame

# ---------------------------------------------------------------------------------------------
# The scene
# ---------------------------------------------------------------------------------------------


@dataclass
class SynthScene:
    """A generated scene and its ground truth.

    ``scene``: the Gaussians (y-down world, Inria conventions). ``object_id`` int32 [N]
    (0 = table), ``part_id`` int32 [N] (globally unique, 0 = table), ``part_object`` int32 [P+1]
    (object of each part id), ``object_names`` [K+1] and ``part_names`` [P+1] (``"mug 1/handle"``),
    ``cameras``: training views on orbits; ``test_cameras``: held-out views at other azimuths and
    elevations for evaluation. ``primitives``: the solid shapes (z-up construction frame) the
    Gaussians were sampled from, for analytic checks (:func:`raycast_ids`). ``params``: the
    family parameters used.
    """

    scene: GaussianScene
    object_id: np.ndarray
    part_id: np.ndarray
    part_object: np.ndarray
    object_names: list[str]
    part_names: list[str]
    cameras: list[Camera]
    test_cameras: list[Camera]
    primitives: list[Primitive] = field(repr=False)
    params: dict = field(default_factory=dict)

    @property
    def num_objects(self) -> int:
        """Number of objects excluding the table."""
        return len(self.object_names) - 1

    @property
    def num_parts(self) -> int:
        """Number of parts excluding the table."""
        return len(self.part_names) - 1


def _quats_from_normals(normals: np.ndarray) -> np.ndarray:
    """[M, 3] unit normals -> [M, 4] wxyz quaternions of rotations whose local z is the normal."""
    n = normals
    helper = np.where(np.abs(n[:, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
    t1 = np.cross(helper, n)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(n, t1)
    rot = np.stack([t1, t2, n], axis=2)  # columns
    return rotmat_to_quat(rot)


def rotmat_to_quat(rot: np.ndarray) -> np.ndarray:
    """[M, 3, 3] rotation matrices -> [M, 4] unit quaternions (w, x, y, z), w >= 0."""
    m = rot
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cands = np.stack(
        [
            np.stack([1 + tr, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], 1),
            np.stack([m[:, 2, 1] - m[:, 1, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0]], 1),
            np.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0], 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], m[:, 1, 2] + m[:, 2, 1]], 1),
            np.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], 1),
        ],
        axis=1,
    )  # [M, 4 candidates, 4]; the one with the largest diagonal term is well conditioned
    diag = np.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], axis=1)
    best = cands[np.arange(len(m)), diag.argmax(axis=1)]
    q = best / np.linalg.norm(best, axis=1, keepdims=True)
    return np.where(q[:, :1] < 0, -q, q)


def _sdf_normals(prim: Primitive, p: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """[M, 3] outward unit normals from the primitive's SDF gradient (central differences)."""
    g = np.zeros_like(p)
    for k in range(3):
        d = np.zeros(3)
        d[k] = eps
        g[:, k] = prim.sdf(p + d) - prim.sdf(p - d)
    norm = np.linalg.norm(g, axis=1, keepdims=True)
    return g / np.maximum(norm, 1e-12)


def orbit(
    n_views: int,
    width: int,
    height: int,
    *,
    target: np.ndarray,
    radius: float,
    elevations_deg: tuple[float, float] = (22.0, 55.0),
    azimuth_offset_deg: float = 0.0,
    fov_deg: float = 50.0,
    name: str = "view",
) -> list[Camera]:
    """``n_views`` cameras on a sphere cap around ``target`` (y-down world), azimuths evenly
    spaced, elevations above the table plane cycling through ``elevations_deg`` (in 3 rings).
    Horizontal field of view ``fov_deg``; square pixels, principal point at the image centre.

    The cameras themselves are :meth:`engine.core.cameras.Camera.look_at` (world up = -y). This
    placement is kept instead of :func:`engine.core.cameras.orbit_cameras` because the benchmark needs
    a fixed radius and an azimuth offset (held-out test views between the training views), which
    ``orbit_cameras`` (distance fitted to the bounds, rings by circumference) does not offer."""
    fx = 0.5 * width / math.tan(math.radians(fov_deg) / 2.0)
    K = np.array([[fx, 0.0, width / 2.0], [0.0, fx, height / 2.0], [0.0, 0.0, 1.0]])
    lo, hi = elevations_deg
    rings = np.linspace(lo, hi, 3) if n_views >= 3 else np.array([(lo + hi) / 2])
    cams = []
    for i in range(n_views):
        az = math.radians(azimuth_offset_deg + 360.0 * i / n_views)
        el = math.radians(rings[i % len(rings)])
        # y-down world: "up" is -y; the orbit circles in the x-z plane
        off = np.array([math.cos(el) * math.cos(az), -math.sin(el), math.cos(el) * math.sin(az)]) * radius
        cams.append(Camera.look_at(target + off, target, WORLD_UP, K.copy(), width, height, f"{name}_{i:03d}"))
    return cams


MIN_GAUSSIANS = 2000  # fewer cannot give every part of every object a surface
MAX_OBJECTS = 8


def scene_size_problem(n_gaussians: int, n_objects: int) -> str:
    """Why :func:`make_scene` cannot build a scene of this size ('' when it can): the one check
    the benchmarks' command lines run before any work, and make_scene itself."""
    if not 1 <= n_objects <= MAX_OBJECTS:
        return f"n_objects must be 1-{MAX_OBJECTS}, got {n_objects}"
    if n_gaussians < MIN_GAUSSIANS:
        return f"n_gaussians must be at least {MIN_GAUSSIANS}, got {n_gaussians}"
    return ""


def make_scene(
    seed: int = 0,
    *,
    n_gaussians: int = 40_000,
    n_objects: int = 6,
    n_views: int = 48,
    n_test_views: int = 12,
    width: int = 256,
    height: int = 256,
    touch_prob: float = 0.5,
    alike_prob: float = 0.35,
    table_size: tuple[float, float] = (2.4, 1.8),
    table_share: float = 0.22,
    templates: tuple[str, ...] | None = None,
) -> SynthScene:
    """Generate a seeded tabletop scene.

    ``n_gaussians``: approximate total count (the exact count is a little lower: hidden surface
    points are removed). ``n_objects``: objects on the table (1-8), each of 2-4 parts of distinct
    colours, chosen from :data:`TEMPLATES` (distinct templates while there are enough).
    ``touch_prob``: chance that an object is placed touching an earlier one. ``alike_prob``:
    chance that an object's main part takes a colour alike to another object's.
    ``table_share``: fraction of the Gaussians on the table top. Cameras: ``n_views`` training
    and ``n_test_views`` held-out orbit views of ``width`` x ``height`` pixels.
    """
    problem = scene_size_problem(n_gaussians, n_objects)
    if problem:
        raise ValueError(problem)
    rng = np.random.default_rng(seed)
    names = list(templates or TEMPLATES)
    for t in names:
        if t not in TEMPLATES:
            raise ValueError(f"unknown object template {t!r}; known: {', '.join(TEMPLATES)}")
    order = rng.permutation(len(names))
    chosen = [names[order[i % len(names)]] for i in range(n_objects)]

    tx, ty = table_size[0] / 2, table_size[1] / 2
    table = Primitive("box", (tx, ty, 0.004), np.array([0.0, 0.0, -0.004]), _I, part=0, obj=0)
    prims: list[Primitive] = [table]
    colors: dict[int, np.ndarray] = {0: TABLE_ALBEDO}
    object_names, part_names, part_object = ["table"], ["table"], [0]
    placed: list[tuple[np.ndarray, float]] = []
    used_colors: list[int] = []
    for oi, tname in enumerate(chosen, start=1):
        parts, foot = TEMPLATES[tname](rng)
        pos = _place(rng, placed, foot, tx, ty, touch_prob)
        placed.append((pos, foot))
        rot = _rot_z(rng.uniform(0, 2 * math.pi))
        center = np.array([pos[0], pos[1], 0.0])
        count = sum(1 for n in object_names if n.startswith(tname + " ")) + 1
        oname = f"{tname} {count}"
        object_names.append(oname)
        pal = _part_colors(rng, len(parts), used_colors, alike_prob)
        used_colors.extend(pal)
        for (pname, shapes), ci in zip(parts, pal):
            pid = len(part_names)
            part_names.append(f"{oname}/{pname}")
            part_object.append(oi)
            colors[pid] = PALETTE[ci]
            for kind, prm, c, R in shapes:
                prims.append(Primitive(kind, prm, rot @ np.asarray(c, float) + center, rot @ R, pid, oi))

    # --- sample surfaces: the table gets table_share of the budget, objects the rest by area
    obj_prims = prims[1:]
    obj_area = np.array([p.area() for p in obj_prims])
    table_top_area = table_size[0] * table_size[1]
    counts = [int(n_gaussians * table_share)]
    counts += list(np.maximum(40, np.round(n_gaussians * (1 - table_share) * obj_area / obj_area.sum())).astype(int))
    spacing = [math.sqrt(table_top_area / counts[0])]
    spacing += [math.sqrt(a / c) for a, c in zip(obj_area, counts[1:])]
    pts_all, nrm_all, sig_all, part_all, obj_all = [], [], [], [], []
    for pi, (prim, cnt, sp) in enumerate(zip(prims, counts, spacing)):
        if pi == 0:  # the table: only its top face is a visible surface
            pts = np.concatenate([(rng.random((cnt, 2)) * 2 - 1) * [tx, ty], np.zeros((cnt, 1))], axis=1)
            nrm = np.tile([0.0, 0.0, 1.0], (cnt, 1))
        else:
            pts = prim.sample(cnt, rng)
            nrm = _sdf_normals(prim, pts)
        hidden = np.zeros(len(pts), dtype=bool)
        for pj, other in enumerate(prims):
            if pj != pi:
                hidden |= other.sdf(pts) < 0.35 * sp
        keep = ~hidden
        pts_all.append(pts[keep])
        nrm_all.append(nrm[keep])
        sig_all.append(np.full(keep.sum(), (1.1 if pi == 0 else 0.8) * sp))
        part_all.append(np.full(keep.sum(), prim.part, np.int32))
        obj_all.append(np.full(keep.sum(), prim.obj, np.int32))
    pts = np.concatenate(pts_all)
    nrm = np.concatenate(nrm_all)
    sig = np.concatenate(sig_all)
    part_id = np.concatenate(part_all)
    object_id = np.concatenate(obj_all)
    n = len(pts)

    # --- appearance: albedo with a little texture, Lambert shading from a fixed light baked in
    albedo = np.stack([colors[int(p)] for p in range(len(part_names))])[part_id]
    albedo = albedo * (1.0 + rng.normal(0.0, 0.035, (n, 1))) + rng.normal(0.0, 0.012, (n, 3))
    on_table = part_id == 0
    grain = 0.06 * np.sin(pts[on_table, 0] * 23.0 + 2.5 * np.sin(pts[on_table, 1] * 5.0))
    albedo[on_table] *= 1.0 + grain[:, None]
    shade = 0.5 + 0.5 * np.clip(nrm @ LIGHT_DIR, 0.0, 1.0)
    rgb = np.clip(albedo * shade[:, None], 0.0, 1.0)

    scales = np.stack([sig, sig, 0.2 * sig], axis=1) * np.exp(rng.normal(0.0, 0.08, (n, 3)))
    opacity = rng.uniform(0.86, 0.99, n)
    quats_zup = _quats_from_normals(nrm)
    world_quat = rotmat_to_quat(ZUP_TO_WORLD[None])[0]
    quats = _quat_mul(np.broadcast_to(world_quat, quats_zup.shape), quats_zup)
    scene = GaussianScene(
        means=(pts @ ZUP_TO_WORLD.T).astype(np.float32),
        scales=np.log(scales).astype(np.float32),
        quats=quats.astype(np.float32),
        opacities=np.log(opacity / (1.0 - opacity)).astype(np.float32),
        sh_dc=((rgb - 0.5) / SH_C0).astype(np.float32),
        sh_rest=np.zeros((n, 0, 3), np.float32),
    )
    # --- cameras: training orbit and held-out test orbit, aimed slightly above the table
    target = ZUP_TO_WORLD @ np.array([0.0, 0.0, 0.18])
    radius = 0.95 * math.hypot(tx, ty) / math.tan(math.radians(25.0))
    cams = orbit(n_views, width, height, target=target, radius=radius, name="train")
    test = orbit(
        n_test_views, width, height, target=target, radius=radius * 0.95,
        elevations_deg=(28.0, 48.0), azimuth_offset_deg=180.0 / max(n_views, 1) + 7.0, name="test",
    )
    params = dict(
        seed=seed, n_gaussians=n_gaussians, n_objects=n_objects, n_views=n_views, n_test_views=n_test_views,
        width=width, height=height, touch_prob=touch_prob, alike_prob=alike_prob,
        table_size=tuple(table_size), table_share=table_share, templates=tuple(chosen),
    )
    return SynthScene(
        scene=scene, object_id=object_id, part_id=part_id, part_object=np.asarray(part_object, np.int32),
        object_names=object_names, part_names=part_names, cameras=cams, test_cameras=test,
        primitives=prims, params=params,
    )


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of [M, 4] wxyz quaternions (rotation b first, then a)."""
    w1, x1, y1, z1 = a.T
    w2, x2, y2, z2 = b.T
    return np.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        axis=1,
    )


def _place(
    rng: np.random.Generator, placed: list[tuple[np.ndarray, float]], foot: float, tx: float, ty: float, touch_prob: float
) -> np.ndarray:
    """A footprint centre on the table for a new object of footprint radius ``foot``: touching
    a random earlier object with probability ``touch_prob``, else free-standing."""
    margin = 0.05
    for attempt in range(400):
        if placed and rng.random() < touch_prob and attempt < 200:
            c, r = placed[int(rng.integers(len(placed)))]
            ang = rng.uniform(0, 2 * math.pi)
            pos = c + (r + foot) * 0.92 * np.array([math.cos(ang), math.sin(ang)])
            others = [(c2, r2) for c2, r2 in placed if not np.allclose(c2, c)]
        else:
            pos = np.array([rng.uniform(-tx + foot, tx - foot), rng.uniform(-ty + foot, ty - foot)])
            others = placed
        if abs(pos[0]) > tx - foot - margin or abs(pos[1]) > ty - foot - margin:
            continue
        if all(np.linalg.norm(pos - c2) > r2 + foot + 0.04 for c2, r2 in others):
            return pos
    # crowded: accept the free spot with the largest clearance among a few candidates
    cands = np.stack([rng.uniform(-tx + foot, tx - foot, 64), rng.uniform(-ty + foot, ty - foot, 64)], 1)
    clear = np.array([min((np.linalg.norm(p - c2) - r2 for c2, r2 in placed), default=9.0) for p in cands])
    return cands[int(clear.argmax())]


def _part_colors(rng: np.random.Generator, n_parts: int, used: list[int], alike_prob: float) -> list[int]:
    """Palette indices for an object's parts: distinct within the object; the first part takes
    an already used colour (or its alike twin) with probability ``alike_prob``."""
    twins = {0: 1, 1: 0, 2: 3, 3: 2}
    out: list[int] = []
    if used and rng.random() < alike_prob:
        c = int(rng.choice(used))
        out.append(twins.get(c, c))
    while len(out) < n_parts:
        c = int(rng.integers(len(PALETTE)))
        if c not in out and twins.get(c, -1) not in out:
            out.append(c)
    return out


def raycast_ids(synth: SynthScene, camera: Camera, level: str = "object", max_steps: int = 160) -> np.ndarray:
    """Analytic id map int32 [H, W] by sphere tracing the solid primitives (independent of the
    Gaussians; used to check their ids). ``level``: "object" or "part"; -1 where the ray misses."""
    h, w = camera.height, camera.width
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    d_cam = np.stack([(u - camera.K[0, 2]) / camera.K[0, 0], (v - camera.K[1, 2]) / camera.K[1, 1], np.ones_like(u)], -1)
    c2w = camera.camtoworld
    dirs = d_cam.reshape(-1, 3) @ c2w[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    to_zup = ZUP_TO_WORLD.T
    origin = to_zup @ c2w[:3, 3]
    dirs = dirs @ to_zup.T
    t = np.zeros(len(dirs))
    alive = np.ones(len(dirs), dtype=bool)
    hit = np.full(len(dirs), -1, dtype=np.int64)
    for _ in range(max_steps):
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            break
        p = origin + dirs[idx] * t[idx, None]
        d = np.stack([pr.sdf(p) for pr in synth.primitives], axis=1)
        best = d.argmin(axis=1)
        dmin = d[np.arange(len(idx)), best]
        done = dmin < 1e-4
        hit[idx[done]] = best[done]
        t[idx] += 0.9 * dmin
        alive[idx[done]] = False
        alive[idx[t[idx] > 50.0]] = False
    ids = np.full(len(dirs), -1, dtype=np.int32)
    ok = hit >= 0
    attr = np.array([p.obj if level == "object" else p.part for p in synth.primitives])
    ids[ok] = attr[hit[ok]]
    return ids.reshape(h, w)


@dataclass
class GroundTruthView:
    """One view rendered with ground truth.

    ``image`` uint8 [H, W, 3] (RGB render, black background); ``object_map`` / ``part_map``
    int32 [H, W]: the id with the largest blending weight at the pixel (= argmax of the rendered
    one-hot ids over the top-K contributors), -1 where the accumulated opacity is below 0.5;
    ``alpha`` float32 [H, W]; ``contributors``: the view's packed top-K contributors
    (:class:`engine.render.renderer.PackedContributors`) when kept, to render features later.
    """

    camera: Camera
    image: np.ndarray
    object_map: np.ndarray
    part_map: np.ndarray
    alpha: np.ndarray
    contributors: object | None = None


def render_ground_truth(
    synth: SynthScene,
    cameras: list[Camera],
    *,
    gaussians: object | None = None,
    keep_contributors: bool = False,
    contributors_k: int = 32,
    progress=None,
    cancel=None,
) -> list[GroundTruthView]:
    """Render images and ground-truth object / part id maps through the project renderer.

    ``gaussians``: an :class:`engine.render.gaussians.Gaussians` of ``synth.scene`` (made on the CPU
    when None). ``progress(done, total)`` is called per view; ``cancel`` (threading.Event) stops
    with :class:`engine.core.errors.Cancelled`. Imports torch (lazily: this module stays torch-free).
    """
    from ...core.errors import Cancelled
    from ...render.gaussians import Gaussians
    from .metrics import vote_labels
    from ...render.renderer import render

    g = gaussians if gaussians is not None else Gaussians.from_scene(synth.scene, "cpu")
    out = []
    for i, cam in enumerate(cameras):
        if cancel is not None and cancel.is_set():
            raise Cancelled("ground-truth rendering was cancelled")
        r = render(g, cam, contributors_k=contributors_k)
        ids = r.contributors.ids.cpu().numpy()
        w = r.contributors.weights.float().cpu().numpy()
        image = (r.values.clamp(0.0, 1.0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
        out.append(
            GroundTruthView(
                camera=cam,
                image=image,
                object_map=vote_labels(ids, w, synth.object_id),
                part_map=vote_labels(ids, w, synth.part_id),
                alpha=r.alpha.cpu().numpy().astype(np.float32),
                contributors=r.contributors.compact() if keep_contributors else None,
            )
        )
        if progress is not None:
            progress(i + 1, len(cameras))
    return out
