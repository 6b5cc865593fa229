"""The client side of the engine socket (standard library + numpy; runs inside Blender).

Every call returns an :class:`EngineFuture` at once; a writer thread sends requests, a reader
thread drains replies and progress events, and a housekeeping thread expires calls that hear
nothing from the engine for their ``timeout`` and pings the engine now and then. Nothing here
touches bpy: a Blender add-on polls ``future.done()`` / ``future.progress`` from a
``bpy.app.timers`` callback. The ``on_progress`` / ``add_done_callback`` callbacks run on the
reader thread: keep them short, and never wait in them for another engine call (the reply
could not be read until the callback returns).

Errors:

- :class:`EngineGone` (a ``ConnectionError``): the engine closed the connection, crashed, or
  could not be reached. Every pending and later call fails with it, with the engine's own last
  words when a launcher supplied them (``diagnose``).
- :class:`EngineTimeout` (a ``TimeoutError``): the engine said nothing about a call for its
  ``timeout`` seconds (progress events count as something, so a long job with progress never
  times out while it progresses).
- :class:`RemoteError`: the engine answered with an error; ``.type`` (exception class name on
  the engine side), ``str(err)`` (one-line message for the user) and ``.remote_traceback`` (for
  the console). Errors of the engine's own family (:mod:`engine.core.errors`, e.g. ``Cancelled``,
  ``TrainingError``) are raised as that class (which is also reachable as ``err.type``), with
  ``remote_traceback`` attached.

Example::

    client = EngineClient.connect("127.0.0.1", port, token)
    client.load_scene("/data/fox.ply").result(timeout=60)
    client.orbit_cameras(24, 256, 256).result(timeout=60)
    job = client.train({"iterations": 3000}, on_progress=print)
    ...                                   # job.progress, job.done(), job.cancel_job()
    feats = client.get_features().result(timeout=60).features()
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import __version__
from ..core import errors as _errors
from . import protocol as P
from ..core.cameras import Camera
from ..core.errors import EngineError

log = logging.getLogger("clickgs.client")

DEFAULT_TIMEOUT_S = 60.0  # silence allowed for a query
JOB_TIMEOUT_S = 900.0  # silence allowed for a job between progress events (SAM on CPU is slow)


class EngineGone(EngineError, ConnectionError):
    """The engine is not there any more (or never was)."""


class EngineTimeout(EngineError, TimeoutError):
    """The engine did not answer a call in time."""


class RemoteError(EngineError):
    """An error reply from the engine that is not one of the engine's own error classes."""

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(message)
        self.type = type_name
        self.remote_traceback = remote_traceback


def remote_exception(error: Mapping[str, Any]) -> EngineError:
    """The local exception for an error reply's ``error`` object."""
    type_name = str(error.get("type", "Error"))
    message = str(error.get("message", "the engine reported an error"))
    tb = str(error.get("traceback", ""))
    cls = getattr(_errors, type_name, None)
    if isinstance(cls, type) and issubclass(cls, EngineError):
        exc: EngineError = cls(message)
    else:
        exc = RemoteError(type_name, message, tb)
    exc.type = type_name  # type: ignore[attr-defined]
    exc.remote_traceback = tb  # type: ignore[attr-defined]
    return exc


@dataclass
class Reply:
    """A successful reply: ``result`` (JSON fields) and ``arrays`` (numpy, by name).
    ``reply[key]`` looks in arrays first, then in result."""

    command: str
    result: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        if key in self.arrays:
            return self.arrays[key]
        return self.result[key]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def features(self) -> Any:
        """For a ``get_features`` reply: an :class:`engine.core.features.TrainedFeatures`."""
        from ..core.features import TrainedFeatures

        a = self.arrays
        return TrainedFeatures(a["features"], a["coarse_centers"], a["fine_centers"], a["coarse_labels"],
                               a["fine_labels"], settings=dict(self.result.get("settings") or {}),
                               scene_hash=str(self.result.get("scene_hash", "")))


