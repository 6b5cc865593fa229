"""Start the engine as a child process with a configured Python interpreter (standard library
only; runs inside Blender).

:func:`launch_engine` runs ``PYTHON -m engine serve --port 0 --token-stdin --exit-on-stdin-eof
--parent-pid <ours>``. When the folder holding this ``engine`` package holds the whole engine
(a checkout, or the extension's link to it), that folder is the working directory and first on
``PYTHONPATH``, so the engine that runs is the one beside this file. The extension zip bundles
only ``engine.core`` and ``engine.link`` (what Blender imports), so from an installed zip the
engine comes from the interpreter's own environment (``pip install`` of this repository) and the
partial copy is kept off its path. It writes a fresh random token on its stdin and keeps
the pipe open (the engine exits when the pipe closes, i.e. when this process dies, however it
dies), waits for the engine's ``{"ready": true, ...}`` line, and returns an
:class:`EngineProcess`. If the engine exits or stays silent instead, :class:`EngineStartError`
carries the engine's own last words (stderr tail: "torch is not installed in this Python",
"No module named engine", a wrong interpreter path, ...).
"""

from __future__ import annotations

import collections
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import EngineError


class EngineStartError(EngineError):
    """The engine process could not be started or did not become ready."""


def engine_root() -> str:
    """The folder containing this ``engine`` package."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _whole_engine_root() -> str | None:
    """:func:`engine_root` when it holds the whole engine (``python -m engine`` runs from it);
    None for the extension zip's torch-free part, which must not shadow the installed engine."""
    root = engine_root()
    return root if os.path.isfile(os.path.join(root, "engine", "__main__.py")) else None


def _child_cwd() -> str:
    return _whole_engine_root() or tempfile.gettempdir()


LOG_KEEP_DAYS = 14


def default_log_path() -> str:
    """A fresh log file in ``<temp>/clickgs/`` (engine logs older than LOG_KEEP_DAYS are removed)."""
    folder = os.path.join(tempfile.gettempdir(), "clickgs")
    os.makedirs(folder, exist_ok=True)
    cutoff = time.time() - LOG_KEEP_DAYS * 86400
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                if e.name.startswith("engine-") and e.name.endswith(".log") and e.stat().st_mtime < cutoff:
                    os.unlink(e.path)
    except OSError:
        pass  # cleaning up old logs is best effort
    return os.path.join(folder, f"engine-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{secrets.token_hex(2)}.log")


def _child_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("PYTHONHOME", "PYTHONEXECUTABLE", "PYTHONSTARTUP"):  # Blender's, not the engine's
        env.pop(key, None)
    root = _whole_engine_root()
    if root:
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("CLICKGS_TOKEN", None)  # the token goes through stdin
    env.update(extra or {})
    return env


