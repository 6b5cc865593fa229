"""The Blender side of the engine: one :class:`EngineLink` per Blender session (``LINK``) that
starts or connects to the engine, runs training as a chain of engine calls, and hands results
to Blender — without ever blocking the UI.

Threads: launching / connecting run in a worker thread; engine calls return
:class:`engine.link.client.EngineFuture` s at once. Nothing here touches bpy off the main thread:
:meth:`EngineLink.poll` (called by a ``bpy.app.timers`` timer, :func:`ensure_timer`, or
directly by tests and scripts) looks at the futures and advances the state on the main thread,
and the training job's ``on_done`` callback (which writes the features onto the mesh) runs
there too.

States: ``stopped`` -> ``starting`` -> ``ready`` (-> ``stopped`` by :meth:`stop`, or ``failed``
when it could not start or the engine died: ``error`` says why, one line for the panel).
A training job: ``upload`` -> ``cameras`` -> ``masks source`` -> ``train`` (progress: iteration,
total, losses, ETA) -> ``features`` -> done / failed / cancelled.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bpy

from .engine.core.errors import Cancelled, EngineError
from .engine.link.client import EngineClient
from .engine.link.launcher import launch_engine

POLL_S = 0.2


@dataclass
class EngineConfig:
    """Where the engine runs. ``mode`` "local": launch ``python -m engine serve`` with the
    ``python`` interpreter (needs torch); "remote": connect to ``host:port`` with ``token`` (an
    engine started on a GPU machine, reached through an SSH tunnel)."""

    python: str = ""
    mode: str = "local"
    host: str = "127.0.0.1"
    port: int = 0
    token: str = ""
    device: str = "auto"


@dataclass
class TrainRequest:
    """A training run. ``scene``: GaussianScene built on the main thread from the mesh (rows =
    vertices); ``cameras``: a camera file on the engine's disk (COLMAP folder, cameras.json,
    transforms.json, .npz) with optional ``images_dir``, or None for ``orbit`` virtual views
    rendered from the splats (n_views, width, height); ``mask``: kind builtin | sam | folder with
    ``checkpoint`` / ``folder``; ``settings``: TrainSettings fields."""

    object_name: str
    scene: Any
    settings: dict[str, Any] = field(default_factory=dict)
    cameras_path: str | None = None
    images_dir: str | None = None
    orbit: tuple[int, int, int] = (24, 256, 256)
    mask_kind: str = "builtin"
    mask_checkpoint: str | None = None
    mask_folder: str | None = None


class TrainJob:
    """A running training chain (see the module docstring). Read ``phase``, ``progress``
    (latest engine progress dict), ``state`` (running | done | failed | cancelled), ``error``,
    ``result`` (TrainedFeatures) and ``summary`` from the main thread."""

    def __init__(self, link: "EngineLink", req: TrainRequest, on_done: Callable[["TrainJob"], None] | None,
                 on_provisional: Callable[["TrainJob"], None] | None = None) -> None:
        self.link = link
        self.req = req
        self.on_done = on_done
        # intermediate results: the engine announces one in a progress event; it is fetched
        # beside the running training (get_features is a query) and handed to ``on_provisional``
        # as ``provisional`` (TrainedFeatures) from the main thread
        self.on_provisional = on_provisional
        self.provisional: Any = None
        self._provisional_wanted = False
        self._provisional_future: Any = None
        self.state = "running"
        self.phase = "upload"
        self.progress: dict[str, Any] = {}
        self.error = ""
        self.result: Any = None
        self.summary: dict[str, Any] = {}
        self.warnings: list[str] = []  # non-fatal engine messages (e.g. a view without masks)
        self.started = time.monotonic()
        self.finished: float | None = None
        self._future: Any = None
        self._cancel_requested = False
        self._steps = self._plan()

    def _plan(self) -> list[tuple[str, Callable[[], Any]]]:
        c = self.link.client
        r = self.req
        steps: list[tuple[str, Callable[[], Any]]] = [("upload", lambda: c.upload_scene(r.scene, r.object_name))]
        if r.cameras_path:
            steps.append(("cameras", lambda: c.load_cameras(r.cameras_path, r.images_dir)))
        else:
            steps.append(("cameras", lambda: c.orbit_cameras(*r.orbit)))
        steps.append(("masks source", lambda: c.set_masks_source(r.mask_kind, checkpoint=r.mask_checkpoint,
                                                                  folder=r.mask_folder)))
        steps.append(("train", lambda: c.train(r.settings, on_progress=self._on_progress)))
        steps.append(("features", lambda: c.get_features()))
        return steps

    def _on_progress(self, data: dict[str, Any]) -> None:  # client reader thread: plain data only
        if data.get("phase") == "warning":
            self.warnings.append(str(data.get("message", "")))
            return
        if "provisional_result" in data:
            self._provisional_wanted = True
        self.progress = dict(data)

    @property
    def fraction(self) -> float:
        """0..1 for the progress bar (training iterations; 0 before)."""
        p = self.progress
        try:
            if p.get("phase") == "train" or "iteration" in p:
                return max(0.0, min(1.0, float(p.get("iteration", 0)) / max(1.0, float(p.get("total", 1)))))
            if "done" in p and "total" in p:
                return 0.0
        except (TypeError, ValueError):
            pass
        return 0.0 if self.state == "running" else 1.0

    def status_text(self) -> str:
        """One line for the panel / status bar."""
        if self.state == "done":
            s = self.summary
            return (f"Trained in {s.get('seconds', 0):.0f} s: {s.get('coarse_clusters', 0)} objects, "
                    f"{s.get('fine_clusters', 0)} parts")
        if self.state in ("failed", "cancelled"):
            return self.error
        p = self.progress
        ph = p.get("phase")
        if self.phase == "train" and ph in ("render", "masks", "images"):
            what = "rendering views" if ph == "render" else "masks"
            return f"Preparing {what} {p.get('done', 0)}/{p.get('total', '?')}"
        if self.phase == "train" and "iteration" in p:
            eta = p.get("eta_s")
            eta_txt = f", ETA {format_seconds(eta)}" if isinstance(eta, (int, float)) else ""
            loss = (p.get("losses") or {}).get("total")
            loss_txt = f", loss {loss:.3f}" if isinstance(loss, (int, float)) else ""
            return f"Training {p.get('iteration', 0)}/{p.get('total', '?')}{loss_txt}{eta_txt}"
        return f"{self.phase.capitalize()}…"

    def cancel(self) -> None:
        """Ask the engine to stop the running step (training stops between iterations)."""
        self._cancel_requested = True
        if self._future is not None and self.phase == "train":
            self._future.cancel_job()

    def poll(self) -> None:
        """Advance the chain (main thread)."""
        if self.state != "running":
            return
        self._poll_provisional()
        if self._future is None:
            if self._cancel_requested:
                self._finish("cancelled", "Training was cancelled")
                return
            self.phase, start = self._steps.pop(0)
            try:
                self._future = start()
            except EngineError as exc:
                self._finish("failed", f"Training failed ({self.phase}): {exc}")
            return
        if not self._future.done():
            return
        fut, self._future = self._future, None
        try:
            reply = fut.result()
        except Cancelled:
            self._finish("cancelled", "Training was cancelled; the mesh keeps its previous features, if any")
            return
        except ConnectionError as exc:
            self.link._engine_died(str(exc))
            self._finish("failed", f"The engine stopped during {self.phase}: {exc}. The scene is unchanged; "
                                   "start the engine and train again")
            return
        except EngineError as exc:
            self._finish("failed", f"Training failed ({self.phase}): {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - any other failure reaches the panel, not a traceback
            self._finish("failed", f"Training failed ({self.phase}): {exc.__class__.__name__}: {exc}")
            return
        if self.phase == "train":
            self.summary = dict(reply.result)
        if self.phase == "features":
            try:
                self.result = reply.features()
            except EngineError as exc:
                self._finish("failed", f"Training failed (features): {exc}")
                return
            self._finish("done", "")
            return
        if self._cancel_requested:
            self._finish("cancelled", "Training was cancelled")

    def _poll_provisional(self) -> None:
        if self.phase != "train":
            return
        fut = self._provisional_future
        if fut is None:
            client = self.link.client  # None once the connection was lost: the train step fails
            if self._provisional_wanted and self.on_provisional is not None and client is not None:
                self._provisional_wanted = False
                try:
                    self._provisional_future = client.get_features()
                except EngineError:
                    pass
            return
        if not fut.done():
            return
        self._provisional_future = None
        try:
            self.provisional = fut.result().features()
        except Exception:  # noqa: BLE001 - an intermediate result is optional; the final one follows
            return
        try:
            self.on_provisional(self)  # type: ignore[misc]
        except (EngineError, RuntimeError) as exc:  # RuntimeError: Blender refused a mode switch
            self.warnings.append(f"intermediate result not shown: {exc}")

    def _finish(self, state: str, error: str) -> None:
        self.state = state
        self.error = error
        self.finished = time.monotonic()
        if self.on_done is not None:
            try:
                self.on_done(self)
            except EngineError as exc:
                self.state, self.error = "failed", str(exc)


def describe_device(info: dict[str, Any]) -> str:
    """"CUDA (<gpu>)" / "CPU" / the raw value, from the engine's version info."""
    dev = info.get("device")
    if isinstance(dev, dict):
        return f"CUDA ({dev['gpu']})" if dev.get("gpu") else ("CUDA" if dev.get("cuda") else "CPU")
    if info.get("gpu"):
        return f"CUDA ({info['gpu']})"
    return str(dev or "CPU")


