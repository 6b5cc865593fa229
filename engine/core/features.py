"""Trained Click-Gaussian features: the result of training, and its file format (numpy only).

The Blender extension loads this module without torch, so it uses numpy + stdlib only.

Per-Gaussian features are 24-d: ``[coarse 12 | fine' 12]``. The coarse feature of Gaussian i is
``features[i, :12]``; the fine feature is the whole 24-d vector ``concat(coarse, fine')`` (the
granularity prior). Global clusters ("objects" at the coarse level, "parts" at the fine level) are
unit vectors in the same spaces; every Gaussian carries one label per level (-1 = no cluster).

File format (``.npz``, written atomically, loaded with ``allow_pickle=False``). A write never
replaces a file that is not a features file (:func:`check_features_target`: recognised by its
content), and a load refuses wrong kinds, widths and non-finite values with one line:

==================  =============  ===========================================================
key                 dtype          content
==================  =============  ===========================================================
format_version      int32 []       :data:`FORMAT_VERSION` (currently 1)
features            float16 [N,24] per-Gaussian features, index-aligned with the scene
coarse_centers      float32 [Cc,12] unit coarse cluster centres (Cc may be 0)
fine_centers        float32 [Cf,24] unit fine cluster centres (Cf may be 0)
coarse_labels       int32 [N]      coarse cluster per Gaussian, -1 = none
fine_labels         int32 [N]      fine cluster per Gaussian, -1 = none
settings_json       str []         JSON of the training settings (and run facts)
scene_hash          str []         :func:`scene_hash` of the scene the features belong to
==================  =============  ===========================================================
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .atomic import atomic_write
from .errors import TrainingError

FORMAT_VERSION = 1
COARSE_DIM = 12  # coarse feature width (paper)
FEATURE_DIM = 24  # full (fine) feature width = coarse 12 + fine' 12 (paper)
LEVELS = ("coarse", "fine")

_KEYS = (
    "format_version",
    "features",
    "coarse_centers",
    "fine_centers",
    "coarse_labels",
    "fine_labels",
    "settings_json",
    "scene_hash",
)


def check_level(level: str) -> str:
    """``level`` when it is one of :data:`LEVELS`, else a one-line TrainingError."""
    if level not in LEVELS:
        raise TrainingError(f"level must be {' or '.join(map(repr, LEVELS))}, got {level!r}")
    return level


def level_dim(level: str) -> int:
    """Feature width of a level: 12 for ``"coarse"``, 24 for ``"fine"``."""
    return COARSE_DIM if check_level(level) == "coarse" else FEATURE_DIM


def scene_hash(scene: Any) -> str:
    """A fast fingerprint of a scene's geometry: sha1 over the Gaussian count and the raw
    float32 bytes of means, scales, quats and opacities (colour is not part of it, so a recolour
    keeps the features valid)."""
    h = hashlib.sha1()
    h.update(np.int64(scene.num_gaussians).tobytes())
    for name in ("means", "scales", "quats", "opacities"):
        arr = np.ascontiguousarray(getattr(scene, name), dtype="<f4")
        h.update(name.encode())
        h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def default_features_path(scene_path: str | os.PathLike) -> str:
    """``<scene>.clickgs.npz`` beside the scene file (``fox.ply`` -> ``fox.clickgs.npz``)."""
    p = os.fspath(scene_path)
    root, ext = os.path.splitext(p)
    if ext.lower() == ".ply":
        p = root  # SuperSplat "x.compressed.ply" -> "x.compressed.clickgs.npz"
    return p + ".clickgs.npz"


def normalize_rows(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` [M, D] scaled to unit length as float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, eps)


@dataclass
class TrainedFeatures:
    """Per-Gaussian features, global clusters and labels of both levels (see module doc)."""

    features: np.ndarray  # [N, 24] float16: [coarse 12 | fine' 12]
    coarse_centers: np.ndarray  # [Cc, 12] float32, unit
    fine_centers: np.ndarray  # [Cf, 24] float32, unit
    coarse_labels: np.ndarray  # [N] int32, -1 = no cluster
    fine_labels: np.ndarray  # [N] int32, -1 = no cluster
    settings: dict = field(default_factory=dict)
    scene_hash: str = ""
    _unit_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, dtype, width in (("features", np.float16, None),
                                   ("coarse_centers", np.float32, COARSE_DIM),
                                   ("fine_centers", np.float32, FEATURE_DIM),
                                   ("coarse_labels", np.int32, None), ("fine_labels", np.int32, None)):
            try:
                value = np.asarray(getattr(self, name), dtype=dtype)
                setattr(self, name, value if width is None else value.reshape(-1, width))
            except (TypeError, ValueError):
                raise TrainingError(f"{name} must be numbers{f' [C, {width}]' if width else ''}, "
                                    f"got {_describe(getattr(self, name))}") from None
        if not isinstance(self.settings, dict):
            raise TrainingError(f"settings must be a JSON object, got {type(self.settings).__name__}")
        if self.features.ndim != 2 or self.features.shape[1] != FEATURE_DIM:
            raise TrainingError(f"features must be [N, {FEATURE_DIM}], got {list(self.features.shape)}")
        n = self.features.shape[0]
        for name, labels, centers in (
            ("coarse_labels", self.coarse_labels, self.coarse_centers),
            ("fine_labels", self.fine_labels, self.fine_centers),
        ):
            if labels.shape != (n,):
                raise TrainingError(f"{name} must be [{n}], got {list(labels.shape)}")
            if n and (labels.min() < -1 or labels.max() >= len(centers)):
                raise TrainingError(f"{name} refer to clusters outside 0..{len(centers) - 1}")

    @property
    def num_gaussians(self) -> int:
        return int(self.features.shape[0])

    def centers(self, level: str) -> np.ndarray:
        """Unit cluster centres of a level: [Cc, 12] or [Cf, 24] float32."""
        level_dim(level)
        return self.coarse_centers if level == "coarse" else self.fine_centers

    def labels(self, level: str) -> np.ndarray:
        """Per-Gaussian cluster labels of a level: [N] int32, -1 = none."""
        level_dim(level)
        return self.coarse_labels if level == "coarse" else self.fine_labels

    @property
    def granularity_prior(self) -> bool:
        """False only for features trained without the granularity prior (ablation): their fine
        feature is ``[0 (12) | fine' 12]``, independent of the coarse half."""
        return bool(self.settings.get("use_prior", True))

    def level_features(self, level: str) -> np.ndarray:
        """Raw (not normalised) per-Gaussian features of a level as float32: coarse [N, 12]
        (``features[:, :12]``) or fine [N, 24] (``concat(coarse, fine')``; see
        :attr:`granularity_prior`)."""
        out = self.features[:, : level_dim(level)].astype(np.float32)
        if level == "fine" and not self.granularity_prior:
            out[:, :COARSE_DIM] = 0.0
        return out

    def unit_features(self, level: str) -> np.ndarray:
        """L2-normalised per-Gaussian features of a level, float32, cached (fast cosine)."""
        if level not in self._unit_cache:
            self._unit_cache[level] = normalize_rows(self.level_features(level))
        return self._unit_cache[level]

    def members(self, level: str, clusters: list[int] | np.ndarray) -> np.ndarray:
        """Indices (int64, sorted) of every Gaussian whose label at ``level`` is in ``clusters``."""
        labels = self.labels(level)
        clusters = np.asarray(list(clusters), dtype=np.int32)
        if clusters.size == 0:
            return np.zeros(0, dtype=np.int64)
        if clusters.size == 1:
            return np.flatnonzero(labels == clusters[0])
        return np.flatnonzero(np.isin(labels, clusters))

    # ---------------------------------------------------------------- file I/O
    def save(self, path: str | os.PathLike) -> str:
        """Write the ``.npz`` atomically (:func:`engine.core.atomic.atomic_write`); returns the path written."""
        path = check_features_target(path)
        folder = os.path.dirname(os.path.abspath(path))
        arrays = {
            "format_version": np.int32(FORMAT_VERSION),
            "features": self.features,
            "coarse_centers": self.coarse_centers,
            "fine_centers": self.fine_centers,
            "coarse_labels": self.coarse_labels,
            "fine_labels": self.fine_labels,
            "settings_json": np.array(json.dumps(self.settings, sort_keys=True, default=_json_default)),
            "scene_hash": np.array(self.scene_hash),
        }
        try:
            with atomic_write(path, suffix=".npz") as fh:
                np.savez(fh, **arrays)
        except OSError as exc:
            raise TrainingError(f"cannot write features to {path}: {exc.strerror or exc}") from None
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, scene: Any = None) -> "TrainedFeatures":
        """Read a features file. With ``scene``, checks that the file was trained for it
        (same :func:`scene_hash`) and raises :class:`TrainingError` when it is stale."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise TrainingError(f"features file {path} does not exist (train the scene first)")
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in _KEYS if k not in z.files]
                if missing:
                    raise TrainingError(f"{path} is not a Click-Gaussian features file (missing {', '.join(missing)})")
                version = int(z["format_version"])
                if version > FORMAT_VERSION:
                    raise TrainingError(
                        f"{path} has features format {version}; this engine reads up to {FORMAT_VERSION} (update it)"
                    )
                data = {k: z[k] for k in _KEYS}
        except TrainingError:
            raise
        except Exception as exc:  # zip/npy corruption, truncated file, pickled object arrays
            raise TrainingError(f"{path} is not a readable features file ({exc.__class__.__name__}: {exc})") from None
        _check_arrays(data, path)
        try:
            settings = json.loads(str(data["settings_json"]))
        except ValueError:
            raise TrainingError(f"{path} has corrupt settings_json") from None
        if not isinstance(settings, dict):
            raise TrainingError(f"{path}: settings_json must be a JSON object, got {type(settings).__name__}")
        try:
            out = cls(
                features=data["features"],
                coarse_centers=data["coarse_centers"],
                fine_centers=data["fine_centers"],
                coarse_labels=data["coarse_labels"],
                fine_labels=data["fine_labels"],
                settings=settings,
                scene_hash=str(data["scene_hash"]),
            )
        except TrainingError as exc:  # label counts and ranges: name the file
            raise TrainingError(f"{path}: {exc}") from None
        if scene is not None:
            if scene.num_gaussians != out.num_gaussians:
                raise TrainingError(
                    f"{path} holds features for {out.num_gaussians} Gaussians but the scene has "
                    f"{scene.num_gaussians}: retrain the scene"
                )
            if scene_hash(scene) != out.scene_hash:
                raise TrainingError(f"{path} was trained for a different version of this scene: retrain it")
        return out


def is_features_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a Click-Gaussian features file by its content: a readable zip
    (``.npz``) holding every array of the format (``format_version``, ``features``, ...), whatever
    its name. Only the zip directory is read, not the arrays."""
    try:
        with zipfile.ZipFile(os.fspath(path)) as z:
            names = set(z.namelist())
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return False
    return all(k + ".npy" in names for k in _KEYS)


