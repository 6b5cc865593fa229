"""The engine server's command table: wire requests -> :class:`engine.serve.session.EngineSession`
calls -> wire replies. Each handler gets the server and a :class:`Request` and returns
``(result JSON dict, arrays dict)``; raising an :class:`~engine.core.errors.EngineError` makes an
error reply with its message.

Commands (lane: control = answered at once, query = query worker, job = job worker with progress
events and cancel; * = refused while a job runs). Cameras are ``{"index": i}`` (into the
session's cameras) or a wire camera (:func:`engine.link.protocol.camera_to_wire`).

=================  =======  ==============================================================
command            lane     args -> result [arrays]
=================  =======  ==============================================================
hello              control  protocol, auth, client -> engine info (first request only)
version            control  -> engine info (versions, device, log path, commands)
ping               control  -> time
status             control  -> job (id, command, progress) or null, session summary
cancel             control  id? -> cancelled (bool)
shutdown           control  -> stopping; the engine exits after replying
load_scene *       query    path [, load_features] | name + arrays means, scales, quats,
                            opacities, sh_dc[, sh_rest, extra:<name>] -> scene info
set_cameras *      query    path[, images_dir] | orbit {n_views, width, height} |
                            cameras [wire cameras] + optional arrays image:<i> uint8 [H,W,3]
                            -> camera summary
set_images *       query    arrays image:<i> uint8 [H,W,3] for camera i -> summary
set_masks_source * query    kind (builtin|sam|folder), checkpoint, model_type, folder,
                            options -> source description
prepare_masks *    job      -> views, segments per view; progress events
train *            job      settings {TrainSettings fields}, save_path, checkpoint_path,
                            resume -> summary; progress events (iteration, total, losses,
                            elapsed_s, eta_s, phase)
get_features       query    -> settings, scene_hash, path [features f16 [N,24],
                            coarse_centers f32 [Cc,12], fine_centers f32 [Cf,24],
                            coarse_labels i32 [N], fine_labels i32 [N]]
load_features *    query    path -> summary
save_features      query    path -> path
click              query    camera, u, v, level -> clusters, similarity, num_selected, ...
                            [selected (Gaussian indices), feature f32]
segment            query    camera, level -> [labels i32 [H,W], -1 = background]
render             query    camera, what (rgb|coarse|fine) -> [image f32 [H,W,C],
                            alpha f32 [H,W], depth f32 [H,W]]
=================  =======  ==============================================================
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import __version__
from ..link import protocol as P
from ..core.cameras import Camera, validate_camera
from ..core.errors import EngineError
from ..core.features import LEVELS


class BadRequest(EngineError):
    """A request's arguments are missing or of the wrong type."""


@dataclass
class Request:
    """What a command handler gets: the request's arguments and arrays, a progress emitter and
    a cancel event (set by ``cancel``, by shutdown, or when the client disconnects)."""

    id: int
    command: str
    args: dict[str, Any]
    arrays: dict[str, np.ndarray]
    cancel: threading.Event
    emit: Callable[[str, dict[str, Any]], None]
    progress_state: dict[str, Any] = field(default_factory=dict)

    def progress(self, data: dict[str, Any]) -> None:
        """Record the latest progress (for ``status``) and stream it as an event."""
        self.progress_state = dict(data)
        self.emit("progress", data)


Handler = Callable[[Any, Request], tuple[dict[str, Any], dict[str, Any]]]


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    lane: str  # "control" | "query" | "job"
    mutating: bool  # refused while a job runs
    help: str = ""


# ---------------------------------------------------------------------- argument helpers

_MISSING = object()


def arg(req: Request, name: str, kind: type | tuple[type, ...], default: Any = _MISSING,
        *, choices: tuple | None = None) -> Any:
    """A request argument of a JSON type (an int is accepted where a float is asked)."""
    value = req.args.get(name)
    if value is None:
        if default is _MISSING:
            raise BadRequest(f"command {req.command!r} needs the argument {name!r}")
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise BadRequest(f"command {req.command!r}: argument {name!r} must be {names}, got {type(value).__name__}")
    if choices is not None and value not in choices:
        raise BadRequest(f"command {req.command!r}: argument {name!r} must be one of "
                         f"{', '.join(map(str, choices))}, got {value!r}")
    return value