class EngineFuture(concurrent.futures.Future):
    """A pending engine call. ``result(timeout)`` -> :class:`Reply` (or raises the call's
    error); ``progress`` is the latest progress event's data (dict, empty before any);
    ``cancel_job()`` asks the engine to cancel this job (its result then raises
    :class:`engine.core.errors.Cancelled`)."""

    def __init__(self, client: "EngineClient", request_id: int, command: str, timeout: float | None,
                 on_progress: Callable[[dict[str, Any]], None] | None) -> None:
        super().__init__()
        self.client = client
        self.request_id = request_id
        self.command = command
        self.timeout = timeout
        self.on_progress = on_progress
        self.progress: dict[str, Any] = {}
        self.events = 0
        self.sent_at = time.monotonic()
        self.last_heard = self.sent_at

    def result(self, timeout: float | None = None) -> Any:
        if not self.done() and threading.current_thread() is self.client._threads[0]:
            raise EngineError(f"cannot wait for {self.command!r} inside a client callback: its reply is read by the "
                              "thread running the callback (use add_done_callback instead)")
        return super().result(timeout)

    def cancel_job(self) -> "EngineFuture":
        """Ask the engine to cancel this request's job; returns the cancel call's future."""
        return self.client.cancel(self.request_id)

    def __repr__(self) -> str:
        return f"<EngineFuture {self.command} #{self.request_id} {self._state}>"