def check_features_target(path: str | os.PathLike) -> str:
    """Check that a features file may be written at ``path`` and return it (as a str).

    A features write never replaces anything but a features file of ours (recognised by
    :func:`is_features_file`, not by name): ``train --out scene.ply`` or ``save_features`` to a
    scene, image or folder is refused before any work is done, and the file stays as it was.
    Call it before long work (training) as well as at the write itself.

    Raises:
        TrainingError: one line naming ``path``: a folder, a file that is not a features file,
            or a missing parent folder.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise TrainingError(f"cannot write features to {path}: it is a folder")
    if not os.path.isdir(folder):
        raise TrainingError(f"cannot write features to {path}: folder {folder} does not exist")
    if os.path.lexists(path) and not (os.path.isfile(path) and is_features_file(path)):
        raise TrainingError(f"refusing to replace {path}: it exists and is not a Click-Gaussian "
                            f"features file (choose another path or remove it)")
    return path


def _describe(value: Any) -> str:
    """``dtype [shape]`` of an array-like, for messages."""
    try:
        a = np.asarray(value)
        return f"{a.dtype} {list(a.shape)}"
    except Exception:  # an object numpy cannot even wrap: its type says enough
        return type(value).__name__


def _check_arrays(data: dict[str, np.ndarray], path: str) -> None:
    """The arrays of a features file have the format's kinds, shapes and finite values; a
    one-line TrainingError naming the file and the array otherwise (a file full of NaN would load
    and then make every click and segment meaningless)."""
    want = {"features": ("f", FEATURE_DIM), "coarse_centers": ("f", COARSE_DIM),
            "fine_centers": ("f", FEATURE_DIM), "coarse_labels": ("iu", None),
            "fine_labels": ("iu", None)}
    for key, (kinds, width) in want.items():
        a = data[key]
        shape_ok = a.ndim == 2 and a.shape[1] == width if width else a.ndim == 1
        if a.dtype.kind not in kinds or not shape_ok:
            expect = f"[{'N' if key == 'features' else 'C'}, {width}] floats" if width else "[N] integers"
            raise TrainingError(f"{path}: {key} must be {expect}, got {a.dtype} {list(a.shape)}")
        if kinds == "f" and not np.isfinite(a).all():
            bad = int((~np.isfinite(a)).any(axis=1).sum())
            raise TrainingError(f"{path}: {key} has NaN or infinite values in {bad} of {len(a)} rows")
    for key in ("settings_json", "scene_hash"):
        if data[key].dtype.kind != "U" or data[key].shape != ():
            raise TrainingError(f"{path}: {key} must be a string, got {data[key].dtype} {list(data[key].shape)}")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)