@dataclass
class EngineProcess:
    """A running engine started by :func:`launch_engine`."""

    process: subprocess.Popen
    host: str
    port: int
    token: str
    log_path: str
    info: dict[str, Any]
    _stderr: collections.deque = field(default_factory=lambda: collections.deque(maxlen=60), repr=False)
    _stdout: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20), repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output_tail(self, lines: int = 15) -> str:
        """The engine's last lines on stderr (and stray stdout)."""
        text = list(self._stdout)[-5:] + list(self._stderr)[-lines:]
        return "\n".join(t.rstrip() for t in text if t.strip())

    def describe_exit(self, wait_s: float = 1.0) -> str:
        """A one-paragraph account of how the engine ended (for EngineGone messages). The
        socket closes a moment before the process is gone: wait up to ``wait_s`` for its exit."""
        try:
            code = self.process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            return f"engine pid {self.pid} still running; log: {self.log_path}"
        parts = [f"engine exited with code {code}"]
        if code < 0 and os.name != "nt":
            import signal

            try:
                parts[0] += f" ({signal.Signals(-code).name})"
            except ValueError:
                pass
        tail = self.output_tail(5)
        if tail:
            parts.append("it said: " + tail.replace("\n", " | "))
        parts.append(f"log: {self.log_path}")
        return "; ".join(parts)

    def connect(self, *, timeout: float = 10.0, heartbeat_s: float = 10.0) -> Any:
        """An authenticated :class:`engine.link.client.EngineClient` to this engine."""
        from .client import EngineClient

        return EngineClient.connect(self.host, self.port, self.token, timeout=timeout,
                                    diagnose=self.describe_exit, heartbeat_s=heartbeat_s)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the engine: close its stdin (it exits on end of file), then terminate, then kill.
        Returns its exit code."""
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        for action in (None, self.process.terminate, self.process.kill):
            if action is not None and self.process.poll() is None:
                try:
                    action()
                except OSError:
                    pass
            try:
                return self.process.wait(timeout=timeout / 2 if action is None else timeout / 4)
            except subprocess.TimeoutExpired:
                continue
        return self.process.poll()


def _drain(stream: Any, sink: collections.deque, ready: "collections.deque | None", ready_event: threading.Event | None) -> None:
    try:
        for line in iter(stream.readline, ""):
            if ready is not None and ready_event is not None and not ready_event.is_set():
                try:
                    obj = json.loads(line)
                except ValueError:
                    obj = None
                if isinstance(obj, dict) and obj.get("ready") is True:
                    ready.append(obj)
                    ready_event.set()
                    continue
            sink.append(line)
    except (OSError, ValueError):
        pass
    finally:
        if ready_event is not None:
            ready_event.set()  # the process ended (or closed stdout) before being ready


def launch_engine(python: str, *, host: str = "127.0.0.1", port: int = 0, log_path: str | None = None,
                  device: str = "auto", startup_timeout: float = 120.0, idle_timeout: float = 0.0,
                  heartbeat_timeout: float = 60.0, extra_args: list[str] | None = None, env: dict[str, str] | None = None) -> EngineProcess:
    """Start ``python -m engine serve`` and wait until it listens. ``python``: the engine's
    interpreter (it needs torch; Blender's own Python does not have it). ``heartbeat_timeout``:
    seconds of client silence after which the engine drops the client (0 = never); the same
    default as :class:`engine.serve.server.ServerConfig`."""
    if not python:
        raise EngineStartError("no engine Python interpreter is configured (set it in the add-on preferences)")
    exe = os.path.expanduser(python)
    if os.sep in exe or (os.altsep and os.altsep in exe):
        if not os.path.isfile(exe):
            raise EngineStartError(f"the engine Python {exe} does not exist")
        if not os.access(exe, os.X_OK):
            raise EngineStartError(f"the engine Python {exe} is not executable")
    log_path = os.path.abspath(log_path or default_log_path())
    token = secrets.token_hex(32)
    cmd = [exe, "-m", "engine", "serve", "--host", host, "--port", str(int(port)), "--log", log_path,
           "--parent-pid", str(os.getpid()), "--token-stdin", "--exit-on-stdin-eof", "--device", device]
    if idle_timeout:
        cmd += ["--idle-timeout", str(float(idle_timeout))]
    # explicit, as `serve` alone keeps a client forever: a Blender that vanished without closing
    # its socket must not hold the engine's only client slot (our client pings while idle)
    cmd += ["--heartbeat-timeout", str(float(heartbeat_timeout))]
    cmd += list(extra_args or [])
    kwargs: dict[str, Any] = {}
    if os.name == "nt":  # pragma: no cover - Windows only
        kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    else:
        kwargs["start_new_session"] = True  # Ctrl-C in Blender's terminal does not hit the engine
    try:
        proc = subprocess.Popen(cmd, cwd=_child_cwd(), env=_child_env(env), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                                errors="replace", bufsize=1, **kwargs)
    except OSError as exc:
        raise EngineStartError(f"cannot start the engine with {exe}: {exc.strerror or exc}") from None
    ep = EngineProcess(proc, host, 0, token, log_path, {})
    ready: collections.deque = collections.deque(maxlen=1)
    ready_event = threading.Event()
    threading.Thread(target=_drain, args=(proc.stdout, ep._stdout, ready, ready_event), daemon=True,
                     name="clickgs-engine-stdout").start()
    stderr_reader = threading.Thread(target=_drain, args=(proc.stderr, ep._stderr, None, None), daemon=True,
                                     name="clickgs-engine-stderr")
    stderr_reader.start()
    try:
        assert proc.stdin is not None
        proc.stdin.write(token + "\n")
        proc.stdin.flush()
    except OSError:
        pass  # it died already; reported below with its own words
    ready_event.wait(startup_timeout)
    if not ready:
        if proc.poll() is None:
            ep.stop(timeout=5.0)
            raise EngineStartError(f"the engine did not become ready within {startup_timeout:g} s "
                                   f"(log: {log_path}){_tail(ep)}")
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            pass
        # the reader ends at the pipe's end of file: waiting for it (not a fixed pause, which a
        # busy machine outlasts) makes sure the engine's last words are in the message
        stderr_reader.join(timeout=10.0)
        raise EngineStartError(f"the engine failed to start with {exe} (exit code {proc.poll()}){_tail(ep)}")
    ep.info = dict(ready[0])
    ep.port = int(ep.info["port"])
    return ep


def _tail(ep: EngineProcess) -> str:
    tail = ep.output_tail(8)
    return f": {tail}" if tail else ""


def check_interpreter(python: str, timeout: float = 120.0) -> dict[str, Any]:
    """What an interpreter offers the engine (for a "check" button): python, torch, cuda, gsplat
    versions. Raises EngineStartError with the interpreter's own error text when it cannot run
    the engine (no torch, not Python 3.11+, not found)."""
    code = ("import json, sys, importlib.metadata as m\n"
            "out = {'python': sys.version.split()[0], 'executable': sys.executable}\n"
            "import torch\n"
            "out['torch'] = torch.__version__; out['cuda'] = torch.cuda.is_available()\n"
            "out['gpu'] = torch.cuda.get_device_name(0) if out['cuda'] else None\n"
            "for p in ('gsplat', 'numpy', 'plyfile', 'hdbscan', 'segment-anything'):\n"
            "    try: out[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: out[p] = None\n"
            "import engine; out['engine'] = engine.__version__\n"
            "print(json.dumps(out))\n")
    exe = os.path.expanduser(python)
    try:
        res = subprocess.run([exe, "-c", code], cwd=_child_cwd(), env=_child_env(None), capture_output=True,
                             text=True, timeout=timeout)
    except FileNotFoundError:
        raise EngineStartError(f"the engine Python {exe} does not exist") from None
    except OSError as exc:
        raise EngineStartError(f"cannot run {exe}: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise EngineStartError(f"{exe} did not answer within {timeout:g} s") from None
    if res.returncode != 0:
        last = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
        raise EngineStartError(f"{exe} cannot run the engine: {last[-1] if last else 'exit code %d' % res.returncode}")
    return json.loads(res.stdout.strip().splitlines()[-1])


if __name__ == "__main__":  # manual check: python -m engine.link.launcher [PYTHON]
    print(json.dumps(check_interpreter(sys.argv[1] if len(sys.argv) > 1 else sys.executable), indent=2))
