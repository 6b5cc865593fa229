"""The engine's stateful facade: one scene, its cameras/images, a mask source, masks, trained
features — and the operations on them (train, click, segment everything, render).

Used by :mod:`engine.serve.server` (one session per engine process) and by the demo. Plain Python
objects in, plain objects out (numpy arrays, :class:`~engine.core.cameras.Camera`,
:class:`~engine.core.features.TrainedFeatures`); the wire format is the server's business.

Thread safety: state changes take a lock; long work (mask preparation, training) runs without
holding it on a snapshot of the inputs, and publishes its result under the lock at the end, so
read-only calls (click, render, status) are served while a job runs. The server refuses state
changes while a job runs.

Torch and the other heavy modules are imported when first needed, so creating a session is
cheap and an engine without (say) segment-anything still serves everything else.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.cameras import Camera
from ..core.errors import CameraError, EngineError, SceneFormatError, TrainingError
from ..core.features import LEVELS, check_level
from ..core.scene import GaussianScene

ProgressFn = Callable[[dict[str, Any]], None]
SCENE_ARRAYS = ("means", "scales", "quats", "opacities", "sh_dc", "sh_rest")


def _progress_dict(args: tuple, kwargs: dict) -> dict[str, Any]:
    """Normalise whatever a library progress callback passes (a dataclass such as
    TrainProgress, a dict, or (done, total[, message])) into a JSON-able dict."""
    if len(args) == 1 and not kwargs:
        obj = args[0]
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return _jsonable(dataclasses.asdict(obj))
        if isinstance(obj, dict):
            return _jsonable(obj)
    out: dict[str, Any] = {}
    if len(args) >= 2:
        out["done"], out["total"] = args[0], args[1]
    if len(args) >= 3:
        out["message"] = str(args[2])
    out.update(kwargs)
    return _jsonable(out)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist() if obj.size <= 64 else f"<array {list(obj.shape)}>"
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def _wrap_progress(progress: ProgressFn | None, phase: str) -> Callable[..., Any]:
    def cb(*args: Any, **kwargs: Any) -> None:
        if progress is not None:
            d = _progress_dict(args, kwargs)
            d.setdefault("phase", phase)
            progress(d)

    return cb


def scene_from_arrays(arrays: dict[str, np.ndarray], name: str = "uploaded scene") -> GaussianScene:
    """A scene from raw arrays in the stored (not activated) parameterisation of
    :mod:`engine.core.scene`: ``means`` [N,3], ``scales`` [N,3] log, ``quats`` [N,4] wxyz,
    ``opacities`` [N] logit, ``sh_dc`` [N,3], optional ``sh_rest`` [N,K,3]; any float dtype
    (converted to float32). Extra per-Gaussian properties may come as ``extra:<name>`` [N]."""
    missing = [k for k in SCENE_ARRAYS[:5] if k not in arrays]
    if missing:
        raise SceneFormatError(f"{name}: missing arrays {', '.join(missing)}")
    conv = {}
    for k in SCENE_ARRAYS:
        if k in arrays:
            a = np.asarray(arrays[k])
            if a.dtype.kind not in "fiu":
                raise SceneFormatError(f"{name}: array {k!r} has dtype {a.dtype}, expected floats")
            conv[k] = np.ascontiguousarray(a, dtype=np.float32)
    n = conv["means"].shape[0] if conv["means"].ndim == 2 else -1
    conv.setdefault("sh_rest", np.zeros((max(n, 0), 0, 3), np.float32))
    for k, a in conv.items():
        # as engine.core.formats.ply: +-inf opacity logits are saturated opacities (kept), NaN never
        bad = np.isnan(a).any() if k == "opacities" else not np.isfinite(a).all()
        if bad:
            raise SceneFormatError(f"{name}: array {k!r} has NaN or infinite values")
    extra = {k.split(":", 1)[1]: np.asarray(v) for k, v in arrays.items() if k.startswith("extra:")}
    try:
        return GaussianScene(conv["means"], conv["scales"], conv["quats"], conv["opacities"], conv["sh_dc"],
                             conv["sh_rest"], extra=extra)
    except ValueError as exc:
        raise SceneFormatError(f"{name}: {exc}") from None


def scene_to_arrays(scene: GaussianScene) -> dict[str, np.ndarray]:
    """Inverse of :func:`scene_from_arrays` (no copies)."""
    out = {k: getattr(scene, k) for k in SCENE_ARRAYS}
    out.update({f"extra:{k}": v for k, v in scene.extra.items()})
    return out


class EngineSession:
    """See the module docstring. ``device``: "auto" (CUDA when present), "cpu" or "cuda".
    ``cache_dir``: where mask caches go (default: beside the scene file, else a temp folder)."""

    def __init__(self, device: str = "auto", cache_dir: str | None = None) -> None:
        self.device = device
        self.cache_dir = cache_dir
        self._lock = threading.RLock()
        self.scene: GaussianScene | None = None
        self.scene_path: str | None = None
        self.cameras: list[Camera] = []
        self.images: list[np.ndarray | None] = []
        self.mask_source: Any = None
        self.mask_source_desc: dict[str, Any] = {}
        self.views: list[Any] | None = None  # list[engine.train.TrainView] once masks are prepared
        self.trained: Any = None  # engine.core.features.TrainedFeatures
        self.features_path: str | None = None
        self._gaussians: Any = None
        self._click_index: Any = None
        self.last_train: dict[str, Any] = {}

    # ------------------------------------------------------------------ scene

    def _require_scene(self) -> GaussianScene:
        if self.scene is None:
            raise EngineError("no scene is loaded: load a scene first")
        return self.scene

    def load_scene(self, path: str, *, load_features: bool = True) -> dict[str, Any]:
        """Read a 3DGS .ply on the engine's disk; also load ``<scene>.clickgs.npz`` beside it when
        it exists and matches the scene (a stale one is reported, not loaded)."""
        from ..core.formats.ply import read_ply

        path = os.path.abspath(os.path.expanduser(path))
        scene = read_ply(path)
        info = self.set_scene(scene, path=path)
        if load_features:
            from ..core.features import default_features_path

            fpath = default_features_path(path)
            if os.path.isfile(fpath):
                try:
                    info["features"] = self.load_features(fpath)
                except TrainingError as exc:
                    info["features_warning"] = str(exc)
        return info

    def set_scene(self, scene: GaussianScene, *, path: str | None = None) -> dict[str, Any]:
        """Make ``scene`` current; forgets the cameras, masks, features and caches of the previous
        scene (set cameras again after loading a scene)."""
        from ..core.features import scene_hash

        if scene.num_gaussians == 0:
            raise SceneFormatError(f"{path or 'the scene'} has no Gaussians")
        with self._lock:
            self.scene = scene
            self.scene_path = path
            self.views = None
            self.trained = None
            self.features_path = None
            self._gaussians = None
            self._click_index = None
            self.cameras, self.images = [], []
            return {"num_gaussians": scene.num_gaussians, "sh_degree": scene.sh_degree, "path": path,
                    "scene_hash": scene_hash(scene), "bounds": [b.tolist() for b in scene.robust_bounds()]}

    def gaussians(self) -> Any:
        """The scene as activated torch tensors on the session's device (built once)."""
        with self._lock:
            scene = self._require_scene()
            if self._gaussians is None:
                from ..render.gaussians import Gaussians

                self._gaussians = Gaussians.from_scene(scene, self.device)
            return self._gaussians

    # ------------------------------------------------------------------ cameras and images

    def set_cameras(self, cameras: list[Camera], images: list[np.ndarray | None] | None = None) -> dict[str, Any]:
        """Training/query cameras (OpenCV convention) and, optionally, their images (uint8
        [H,W,3], aligned with the cameras; None = render it from the splats)."""
        if not cameras:
            raise CameraError("no cameras given")
        if images is not None and len(images) != len(cameras):
            raise CameraError(f"{len(images)} images for {len(cameras)} cameras")
        checked = [None if im is None else self._check_image(im, cam) for im, cam in zip(images or [None] * len(cameras), cameras)]
        with self._lock:
            self.cameras = list(cameras)
            self.images = checked
            self.views = None
        return {"num_cameras": len(cameras),
                "num_images": sum(im is not None or bool(c.image_path) for im, c in zip(checked, cameras)),
                "sizes": sorted({(c.width, c.height) for c in cameras})}

    @staticmethod
    def _check_image(image: np.ndarray, cam: Camera) -> np.ndarray:
        im = np.asarray(image)
        if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] not in (3, 4):
            raise CameraError(f"image for camera {cam.name!r} must be uint8 [H, W, 3], got {im.dtype} {list(im.shape)}")
        if im.shape[:2] != (cam.height, cam.width):
            raise CameraError(f"image for camera {cam.name!r} is {im.shape[1]}x{im.shape[0]}, camera is {cam.width}x{cam.height}")
        return np.ascontiguousarray(im[..., :3])

    def load_cameras(self, path: str, images_dir: str | None = None) -> dict[str, Any]:
        """Cameras from COLMAP / cameras.json / transforms.json / npz (engine.core.cameras.load_cameras);
        their photos (``camera.image_path``) are read when masks are prepared."""
        from ..core.cameras import load_cameras

        notes: list[str] = []
        info = self.set_cameras(load_cameras(os.path.expanduser(path), images_dir, warn=notes.append))
        if notes:
            info["warnings"] = [str(n) for n in notes]  # shown to the user after the operation
        return info

    def orbit_cameras(self, n_views: int, width: int, height: int) -> dict[str, Any]:
        """Virtual views on orbits around the scene (engine.core.cameras.orbit_cameras); their images
        are rendered from the splats when masks are prepared."""
        from ..core.cameras import orbit_cameras

        for name, value, low, high in (("n_views", n_views, 1, 10000), ("width", width, 16, 8192),
                                       ("height", height, 16, 8192)):
            if not low <= value <= high:
                raise CameraError(f"orbit views: {name} must be within {low}..{high}, got {value}")
        return self.set_cameras(orbit_cameras(self._require_scene(), n_views, width, height))

    def camera(self, cam: Camera | int) -> Camera:
        """A camera given directly or as an index into the session's cameras."""
        if isinstance(cam, Camera):
            return cam
        with self._lock:
            if not self.cameras:
                raise CameraError("no cameras are set: set cameras (or orbit views) first, or send the camera itself")
            if not isinstance(cam, int) or isinstance(cam, bool) or not 0 <= cam < len(self.cameras):
                raise CameraError(f"camera index {cam!r} is outside 0..{len(self.cameras) - 1}")
            return self.cameras[cam]

    # ------------------------------------------------------------------ masks

    def set_masks_source(self, kind: str, *, checkpoint: str | None = None, model_type: str | None = None,
                         folder: str | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """``builtin`` (no download, lower quality than SAM), ``sam`` (segment-anything from a
        checkpoint on the engine's disk) or ``folder`` (masks computed elsewhere); the factories
        are :data:`engine.masks.registry.SOURCES`."""
        from ..masks import registry

        source = registry.make_source(kind, checkpoint=checkpoint, model_type=model_type, folder=folder,
                                      device=None if self.device == "auto" else self.device, options=options)
        desc = registry.describe(kind, source)
        with self._lock:
            self.mask_source = source
            self.mask_source_desc = desc
            self.views = None
        return desc

    def _mask_cache_dir(self) -> str:
        if self.cache_dir:
            return self.cache_dir
        import tempfile

        base = os.path.dirname(self.scene_path) if self.scene_path else ""
        if base and os.access(base, os.W_OK):
            return os.path.join(base, ".clickgs-cache")
        return os.path.join(tempfile.gettempdir(), "clickgs-cache")

    def prepare_masks(self, progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> dict[str, Any]:
        """Training views (engine.train.views_from_scene): each camera's image (given, else its
        photo file, else rendered from the splats) and its two-level masks from the mask source
        (the built-in one when none was set), cached on disk."""
        from ..train import TrainSettings, views_from_scene

        with self._lock:
            scene = self._require_scene()
            cams, images = list(self.cameras), list(self.images)
        if not cams:
            raise CameraError("no cameras: set cameras (or orbit views) before preparing masks")
        if self.mask_source is None:
            self.set_masks_source("builtin")
        source = self.mask_source

        def report(stage: str, done: int, total: int) -> None:
            if progress is not None:
                progress({"phase": stage, "done": int(done), "total": int(total)})

        warned: list[str] = []

        def warn(message: str) -> None:  # reaches the client as a progress event and in the result
            warned.append(str(message))
            if progress is not None:
                progress({"phase": "warning", "message": str(message)})

        t0 = time.perf_counter()
        views = views_from_scene(scene, cams, source, images=images, gaussians=self.gaussians(),
                                 cache_dir=self._mask_cache_dir(), device=self.device, progress=report, cancel=cancel,
                                 on_warning=warn, contributors_k=TrainSettings().contributors_k)
        with self._lock:
            if self.scene is scene:
                self.views = views
        return {"num_views": len(views), "source": self.mask_source_desc, "seconds": round(time.perf_counter() - t0, 3),
                "warnings": warned,
                "segments": [[int(v.masks.num_segments("coarse")), int(v.masks.num_segments("fine"))] for v in views]}

    # ------------------------------------------------------------------ training and features

    def train(self, settings: dict[str, Any] | None = None, *, progress: ProgressFn | None = None,
              cancel: threading.Event | None = None, save_path: str | None = None,
              checkpoint_path: str | None = None, resume: bool = False) -> dict[str, Any]:
        """Train features (engine.train.train), preparing masks first if needed. ``settings``:
        TrainSettings fields, and optionally ``"preset"``: ``"product"`` (the default) or ``"paper"``
        (the paper's constants); with ``iterations`` but no ``gfl_start`` / ``gfl_interval`` those
        follow the run's length at the preset's fraction (engine.core.schedule.with_run_schedule).
        The result is kept in the session and written to ``save_path`` (default ``<scene>.clickgs.npz`` beside a
        scene loaded from a file; nothing is written for an uploaded scene unless asked). A
        checkpoint goes to ``checkpoint_path`` (default ``<save_path>.ckpt``, or
        ``train-<scene hash>.ckpt`` in the cache folder) so ``resume=True`` continues a cancelled
        or crashed run."""
        from ..core.features import default_features_path
        from ..core.schedule import with_run_schedule
        from ..train import TrainSettings, train

        fields = {f.name for f in dataclasses.fields(TrainSettings)}
        unknown = sorted(set(settings or {}) - fields - {"preset"})
        if unknown:
            raise TrainingError(f"unknown training settings: {', '.join(unknown)} (known: {', '.join(sorted(fields))})")
        settings = dict(settings or {})
        if self.device != "auto":
            settings.setdefault("device", self.device)
        settings = with_run_schedule(settings)
        try:
            ts = TrainSettings(**settings)
        except (TypeError, ValueError) as exc:
            raise TrainingError(f"bad training settings: {exc}") from None
        with self._lock:
            scene = self._require_scene()
            views = self.views
            scene_path = self.scene_path
        if views is None:
            self.prepare_masks(progress=progress, cancel=cancel)
            views = self.views
        if save_path is None and scene_path is not None:
            save_path = default_features_path(scene_path)
        if checkpoint_path is None:  # always checkpoint, so a cancelled or crashed run can resume
            if save_path is not None:
                checkpoint_path = save_path + ".ckpt"
            else:
                from ..core.features import scene_hash

                folder = self._mask_cache_dir()
                os.makedirs(folder, exist_ok=True)
                checkpoint_path = os.path.join(folder, f"train-{scene_hash(scene)[:16]}.ckpt")
        t0 = time.perf_counter()
        with self._lock:
            before = (self.trained, self.features_path)
        provisional: list[Any] = []

        def publish(result: Any) -> None:
            # an intermediate result (engine.train.trainer): clickable at once, replaced by the
            # final one; a progress event tells the client it can fetch it
            with self._lock:
                if self.scene is not scene:
                    return
                self.trained, self.features_path = result, None
            provisional.append(result)
            if progress is not None:
                run = result.settings.get("run", {})
                progress({"phase": "train", "iteration": int(run.get("iteration", 0)), "total": ts.iterations,
                          "provisional_result": int(run.get("iteration", 0)),
                          "message": f"intermediate result at iteration {run.get('iteration')} (provisional)"})

        try:
            trained = train(scene, views, ts, progress=_wrap_progress(progress, "train"), cancel=cancel,
                            checkpoint_path=checkpoint_path, resume=resume, gaussians=self.gaussians(),
                            publish=publish)
        except BaseException:
            with self._lock:  # a failed or cancelled run leaves what was there before it
                if provisional and self.trained is provisional[-1]:
                    self.trained, self.features_path = before
            raise
        elapsed = time.perf_counter() - t0
        saved = None
        if save_path is not None:
            saved = trained.save(save_path)
        with self._lock:
            if self.scene is scene:
                self.trained = trained
                self.features_path = saved
        self.last_train = {"seconds": round(elapsed, 3), "saved_to": saved}
        return {**self.features_summary(trained), "seconds": round(elapsed, 3), "saved_to": saved}

    @staticmethod
    def features_summary(trained: Any) -> dict[str, Any]:
        run = (trained.settings or {}).get("run", {}) if isinstance(trained.settings, dict) else {}
        return {"num_gaussians": trained.num_gaussians, "coarse_clusters": int(len(trained.coarse_centers)),
                "fine_clusters": int(len(trained.fine_centers)), "scene_hash": trained.scene_hash,
                "provisional": bool(run.get("provisional", False))}

    def features(self) -> Any:
        """The current :class:`~engine.core.features.TrainedFeatures` (error when not trained)."""
        with self._lock:
            if self.trained is None:
                raise TrainingError("the scene has no trained features: train it (or load a features file) first")
            return self.trained

    def load_features(self, path: str) -> dict[str, Any]:
        """Load a features file checked against the current scene."""
        from ..core.features import TrainedFeatures

        path = os.path.abspath(os.path.expanduser(path))
        with self._lock:
            scene = self._require_scene()
        trained = TrainedFeatures.load(path, scene)
        with self._lock:
            if self.scene is scene:
                self.trained = trained
                self.features_path = path
        return {**self.features_summary(trained), "path": path}

    def save_features(self, path: str) -> dict[str, Any]:
        path = os.path.abspath(os.path.expanduser(path))
        written = self.features().save(path)
        return {"path": written}

    # ------------------------------------------------------------------ queries

    def click_index(self) -> Any:
        with self._lock:
            scene = self._require_scene()
            if self._click_index is None:
                from ..core.click import ClickIndex

                self._click_index = ClickIndex.build(scene)
            return self._click_index

    def click(self, cam: Camera | int, u: float, v: float, level: str = "coarse") -> Any:
        """Click query at pixel position (u, v) (pixels, x right / y down; (u+0.5, v+0.5) is the
        centre of pixel (u, v)): engine.core.click.ClickResult."""
        check_level(level)
        with self._lock:
            self._require_scene()
        trained = self.features()
        cam = self.camera(cam)
        if not (0 <= u <= cam.width and 0 <= v <= cam.height):
            raise CameraError(f"click at ({u:g}, {v:g}) is outside the {cam.width}x{cam.height} view")
        from ..core.click import click_query

        return click_query(self.click_index(), trained, cam, u, v, level=level)

    def segment(self, cam: Camera | int, level: str = "coarse") -> np.ndarray:
        """Segment everything: int32 [H, W] cluster id per pixel (-1 background)."""
        check_level(level)
        with self._lock:
            self._require_scene()
        trained = self.features()
        cam = self.camera(cam)
        from ..train import segment_everything

        out = segment_everything(self.gaussians(), trained, cam, level)
        return np.asarray(out.detach().cpu().numpy() if hasattr(out, "detach") else out, dtype=np.int32)

    def render(self, cam: Camera | int, what: str = "rgb") -> dict[str, np.ndarray]:
        """Render a view: ``rgb`` -> image float32 [H,W,3] in [0,1]; ``coarse``/``fine`` -> the
        trained features [H,W,12|24] float32. Always with alpha [H,W] and depth [H,W] (camera z)."""
        with self._lock:
            self._require_scene()
        cam = self.camera(cam)
        from ..render.renderer import render

        values = None
        if what in LEVELS:
            import torch

            feats = self.features().level_features(what)
            g = self.gaussians()
            values = torch.from_numpy(feats).to(g.means.device)
        elif what != "rgb":
            raise EngineError(f"render: 'what' must be rgb, coarse or fine, got {what!r}")
        out = render(self.gaussians(), cam, values)

        def np_(t: Any) -> np.ndarray:
            return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)

        return {"image": np.ascontiguousarray(np_(out.values), dtype=np.float32),
                "alpha": np.ascontiguousarray(np_(out.alpha), dtype=np.float32),
                "depth": np.ascontiguousarray(np_(out.depth), dtype=np.float32)}

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        with self._lock:
            scene = self.scene
            return {
                "scene": None if scene is None else {"num_gaussians": scene.num_gaussians, "path": self.scene_path,
                                                     "sh_degree": scene.sh_degree},
                "num_cameras": len(self.cameras),
                "num_images": sum(im is not None or bool(c.image_path) for im, c in zip(self.images, self.cameras)),
                "mask_source": self.mask_source_desc or None,
                "masks_ready": self.views is not None,
                "features": None if self.trained is None else {**self.features_summary(self.trained),
                                                               "path": self.features_path},
                "device": self.device,
                "last_train": self.last_train or None,
            }

    def device_info(self) -> dict[str, Any]:
        """What the engine runs on (imports torch)."""
        info: dict[str, Any] = {"numpy": np.__version__}
        try:
            import torch

            info["torch"] = torch.__version__
            info["cuda"] = bool(torch.cuda.is_available())
            if info["cuda"]:
                info["gpu"] = torch.cuda.get_device_name(0)
        except ImportError:
            info["torch"] = None
        try:
            import gsplat

            info["gsplat"] = getattr(gsplat, "__version__", "present")
        except Exception:  # noqa: BLE001 - gsplat may fail to import without CUDA tooling
            info["gsplat"] = None
        return info
