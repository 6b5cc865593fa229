"""The launcher and the client against real engine processes: start-up errors in the engine's
own words, no orphans however the launcher ends, an engine killed or frozen mid-job reported
clearly. Every wait is bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine.link.client import EngineClient, EngineGone, EngineTimeout
from engine.link.launcher import EngineStartError, check_interpreter, engine_root, launch_engine

from _proc import pid_running as _pid_running

REPO = Path(__file__).resolve().parents[1]
TOKEN = "client-test-token-" + "cd" * 16

# An engine process with an extra long job ("slow_job") for fault tests.
HARNESS = textwrap.dedent(
    """
    import json, os, sys, time
    from engine.core.errors import Cancelled
    from engine.serve.server import COMMANDS, EngineServer, ServerConfig
    from engine.serve.commands import Command, arg
    from engine.serve.session import EngineSession

    def slow(server, req):
        n = arg(req, "steps", int, 100000)
        for i in range(n):
            if req.cancel.is_set():
                raise Cancelled("cancelled")
            req.progress({"iteration": i + 1, "total": n})
            time.sleep(0.01)
        return {"steps": n}, {}

    srv = EngineServer(ServerConfig(token=os.environ["CLICKGS_TOKEN"]), EngineSession(device="cpu"),
                       {**COMMANDS, "slow_job": Command("slow_job", slow, "job", True)})
    print(json.dumps({"ready": True, "port": srv.bind()}), flush=True)
    srv.serve_forever()
    """
)


def _stop_process(pid: int, timeout: float = 30.0) -> None:
    """SIGSTOP ``pid`` and return once every one of its threads is stopped. kill() returns as
    soon as the signal is queued: on a busy machine one of the engine's threads can still wake
    for a request that arrives next and answer it before the group stop reaches it."""
    os.kill(pid, signal.SIGSTOP)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        states = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:
                continue  # a thread that ended meanwhile
        if states and all(s in "tT" for s in states):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not stop within {timeout:g} s of SIGSTOP")


def _wait_gone(pid: int, timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not _pid_running(pid):
            return True
        time.sleep(0.05)
    return False


def _harness() -> tuple[subprocess.Popen, int]:
    env = dict(os.environ, CLICKGS_TOKEN=TOKEN, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", HARNESS], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    return proc, json.loads(line)["port"]


@pytest.fixture()
def engine():
    ep = launch_engine(sys.executable, startup_timeout=120)
    yield ep
    ep.stop(timeout=10)
    assert not _pid_running(ep.pid)


def test_launch_connect_and_shutdown_leaves_no_process(engine) -> None:
    assert engine.info["ready"] and engine.info["protocol"] == 1 and "torch" in engine.info
    assert Path(engine.log_path).is_file()
    assert TOKEN not in " ".join(engine.process.args)  # never on the command line
    assert engine.token not in " ".join(engine.process.args)
    c = engine.connect()
    assert c.engine_info["pid"] == engine.pid and c.engine_info["log"] == engine.log_path
    assert c.status().result(10)["job"] is None
    assert c.shutdown().result(10)["stopping"]
    assert engine.process.wait(timeout=20) == 0
    assert _wait_gone(engine.pid)
    with pytest.raises(EngineGone, match="engine is gone"):
        c.ping().result(10)
    assert "shutdown requested by the client" in Path(engine.log_path).read_text()


def test_engine_exits_when_the_launcher_drops_its_pipe(engine) -> None:
    engine.process.stdin.close()
    assert engine.process.wait(timeout=20) == 0
    assert "stdin was closed" in Path(engine.log_path).read_text()


def test_engine_exits_when_its_launching_process_is_killed(tmp_path: Path) -> None:
    code = ("import sys, time\nfrom engine.link.launcher import launch_engine\n"
            "ep = launch_engine(sys.executable)\nprint(ep.pid, ep.log_path, flush=True)\ntime.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        line = parent.stdout.readline().split()
        assert line, "the launching process did not start an engine"
        pid, log_path = int(line[0]), line[1]
        assert _pid_running(pid)
        parent.send_signal(signal.SIGKILL)  # no cleanup code runs in the launcher
        parent.wait(10)
        assert _wait_gone(pid, 20), "engine left running after its launcher died"
        text = Path(log_path).read_text()
        assert "stdin was closed" in text or "has exited" in text
    finally:
        if parent.poll() is None:
            parent.kill()


def test_engine_killed_mid_job_is_reported_clearly() -> None:
    proc, port = _harness()
    try:
        def diagnose() -> str:  # as EngineProcess.describe_exit does
            try:
                code = proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                code = None
            return f"engine exited with code {code}" if code is not None else "engine still running"

        c = EngineClient.connect("127.0.0.1", port, TOKEN, timeout=10, diagnose=diagnose, heartbeat_s=0)
        job = c.call_async("slow_job", timeout=30)
        end = time.monotonic() + 10
        while not job.progress and time.monotonic() < end:
            time.sleep(0.02)
        assert job.progress
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        with pytest.raises(EngineGone, match=r"engine is gone.*engine exited with code -9"):
            job.result(10)
        t0 = time.monotonic()
        with pytest.raises(EngineGone):
            c.status().result(10)  # later calls fail at once, not after a timeout
        assert time.monotonic() - t0 < 2
    finally:
        if proc.poll() is None:
            proc.kill()


def test_frozen_engine_times_out_instead_of_hanging() -> None:
    proc, port = _harness()
    try:
        c = EngineClient.connect("127.0.0.1", port, TOKEN, timeout=60, heartbeat_s=0)
        assert c.ping(timeout=60).result(60)
        try:
            _stop_process(proc.pid)  # frozen for certain before the request is sent
            with pytest.raises(EngineTimeout, match="did not answer 'status' within 1 s"):
                c.status(timeout=1.0).result(60)
        finally:
            proc.send_signal(signal.SIGCONT)
        assert c.ping(timeout=60).result(60)  # the connection survives a late engine
        c.shutdown(timeout=60).result(60)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_launcher_reports_the_engines_own_error_text(tmp_path: Path) -> None:
    fake = tmp_path / "site" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'torch' (test stand-in)\")\n")
    with pytest.raises(EngineStartError, match=r"torch is not installed in this Python"):
        launch_engine(sys.executable, env={"PYTHONPATH": str(tmp_path / "site")}, startup_timeout=300)
    with pytest.raises(EngineStartError, match="does not exist"):
        launch_engine(str(tmp_path / "no" / "python"))
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        with pytest.raises(EngineStartError, match="cannot listen on 127.0.0.1:"):
            launch_engine(sys.executable, port=taken.getsockname()[1], startup_timeout=300)
    with pytest.raises(EngineStartError, match="failed to start"):
        launch_engine("/bin/false")
    with pytest.raises(EngineStartError, match="no engine Python"):
        launch_engine("")


def test_serve_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CLICKGS_TOKEN"}
    res = subprocess.run([sys.executable, "-m", "engine", "serve", "--log", str(tmp_path / "e.log")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 2
    assert "no token" in res.stderr and "Traceback" not in res.stderr


def test_hand_started_engine_with_generated_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CLICKGS_TOKEN"}
    proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--generate-token", "--idle-timeout", "60",
                             "--log", str(tmp_path / "e.log")], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        ready = json.loads(proc.stdout.readline())
        assert len(ready["token"]) == 64 and ready["token"] not in " ".join(proc.args)
        with EngineClient.connect("127.0.0.1", ready["port"], ready["token"], timeout=10, heartbeat_s=0) as c:
            assert c.status().result(10)["job"] is None
            c.shutdown().result(10)
        # a generous bound: on a loaded machine the interpreter's exit alone can take seconds
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_check_interpreter() -> None:
    info = check_interpreter(sys.executable)
    assert info["torch"] and info["engine"] and info["numpy"]
    with pytest.raises(EngineStartError, match="does not exist"):
        check_interpreter("/nonexistent/python3")


def test_engine_root_holds_the_engine_package() -> None:
    assert (Path(engine_root()) / "engine" / "__main__.py").is_file()


def test_partial_engine_copy_stays_off_the_child_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the extension zip holds only engine.core and engine.link: the engine that runs is the one
    # installed in the engine Python, so the partial copy must not shadow it
    from engine.link import launcher

    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "__init__.py").write_text("")
    monkeypatch.setattr(launcher, "engine_root", lambda: str(tmp_path))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    assert "PYTHONPATH" not in launcher._child_env(None)
    assert launcher._child_cwd() != str(tmp_path)
    (tmp_path / "engine" / "__main__.py").write_text("")
    assert launcher._child_env(None)["PYTHONPATH"] == str(tmp_path)
    assert launcher._child_cwd() == str(tmp_path)
