"""Trained Click-Gaussian features stored ON the splat mesh, so they are saved in the .blend,
stay index-aligned with the Gaussians through Blender's delete / duplicate / separate (Blender
carries point attributes along), and clicking works with the engine stopped.

=========================  ============  ==================================================
name                       where / type  meaning
=========================  ============  ==================================================
``gs_feat0`` .. ``gs_feat7``  POINT       the 24-d feature ``[coarse 12 | fine' 12]`` as 8
                           FLOAT_VECTOR  3-wide float32 columns (float16 on the engine side)
``gs_label_coarse``        POINT INT     global coarse cluster of the Gaussian, -1 = none
``gs_label_fine``          POINT INT     global fine cluster, -1 = none
``gs_coarse_centers``      mesh prop     flat float list, Cc x 12 unit coarse centres
``gs_fine_centers``        mesh prop     flat float list, Cf x 24 unit fine centres
``gs_features_meta``       mesh prop     JSON: settings, scene_hash, counts, trained_at
=========================  ============  ==================================================

Centres live on the mesh datablock (not the object) so a separated or duplicated mesh keeps
them. No bpy import at module level beyond type hints: the functions take a ``bpy.types.Mesh``.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .engine.core.errors import TrainingError
from .engine.core.features import COARSE_DIM, FEATURE_DIM, TrainedFeatures
from .mesh_read import attribute_array

FEATURE_ATTRS = tuple(f"gs_feat{i}" for i in range(FEATURE_DIM // 3))
LABEL_ATTRS = {"coarse": "gs_label_coarse", "fine": "gs_label_fine"}
PROP_CENTERS = {"coarse": "gs_coarse_centers", "fine": "gs_fine_centers"}
PROP_META = "gs_features_meta"


def has_features(mesh: Any) -> bool:
    """True when the mesh carries a complete set of stored features. Checks the attribute names
    only: looking an attribute up by name makes Blender unshare (copy) its array when the
    depsgraph shares it with the evaluated mesh, which a check before each click must not do."""
    if PROP_META not in mesh:
        return False
    names = set(mesh.attributes.keys())
    return all(a in names for a in FEATURE_ATTRS) and all(a in names for a in LABEL_ATTRS.values())


def _attr(mesh: Any, name: str, type_: str) -> Any:
    a = mesh.attributes.get(name)
    if a is not None and (a.data_type != type_ or a.domain != "POINT"):
        mesh.attributes.remove(a)
        a = None
    return a if a is not None else mesh.attributes.new(name, type_, "POINT")


def store_features(mesh: Any, trained: TrainedFeatures, *, extra_meta: dict | None = None) -> None:
    """Write ``trained`` (rows index-aligned with the mesh's vertices) onto ``mesh``.
    Raises TrainingError when the counts differ (the mesh changed since training began)."""
    n = len(mesh.vertices)
    if trained.num_gaussians != n:
        raise TrainingError(f"the features are for {trained.num_gaussians:,} Gaussians but {mesh.name!r} now has "
                            f"{n:,}: the mesh changed during training; train again")
    feats = np.ascontiguousarray(trained.features, dtype=np.float32)
    for i, name in enumerate(FEATURE_ATTRS):
        _attr(mesh, name, "FLOAT_VECTOR").data.foreach_set("vector", np.ascontiguousarray(feats[:, 3 * i:3 * i + 3]).reshape(-1))
    for level, name in LABEL_ATTRS.items():
        _attr(mesh, name, "INT").data.foreach_set("value", np.ascontiguousarray(trained.labels(level), np.int32))
    for level, prop in PROP_CENTERS.items():
        mesh[prop] = np.asarray(trained.centers(level), np.float64).reshape(-1).tolist() or [0.0]
    meta = {"settings": trained.settings, "scene_hash": trained.scene_hash, "num_gaussians": n,
            "coarse_clusters": int(len(trained.coarse_centers)), "fine_clusters": int(len(trained.fine_centers)),
            "trained_at": time.strftime("%Y-%m-%d %H:%M:%S"), "store_id": uuid.uuid4().hex, **(extra_meta or {})}
    mesh[PROP_META] = json.dumps(meta, default=str)
    mesh.update()


def read_meta(mesh: Any) -> dict[str, Any]:
    """The stored metadata (empty dict when there is none or it is unreadable)."""
    try:
        return dict(json.loads(mesh.get(PROP_META, "") or "{}"))
    except (ValueError, TypeError):
        return {}


def _centers(mesh: Any, level: str, count: int, dim: int) -> np.ndarray:
    flat = np.asarray(mesh.get(PROP_CENTERS[level], []), dtype=np.float32).reshape(-1)
    if count == 0:
        return np.zeros((0, dim), np.float32)
    if flat.size != count * dim:
        raise TrainingError(f"{mesh.name!r}: stored {level} cluster centres are damaged; train again")
    return flat.reshape(count, dim)


def read_labels(mesh: Any, level: str) -> np.ndarray:
    """[N] int32 labels of a level (-1 = none)."""
    return attribute_array(mesh, LABEL_ATTRS[level], dtype=np.int32)


@dataclass
class MeshFeatures(TrainedFeatures):
    """:class:`TrainedFeatures` read from a mesh, with the clusters' member lists precomputed:
    :meth:`members` of one cluster is a slice of a per-level stable argsort of the labels
    (built once by :meth:`index_members`, with the click index in the background) instead of a
    scan of every label per click. The object lives
    in the click cache, which is dropped whenever the mesh's vertices change."""

    _members: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def index_members(self) -> None:
        """Precompute the per-level member lists (idempotent)."""
        for level in LABEL_ATTRS:
            if level not in self._members:
                labels = self.labels(level)
                order = np.argsort(labels, kind="stable")  # ascending indices within a cluster
                bounds = np.searchsorted(labels[order], np.arange(-1, len(self.centers(level)) + 1))
                self._members[level] = (order.astype(np.int64), bounds)

    def members(self, level: str, clusters: list[int] | np.ndarray) -> np.ndarray:
        """Indices (int64, sorted) of every Gaussian whose label at ``level`` is in ``clusters``."""
        cached = self._members.get(level)
        ids = [int(c) for c in np.asarray(list(clusters)).reshape(-1)]
        if cached is None or not ids or any(not 0 <= c < len(cached[1]) - 2 for c in ids):
            return super().members(level, clusters)
        order, bounds = cached  # bounds[c + 1]: first position of cluster c (label -1 first)
        parts = [order[bounds[c + 1]:bounds[c + 2]] for c in sorted(set(ids))]
        return parts[0].copy() if len(parts) == 1 else np.sort(np.concatenate(parts))


def load_features(mesh: Any) -> MeshFeatures:
    """The mesh's stored features as :class:`TrainedFeatures` (rows = current vertices).
    Raises TrainingError with a user message when the mesh has none."""
    if not has_features(mesh):
        raise TrainingError(f"{mesh.name!r} has no trained features yet: train it first (Click-Gaussian panel > Train)")
    meta = read_meta(mesh)
    n = len(mesh.vertices)
    feats = np.empty((n, FEATURE_DIM), np.float32)
    col = np.empty(n * 3, np.float32)
    for i, name in enumerate(FEATURE_ATTRS):
        attribute_array(mesh, name, "vector", out=col)
        feats[:, 3 * i:3 * i + 3] = col.reshape(n, 3)
    cc = _centers(mesh, "coarse", int(meta.get("coarse_clusters", 0)), COARSE_DIM)
    fc = _centers(mesh, "fine", int(meta.get("fine_clusters", 0)), FEATURE_DIM)
    labels = {lv: read_labels(mesh, lv) for lv in LABEL_ATTRS}
    return MeshFeatures(feats, cc, fc, labels["coarse"], labels["fine"],
                           settings=dict(meta.get("settings") or {}), scene_hash=str(meta.get("scene_hash", "")))


def clear_features(mesh: Any) -> None:
    """Remove every stored feature attribute and property."""
    for name in (*FEATURE_ATTRS, *LABEL_ATTRS.values()):
        a = mesh.attributes.get(name)
        if a is not None:
            mesh.attributes.remove(a)
    for prop in (*PROP_CENTERS.values(), PROP_META):
        if prop in mesh:
            del mesh[prop]