def wire_camera(req: Request, value: object, label: str) -> Camera:
    """A wire camera (:func:`engine.link.protocol.camera_from_wire`) checked at the command boundary
    with :func:`engine.core.cameras.validate_camera`: a singular pose, a zero focal length or an
    impossible size is refused here, naming ``label`` and the field, not later in the renderer.

    Raises:
        BadRequest: the value is not a wire camera (missing field, wrong shape, not finite).
        CameraError: it is one, but cannot be rendered.
    """
    try:
        camera = P.camera_from_wire(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, KeyError) as exc:
        detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise BadRequest(f"command {req.command!r}: {label} is not a camera ({detail})") from None
    return validate_camera(camera, f"command {req.command!r}: {label}")


def camera_arg(req: Request, name: str = "camera") -> Any:
    """``{"index": i}`` -> i, or a wire camera -> a validated :class:`~engine.core.cameras.Camera`."""
    value = arg(req, name, dict)
    if "index" in value:
        idx = value["index"]
        if not isinstance(idx, int) or isinstance(idx, bool):
            raise BadRequest(f"command {req.command!r}: camera index must be an integer")
        return idx
    return wire_camera(req, value, f"argument {name!r}")


def split_result(obj: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A result object (dataclass or dict) as (JSON fields, arrays): numpy arrays with more than
    one element travel as arrays, everything else as JSON."""
    items = dataclasses.asdict(obj).items() if dataclasses.is_dataclass(obj) else dict(obj).items()
    result: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for k, v in items:
        if isinstance(v, np.ndarray) and (v.ndim > 1 or v.size > 64 or k in ("selected", "feature")):
            arrays[k] = v if v.dtype.name in P.ALLOWED_DTYPES or v.dtype.kind == "b" else v.astype(np.float64)
        else:
            from .session import _jsonable

            result[k] = _jsonable(v)
    return result, arrays


def _time() -> float:
    return time.time()


# ---------------------------------------------------------------------- control


def cmd_version(server: Any, req: Request) -> tuple[dict, dict]:
    return server.describe(), {}


def cmd_ping(server: Any, req: Request) -> tuple[dict, dict]:
    return {"time": _time()}, {}


def cmd_status(server: Any, req: Request) -> tuple[dict, dict]:
    return {"job": server.job_status(), "session": server.session.status(), "engine": __version__,
            "pid": os.getpid(), "uptime_s": round(_time() - server.started_at, 3)}, {}


def cmd_cancel(server: Any, req: Request) -> tuple[dict, dict]:
    rid = arg(req, "id", int, None)
    return {"cancelled": server.cancel_job(rid)}, {}


def cmd_shutdown(server: Any, req: Request) -> tuple[dict, dict]:
    server.request_shutdown("shutdown requested by the client")
    return {"stopping": True}, {}


# ---------------------------------------------------------------------- session state


def cmd_load_scene(server: Any, req: Request) -> tuple[dict, dict]:
    s = server.session
    if req.arrays:
        from .session import scene_from_arrays

        name = arg(req, "name", str, "uploaded scene")
        return s.set_scene(scene_from_arrays(req.arrays, name)), {}
    path = arg(req, "path", str)
    return s.load_scene(path, load_features=arg(req, "load_features", bool, True)), {}


def _images_from_arrays(req: Request, n: int) -> list[np.ndarray | None]:
    images: list[np.ndarray | None] = [None] * n
    for key, a in req.arrays.items():
        if not key.startswith("image:"):
            raise BadRequest(f"command {req.command!r}: unexpected array {key!r} (images are 'image:<camera index>')")
        try:
            i = int(key.split(":", 1)[1])
        except ValueError:
            raise BadRequest(f"command {req.command!r}: bad image array name {key!r}") from None
        if not 0 <= i < n:
            raise BadRequest(f"command {req.command!r}: image {key!r} has no camera (there are {n})")
        images[i] = a
    return images


def cmd_set_cameras(server: Any, req: Request) -> tuple[dict, dict]:
    s = server.session
    if "path" in req.args:
        return s.load_cameras(arg(req, "path", str), arg(req, "images_dir", str, None)), {}
    if "orbit" in req.args:
        o = arg(req, "orbit", dict)
        values = []
        for key in ("n_views", "width", "height"):
            v = o.get(key)
            # strict: int("7") or int(7.9) would quietly turn a caller's mistake into a camera
            if not isinstance(v, int) or isinstance(v, bool):
                raise BadRequest(f"command 'set_cameras': orbit {key} must be an integer, got {P.short_repr(v)}")
            values.append(v)
        return s.orbit_cameras(*values), {}
    cams_json = arg(req, "cameras", list)
    cams = [wire_camera(req, c, f"cameras[{i}]") for i, c in enumerate(cams_json)]
    images = _images_from_arrays(req, len(cams))
    return s.set_cameras(cams, images), {}


def cmd_set_images(server: Any, req: Request) -> tuple[dict, dict]:
    s = server.session
    images = _images_from_arrays(req, len(s.cameras))
    merged = [new if new is not None else old for new, old in zip(images, s.images or [None] * len(images))]
    return s.set_cameras(list(s.cameras), merged), {}


def cmd_set_masks_source(server: Any, req: Request) -> tuple[dict, dict]:
    return server.session.set_masks_source(
        arg(req, "kind", str, choices=P.MASK_SOURCE_KINDS), checkpoint=arg(req, "checkpoint", str, None),
        model_type=arg(req, "model_type", str, None), folder=arg(req, "folder", str, None),
        options=arg(req, "options", dict, None)), {}


def cmd_prepare_masks(server: Any, req: Request) -> tuple[dict, dict]:
    return server.session.prepare_masks(progress=req.progress, cancel=req.cancel), {}


def cmd_train(server: Any, req: Request) -> tuple[dict, dict]:
    return server.session.train(
        arg(req, "settings", dict, {}), progress=req.progress, cancel=req.cancel,
        save_path=arg(req, "save_path", str, None), checkpoint_path=arg(req, "checkpoint_path", str, None),
        resume=arg(req, "resume", bool, False)), {}


def cmd_get_features(server: Any, req: Request) -> tuple[dict, dict]:
    t = server.session.features()
    return ({"settings": t.settings, "scene_hash": t.scene_hash, "path": server.session.features_path},
            {"features": t.features, "coarse_centers": t.coarse_centers, "fine_centers": t.fine_centers,
             "coarse_labels": t.coarse_labels, "fine_labels": t.fine_labels})


def cmd_load_features(server: Any, req: Request) -> tuple[dict, dict]:
    return server.session.load_features(arg(req, "path", str)), {}


def cmd_save_features(server: Any, req: Request) -> tuple[dict, dict]:
    return server.session.save_features(arg(req, "path", str)), {}


# ---------------------------------------------------------------------- queries


def _level(req: Request) -> str:
    return arg(req, "level", str, "coarse", choices=LEVELS)


def cmd_click(server: Any, req: Request) -> tuple[dict, dict]:
    t0 = time.perf_counter()
    res = server.session.click(camera_arg(req), arg(req, "u", float), arg(req, "v", float), _level(req))
    result, arrays = split_result(res)
    sel = arrays.get("selected", np.asarray(result.get("selected", []), dtype=np.int64))
    result["num_selected"] = int(np.size(sel))
    result["engine_ms"] = round((time.perf_counter() - t0) * 1000.0, 3)
    return result, arrays


def cmd_segment(server: Any, req: Request) -> tuple[dict, dict]:
    labels = server.session.segment(camera_arg(req), _level(req))
    return {"clusters": int(labels.max()) + 1 if labels.size else 0}, {"labels": labels}


def cmd_render(server: Any, req: Request) -> tuple[dict, dict]:
    what = arg(req, "what", str, "rgb", choices=("rgb", *LEVELS))
    return {}, server.session.render(camera_arg(req), what)


def build_commands() -> dict[str, Command]:
    table = [
        Command("version", cmd_version, "control", False, "engine, protocol and device info"),
        Command("hello", cmd_version, "control", False, "(again, once connected) same as version"),
        Command("ping", cmd_ping, "control", False, "liveness check (also the client's heartbeat)"),
        Command("status", cmd_status, "control", False, "running job and session summary"),
        Command("cancel", cmd_cancel, "control", False, "cancel the running job"),
        Command("shutdown", cmd_shutdown, "control", False, "stop the engine"),
        Command("load_scene", cmd_load_scene, "query", True, "load a .ply path or uploaded arrays"),
        Command("set_cameras", cmd_set_cameras, "query", True, "cameras from a file, orbit views or the wire"),
        Command("set_images", cmd_set_images, "query", True, "photos for the current cameras"),
        Command("set_masks_source", cmd_set_masks_source, "query", True, "builtin | sam | folder"),
        Command("prepare_masks", cmd_prepare_masks, "job", True, "two-level masks for every view"),
        Command("train", cmd_train, "job", True, "train Click-Gaussian features"),
        Command("get_features", cmd_get_features, "query", False, "features, clusters and labels"),
        Command("load_features", cmd_load_features, "query", True, "load a .clickgs.npz"),
        Command("save_features", cmd_save_features, "query", False, "write a .clickgs.npz"),
        Command("click", cmd_click, "query", False, "camera + pixel -> selection"),
        Command("segment", cmd_segment, "query", False, "segment everything for a view"),
        Command("render", cmd_render, "query", False, "render a view (rgb or features)"),
    ]
    return {c.name: c for c in table}