class EngineClient:
    """A connection to an engine. Create with :meth:`connect`. Thread-safe: any thread may
    call; replies are matched to calls by request id."""

    def __init__(self, sock: socket.socket, *, engine_info: dict[str, Any], diagnose: Callable[[], str] | None = None,
                 heartbeat_s: float = 10.0, max_frame_bytes: int = P.DEFAULT_MAX_FRAME_BYTES) -> None:
        self._sock = sock
        self.engine_info = engine_info
        self._diagnose = diagnose
        self._max_frame = max_frame_bytes
        self._ids = itertools.count(1)
        self._pending: dict[int, EngineFuture] = {}
        self._lock = threading.Lock()
        self._outbox: queue.Queue = queue.Queue()
        self._closed = threading.Event()
        self._gone: EngineGone | None = None
        self._heartbeat_s = heartbeat_s
        self._last_sent = time.monotonic()
        self._last_words = ""  # the engine's last error about no call of ours (why it closed)
        self._threads = [
            threading.Thread(target=self._reader, name="clickgs-client-reader", daemon=True),
            threading.Thread(target=self._writer, name="clickgs-client-writer", daemon=True),
            threading.Thread(target=self._housekeeper, name="clickgs-client-housekeeper", daemon=True),
        ]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ connecting

    @classmethod
    def connect(cls, host: str, port: int, token: str, *, timeout: float = 10.0, client_name: str = "",
                diagnose: Callable[[], str] | None = None, heartbeat_s: float = 10.0) -> "EngineClient":
        """Connect and authenticate (challenge -> hello). Raises :class:`EngineGone` when the
        engine cannot be reached, a :class:`RemoteError`/engine error when it refuses us."""
        where = f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise EngineGone(f"cannot reach the engine at {where}: {exc.strerror or exc}{_diag(diagnose)}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(timeout)
            challenge = P.recv_message(sock, P.PRE_AUTH_MAX_FRAME_BYTES)
            if challenge is None:
                raise EngineGone(f"the engine at {where} closed the connection before greeting it (the engine may be "
                                 f"stopping or refusing connections){_diag(diagnose)}")
            if challenge.kind != "event" or challenge.header.get("event") != "challenge":
                if challenge.kind == "reply" and not challenge.header.get("ok", True):
                    raise remote_exception(challenge.header.get("error") or {})  # e.g. EngineBusy
                raise EngineGone(f"{where} answered with a {challenge.kind} {challenge.command!r} instead of the "
                                 f"engine's challenge (another program on this port?){_diag(diagnose)}")
            data = challenge.header.get("data") or {}
            nonce = data.get("nonce")
            if not isinstance(nonce, str):
                raise EngineGone(f"{where} sent a malformed challenge")
            if data.get("protocol") != P.PROTOCOL_VERSION:
                raise EngineError(f"the engine at {where} speaks protocol {data.get('protocol')!r}, this add-on "
                                  f"speaks {P.PROTOCOL_VERSION}: use the engine shipped with this add-on")
            P.send_message(sock, P.request_header(0, "hello", {
                "protocol": P.PROTOCOL_VERSION, "auth": P.auth_digest(token, nonce),
                "client": client_name or f"clickgs-client {__version__}"}))
            reply = P.recv_message(sock, P.DEFAULT_MAX_FRAME_BYTES)
            if reply is None:
                raise EngineGone(f"the engine at {where} closed the connection during the handshake without saying "
                                 f"why{_diag(diagnose)}")
            if not reply.header.get("ok"):
                raise remote_exception(reply.header.get("error") or {})
            sock.settimeout(None)
        except socket.timeout:
            sock.close()
            raise EngineTimeout(f"the engine at {where} did not complete the handshake within {timeout:g} s") from None
        except P.ProtocolError as exc:
            sock.close()
            raise EngineGone(f"{where} is not a Click-Gaussian engine ({exc})") from None
        except OSError as exc:
            sock.close()
            raise EngineGone(f"lost the engine at {where} during the handshake: {exc}{_diag(diagnose)}") from None
        except BaseException:
            sock.close()
            raise
        info = dict(reply.header.get("result") or {})
        server_limit = info.get("heartbeat_timeout_s")
        if heartbeat_s and isinstance(server_limit, (int, float)) and server_limit > 0:
            # ping often enough for this engine's limit even if the caller asked for less
            heartbeat_s = min(heartbeat_s, server_limit / 4)
        return cls(sock, engine_info=info, diagnose=diagnose,
                   heartbeat_s=heartbeat_s, max_frame_bytes=int(reply.header["result"].get("max_frame_bytes",
                                                                                           P.DEFAULT_MAX_FRAME_BYTES)))

    # ------------------------------------------------------------------ calls

    @property
    def alive(self) -> bool:
        return not self._closed.is_set()

    def call_async(self, command: str, args: Mapping[str, Any] | None = None,
                   arrays: Mapping[str, Any] | None = None, *, timeout: float | None = DEFAULT_TIMEOUT_S,
                   on_progress: Callable[[dict[str, Any]], None] | None = None) -> EngineFuture:
        """Send a request; returns its future at once. ``timeout``: seconds the engine may stay
        silent about this call (None = forever; progress events reset the clock)."""
        rid = next(self._ids)
        fut = EngineFuture(self, rid, command, timeout, on_progress)
        fut.set_running_or_notify_cancel()
        with self._lock:
            if self._gone is not None:
                fut.set_exception(self._gone)
                return fut
            self._pending[rid] = fut
        self._outbox.put((fut, P.request_header(rid, command, args), dict(arrays or {})))
        return fut

    def call(self, command: str, args: Mapping[str, Any] | None = None, arrays: Mapping[str, Any] | None = None,
             *, timeout: float | None = DEFAULT_TIMEOUT_S) -> Reply:
        """Blocking :meth:`call_async` (do not use on Blender's main thread for long work)."""
        return self.call_async(command, args, arrays, timeout=timeout).result()

    def close(self) -> None:
        """Close the connection (pending calls fail with EngineGone). Does not stop the engine."""
        self._mark_gone(EngineGone("the connection to the engine was closed by this client"))

    def __enter__(self) -> "EngineClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ commands

    def status(self, *, timeout: float = 10.0) -> EngineFuture:
        return self.call_async("status", timeout=timeout)

    def ping(self, *, timeout: float = 10.0) -> EngineFuture:
        return self.call_async("ping", timeout=timeout)

    def cancel(self, request_id: int | None = None, *, timeout: float = 10.0) -> EngineFuture:
        """Cancel the running job (only if it is ``request_id``, when given)."""
        return self.call_async("cancel", {"id": request_id}, timeout=timeout)

    def shutdown(self, *, timeout: float = 10.0) -> EngineFuture:
        return self.call_async("shutdown", timeout=timeout)

    def load_scene(self, path: str, *, load_features: bool = True, timeout: float = 300.0) -> EngineFuture:
        """A .ply on the engine's disk (absolute path)."""
        return self.call_async("load_scene", {"path": path, "load_features": load_features}, timeout=timeout)

    def upload_scene(self, scene: Any, name: str = "uploaded scene", *, timeout: float = 300.0) -> EngineFuture:
        """Send a :class:`engine.core.scene.GaussianScene` (or a dict of its arrays) over the socket."""
        arrays = dict(scene) if isinstance(scene, Mapping) else {
            "means": scene.means, "scales": scene.scales, "quats": scene.quats, "opacities": scene.opacities,
            "sh_dc": scene.sh_dc, "sh_rest": scene.sh_rest, **{f"extra:{k}": v for k, v in scene.extra.items()}}
        return self.call_async("load_scene", {"name": name}, arrays, timeout=timeout)

    def set_cameras(self, cameras: list[Camera], images: list[np.ndarray | None] | None = None,
                    *, timeout: float = 120.0) -> EngineFuture:
        arrays = {f"image:{i}": im for i, im in enumerate(images or []) if im is not None}
        return self.call_async("set_cameras", {"cameras": [P.camera_to_wire(c) for c in cameras]}, arrays,
                               timeout=timeout)

    def load_cameras(self, path: str, images_dir: str | None = None, *, timeout: float = 300.0) -> EngineFuture:
        return self.call_async("set_cameras", {"path": path, "images_dir": images_dir}, timeout=timeout)

    def orbit_cameras(self, n_views: int, width: int, height: int, *, timeout: float = 60.0) -> EngineFuture:
        return self.call_async("set_cameras", {"orbit": {"n_views": n_views, "width": width, "height": height}},
                               timeout=timeout)

    def set_masks_source(self, kind: str, *, checkpoint: str | None = None, model_type: str | None = None,
                         folder: str | None = None, options: dict[str, Any] | None = None,
                         timeout: float = 120.0) -> EngineFuture:
        return self.call_async("set_masks_source", {"kind": kind, "checkpoint": checkpoint, "model_type": model_type,
                                                    "folder": folder, "options": options}, timeout=timeout)

    def prepare_masks(self, *, on_progress: Callable[[dict[str, Any]], None] | None = None,
                      timeout: float = JOB_TIMEOUT_S) -> EngineFuture:
        return self.call_async("prepare_masks", timeout=timeout, on_progress=on_progress)

    def train(self, settings: Mapping[str, Any] | None = None, *, save_path: str | None = None,
              checkpoint_path: str | None = None, resume: bool = False,
              on_progress: Callable[[dict[str, Any]], None] | None = None,
              timeout: float = JOB_TIMEOUT_S) -> EngineFuture:
        return self.call_async("train", {"settings": dict(settings or {}), "save_path": save_path,
                                         "checkpoint_path": checkpoint_path, "resume": resume},
                               timeout=timeout, on_progress=on_progress)

    def get_features(self, *, timeout: float = 120.0) -> EngineFuture:
        """Reply arrays features f16 [N,24], coarse/fine centres and labels; ``.features()``."""
        return self.call_async("get_features", timeout=timeout)

    def load_features(self, path: str, *, timeout: float = 120.0) -> EngineFuture:
        return self.call_async("load_features", {"path": path}, timeout=timeout)

    def click(self, camera: Camera | int, u: float, v: float, level: str = "coarse",
              *, timeout: float = 30.0) -> EngineFuture:
        """Pixel position (u, v) in ``camera`` (x right, y down) -> reply with ``selected``
        (Gaussian indices), ``clusters``, ``similarity``, ``feature``."""
        return self.call_async("click", {"camera": _wire_camera(camera), "u": float(u), "v": float(v),
                                         "level": level}, timeout=timeout)

    def segment(self, camera: Camera | int, level: str = "coarse", *, timeout: float = 120.0) -> EngineFuture:
        """Reply array ``labels`` int32 [H, W] (cluster id per pixel, -1 background)."""
        return self.call_async("segment", {"camera": _wire_camera(camera), "level": level}, timeout=timeout)

    def render(self, camera: Camera | int, what: str = "rgb", *, timeout: float = 120.0) -> EngineFuture:
        """Reply arrays ``image`` float32 [H,W,C], ``alpha`` and ``depth`` float32 [H,W]."""
        return self.call_async("render", {"camera": _wire_camera(camera), "what": what}, timeout=timeout)

    # ------------------------------------------------------------------ threads

    def _gone_error(self, what: str) -> EngineGone:
        said = f"; it said: {self._last_words}" if self._last_words else ""
        return EngineGone(f"the engine is gone: {what}{said}{_diag(self._diagnose)}")

    def _mark_gone(self, exc: EngineGone) -> None:
        with self._lock:
            if self._gone is None:
                self._gone = exc
            pending, self._pending = self._pending, {}
        self._closed.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._sock.close()
        except OSError:
            pass
        self._outbox.put(None)
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(self._gone)

    def _writer(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None or self._closed.is_set():
                return
            fut, header, arrays = item
            try:
                bufs = P.encode_frame(header, arrays)
                size = sum(len(b) for b in bufs)
                if size > self._max_frame:
                    raise ValueError(f"the request is {size / 2**20:.1f} MiB, more than the engine accepts "
                                     f"({self._max_frame / 2**20:.1f} MiB; see its --max-frame-mb)")
                P.send_buffers(self._sock, bufs)
                self._last_sent = time.monotonic()
            except (TypeError, ValueError) as exc:  # bad arrays or header: this call's fault only
                with self._lock:
                    self._pending.pop(fut.request_id, None)
                if not fut.done():
                    fut.set_exception(EngineError(f"cannot send {fut.command!r}: {exc}"))
            except OSError as exc:
                self._mark_gone(self._gone_error(f"sending {fut.command!r} failed ({exc})"))
                return

    def _reader(self) -> None:
        try:
            while not self._closed.is_set():
                msg = P.recv_message(self._sock, self._max_frame)
                if msg is None:
                    self._mark_gone(self._gone_error("it closed the connection"))
                    return
                self._dispatch(msg)
        except P.ProtocolError as exc:
            self._mark_gone(self._gone_error(f"it sent an unreadable frame ({exc})"))
        except OSError as exc:
            if not self._closed.is_set():
                self._mark_gone(self._gone_error(f"the connection broke ({exc.strerror or exc})"))
        except Exception as exc:  # noqa: BLE001 - e.g. MemoryError; never leave calls hanging
            self._mark_gone(self._gone_error(f"reading its reply failed ({exc.__class__.__name__}: {exc})"))

    def _dispatch(self, msg: P.Message) -> None:
        h = msg.header
        with self._lock:
            # A reply takes its call out of the table in the same step as finding it: whoever
            # removes a call (this reader, the housekeeper's timeout, _mark_gone, the writer) is
            # the only one to complete it, so a reply racing its timeout never completes it twice.
            fut = self._pending.pop(h["id"], None) if h["kind"] == "reply" else self._pending.get(h["id"])
        if fut is None:
            if h["kind"] == "reply" and not h.get("ok", True):  # an error about no call of ours
                error = h.get("error") or {}
                if h["id"] == 0:  # about the connection (not a late reply to a call that timed out)
                    self._last_words = f"{error.get('type', 'Error')}: {error.get('message')}"
                log.warning("engine: %s: %s", error.get("type", "Error"), error.get("message"))
            return
        fut.last_heard = time.monotonic()
        if h["kind"] == "event":
            if h.get("event") == "progress":
                data = h.get("data") or {}
                fut.progress = data
                fut.events += 1
                if fut.on_progress is not None:
                    try:
                        fut.on_progress(data)
                    except Exception:  # noqa: BLE001 - a UI callback must not kill the reader
                        log.exception("progress callback of %r failed", fut.command)
            return
        if fut.done():
            return
        if h.get("ok"):
            fut.set_result(Reply(h["command"], dict(h.get("result") or {}), msg.arrays))
        else:
            fut.set_exception(remote_exception(h.get("error") or {}))

    def _housekeeper(self) -> None:
        while not self._closed.wait(0.2):
            now = time.monotonic()
            expired = []
            with self._lock:
                for rid, fut in list(self._pending.items()):
                    if fut.timeout is not None and now - fut.last_heard > fut.timeout:
                        expired.append(self._pending.pop(rid))
            for fut in expired:
                if not fut.done():
                    fut.set_exception(EngineTimeout(
                        f"the engine did not answer {fut.command!r} within {fut.timeout:g} s{_diag(self._diagnose)}"))
            if self._heartbeat_s and now - self._last_sent > self._heartbeat_s:
                self._last_sent = now
                self.call_async("ping", timeout=max(30.0, 3 * self._heartbeat_s))


def _wire_camera(camera: Camera | int) -> dict[str, Any]:
    if isinstance(camera, Camera):
        return P.camera_to_wire(camera)
    if isinstance(camera, (int, np.integer)) and not isinstance(camera, bool):
        return {"index": int(camera)}
    raise TypeError(f"camera must be an engine.core.cameras.Camera or an index, got {type(camera).__name__}")


def _diag(diagnose: Callable[[], str] | None) -> str:
    if diagnose is None:
        return ""
    try:
        text = diagnose()
    except Exception:  # noqa: BLE001 - diagnostics are best effort
        return ""
    return f" ({text})" if text else ""