def format_seconds(s: float) -> str:
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


class EngineLink:
    """See the module docstring. Main-thread object; the worker thread only produces futures."""

    def __init__(self) -> None:
        self.state = "stopped"
        self.error = ""
        self.process: Any = None  # engine.link.launcher.EngineProcess when we launched it
        self.client: Any = None  # engine.link.client.EngineClient
        self.info: dict[str, Any] = {}
        self.job: TrainJob | None = None
        self._starting: concurrent.futures.Future | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickgs-link")

    # ------------------------------------------------------------------ lifecycle

    @property
    def ready(self) -> bool:
        return self.state == "ready" and self.client is not None and self.client.alive

    def status_text(self) -> str:
        if self.state == "ready":
            where = "remote" if self.process is None else f"pid {self.process.pid}"
            return f"Engine running ({where}; {describe_device(self.info)})"
        if self.state == "starting":
            return "Engine starting…"
        if self.state == "failed":
            return self.error
        return "Engine stopped"

    def start(self, config: EngineConfig) -> None:
        """Start (local) or connect to (remote) the engine in a worker thread; :meth:`poll`
        moves to ``ready`` or ``failed``. Config errors are raised at once."""
        if self.state in ("starting", "ready") and (self.state == "starting" or self.ready):
            return
        if config.mode == "local" and not config.python:
            self.state, self.error = "failed", ("No engine Python interpreter is configured: set it in "
                                                "Preferences > Add-ons > Click-Gaussian")
            raise EngineError(self.error)
        if config.mode == "remote" and (not config.port or not config.token):
            self.state, self.error = "failed", "Remote engine: set the port and token in the add-on preferences"
            raise EngineError(self.error)
        self._drop()
        self.state, self.error = "starting", ""
        self._starting = self._pool.submit(self._start_worker, config)

    @staticmethod
    def _start_worker(config: EngineConfig) -> tuple[Any, Any, dict[str, Any]]:
        if config.mode == "remote":
            client = EngineClient.connect(config.host, int(config.port), config.token, client_name="blender")
            proc = None
        else:
            proc = launch_engine(config.python, device=config.device)
            try:
                client = proc.connect()
            except BaseException:
                proc.stop()
                raise
        info = dict(client.engine_info)
        try:
            info.update(client.call("version", timeout=30.0).result)
        except EngineError:
            pass
        return proc, client, info

    def wait_ready(self, timeout: float = 180.0) -> bool:
        """Block until started or failed (scripts and tests; not for the UI)."""
        end = time.monotonic() + timeout
        while self.state == "starting" and time.monotonic() < end:
            if self._starting is not None:
                try:
                    self._starting.result(timeout=max(0.0, min(0.5, end - time.monotonic())))
                except (concurrent.futures.TimeoutError, Exception):  # noqa: BLE001 - poll() reports it
                    pass
            self.poll()
        return self.ready

    def stop(self) -> None:
        """Stop the engine we launched (a remote engine is only disconnected)."""
        if self.job is not None and self.job.state == "running":
            self.job._finish("cancelled", "Training stopped: the engine was stopped")
        client, proc = self.client, self.process
        self._drop()
        if client is not None and proc is not None:
            try:
                client.shutdown().result(timeout=5.0)
            except Exception:  # noqa: BLE001 - it may be gone already
                pass
        if client is not None:
            client.close()
        if proc is not None:
            proc.stop(timeout=10.0)
        self.state, self.error = "stopped", ""

    def _drop(self) -> None:
        self.client, self.process, self.info = None, None, {}

    def _engine_died(self, message: str) -> None:
        proc = self.process
        if proc is not None and not proc.alive():
            message = f"The engine stopped: {proc.describe_exit()}"
        self.state, self.error = "failed", message
        if self.client is not None:
            self.client.close()
        self._drop()

    # ------------------------------------------------------------------ polling

    def poll(self) -> bool:
        """Advance everything (main thread). Returns True while something is in flight."""
        if self.state == "starting" and self._starting is not None and self._starting.done():
            fut, self._starting = self._starting, None
            try:
                self.process, self.client, self.info = fut.result()
                self.state = "ready"
            except EngineError as exc:
                self.state, self.error = "failed", f"The engine could not start: {exc}"
            except Exception as exc:  # noqa: BLE001 - shown in the panel
                self.state, self.error = "failed", f"The engine could not start: {exc.__class__.__name__}: {exc}"
        elif self.state == "ready" and self.client is not None and not self.client.alive:
            self._engine_died("The engine connection was lost")
        if self.job is not None:
            self.job.poll()
        return self.state == "starting" or (self.job is not None and self.job.state == "running")

    # ------------------------------------------------------------------ training

    def train(self, req: TrainRequest, on_done: Callable[[TrainJob], None] | None = None,
              on_provisional: Callable[[TrainJob], None] | None = None) -> TrainJob:
        """Start a training chain (the engine must be ready)."""
        if self.job is not None and self.job.state == "running":
            raise EngineError("a training run is in progress: wait for it or cancel it")
        if not self.ready:
            raise EngineError("the engine is not running: start it first (Click-Gaussian panel > Start Engine)")
        self.job = TrainJob(self, req, on_done, on_provisional)
        self.job.poll()
        return self.job

    def run_until_idle(self, timeout: float = 3600.0, step: float = 0.05) -> None:
        """Poll until nothing is in flight (scripts and tests)."""
        end = time.monotonic() + timeout
        while self.poll():
            if time.monotonic() > end:
                raise EngineError(f"the engine did not finish within {timeout:g} s")
            time.sleep(step)


LINK = EngineLink()
_TIMER_ON = threading.Event()


def _timer() -> float | None:
    try:
        busy = LINK.poll()
    except Exception:  # noqa: BLE001 - a timer that raises is unregistered by Blender
        traceback.print_exc()
        busy = True
    _redraw()
    if busy:
        return POLL_S
    _TIMER_ON.clear()
    return None


def _redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def ensure_timer() -> None:
    """Make sure the polling timer runs (it stops by itself when nothing is in flight)."""
    if not _TIMER_ON.is_set() or not bpy.app.timers.is_registered(_timer):
        _TIMER_ON.set()
        bpy.app.timers.register(_timer, first_interval=POLL_S, persistent=True)


def register() -> None:
    pass


def unregister() -> None:
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
    _TIMER_ON.clear()
    LINK.stop()
