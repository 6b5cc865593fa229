"""The engine server in-process (real sockets on 127.0.0.1, real client): handshake, errors as
data, lanes and jobs, cancellation, and robustness against bad peers. Every wait is bounded."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from engine.link import protocol as P
from engine.link.client import EngineClient, EngineGone, RemoteError
from engine.core.errors import Cancelled, EngineError
from engine.serve.server import COMMANDS, EngineServer, ServerConfig
from engine.serve.commands import Command, Request, arg
from engine.serve.session import EngineSession

TOKEN = "test-token-" + "ab" * 16


def _slow_job(server: object, req: Request) -> tuple[dict, dict]:
    steps = arg(req, "steps", int, 200)
    for i in range(steps):
        if req.cancel.is_set():
            raise Cancelled(f"slow job cancelled at step {i}")
        req.progress({"iteration": i + 1, "total": steps, "phase": "test"})
        time.sleep(0.01)
    return {"steps": steps}, {}


def _echo(server: object, req: Request) -> tuple[dict, dict]:
    return {"args": req.args}, dict(req.arrays)


def _boom(server: object, req: Request) -> tuple[dict, dict]:
    raise ZeroDivisionError("a bug")


def _unsendable(server: object, req: Request) -> tuple[dict, dict]:
    return {"x": object()}, {}


TEST_COMMANDS = {
    **COMMANDS,
    "slow_job": Command("slow_job", _slow_job, "job", True),
    "echo": Command("echo", _echo, "query", False),
    "boom": Command("boom", _boom, "query", False),
    "unsendable": Command("unsendable", _unsendable, "query", False),
}


def _start(**overrides: object) -> EngineServer:
    cfg = ServerConfig(token=TOKEN, auth_timeout_s=2.0, **overrides)
    server = EngineServer(cfg, EngineSession(device="cpu"), TEST_COMMANDS)
    server.start()
    return server


@pytest.fixture()
def server():
    srv = _start(max_frame_bytes=4 * 2**20)
    yield srv
    srv.request_shutdown("test over")
    assert srv.wait(20), "server did not stop"


def _connect(srv: EngineServer, token: str = TOKEN) -> EngineClient:
    return EngineClient.connect("127.0.0.1", srv.port, token, timeout=5.0, heartbeat_s=0)


class _RawSocket(socket.socket):
    nonce = ""


def _raw(srv: EngineServer) -> _RawSocket:
    s = _RawSocket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5.0)
    s.connect(("127.0.0.1", srv.port))
    challenge = P.recv_message(s, P.PRE_AUTH_MAX_FRAME_BYTES)
    assert challenge.header["event"] == "challenge"
    s.nonce = challenge.header["data"]["nonce"]
    return s


def _closed_by_peer(s: socket.socket, timeout: float = 5.0) -> list[P.Message]:
    """Frames the server sent before closing (asserts it closes within the timeout)."""
    s.settimeout(timeout)
    out = []
    while True:
        try:
            msg = P.recv_message(s)
        except (ConnectionResetError, P.TruncatedFrame):
            return out
        if msg is None:
            return out
        out.append(msg)


def _wait_for(cond, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_handshake_status_and_arrays(server: EngineServer) -> None:
    with _connect(server) as c:
        assert c.engine_info["protocol"] == P.PROTOCOL_VERSION
        assert "train" in c.engine_info["commands"]
        st = c.status().result(5)
        assert st["job"] is None and st["session"]["scene"] is None
        feats = np.random.default_rng(0).random((5000, 24)).astype(np.float16)
        rep = c.call("echo", {"x": [1, 2]}, {"f": feats, "m": feats[:, 0] > 0.5})
        assert rep.result["args"] == {"x": [1, 2]}
        assert np.array_equal(rep["f"], feats) and rep["m"].dtype == np.bool_


def test_errors_cross_as_data_and_keep_the_connection(server: EngineServer) -> None:
    with _connect(server) as c:
        with pytest.raises(RemoteError, match="unknown command 'nope'") as ei:
            c.call("nope")
        assert ei.value.type == "UnknownCommand"
        with pytest.raises(RemoteError, match="internal engine error: ZeroDivisionError") as ei:
            c.call("boom")
        assert "ZeroDivisionError" in ei.value.remote_traceback
        with pytest.raises(RemoteError, match="not JSON serialisable"):
            c.call("unsendable", timeout=5)
        with pytest.raises(EngineError, match="no scene is loaded"):
            c.click(0, 1.0, 1.0).result(5)
        with pytest.raises(RemoteError, match="argument 'u' must be float"):
            c.call("click", {"camera": {"index": 0}, "u": "left", "v": 1})
        with pytest.raises(RemoteError, match="not a camera"):
            c.call("render", {"camera": {"viewmat": [[1]]}})
        assert c.ping().result(5)["time"] > 0  # still alive


def test_scene_upload_and_bad_scene_arrays(server: EngineServer, fox_path) -> None:
    from engine.core.formats.ply import read_ply

    scene = read_ply(fox_path)
    with _connect(server) as c:
        info = c.upload_scene(scene).result(30)
        assert info["num_gaussians"] == 50_000
        assert server.session.scene.num_gaussians == 50_000
        assert np.array_equal(server.session.scene.means, scene.means)
        bad = {"means": scene.means[:10], "scales": scene.scales[:9], "quats": scene.quats[:10],
               "opacities": scene.opacities[:10], "sh_dc": scene.sh_dc[:10]}
        with pytest.raises(EngineError, match="scales"):
            c.upload_scene(bad).result(10)
        with pytest.raises(EngineError, match="does not exist|cannot|not"):
            c.load_scene("/nonexistent/scene.ply").result(10)


def test_job_progress_cancel_and_status_while_running(server: EngineServer) -> None:
    with _connect(server) as c:
        seen: list[dict] = []
        job = c.call_async("slow_job", {"steps": 2000}, timeout=10, on_progress=seen.append)
        assert _wait_for(lambda: len(seen) >= 3)
        st = c.status().result(5)  # control lane answers during the job
        assert st["job"]["command"] == "slow_job" and st["job"]["progress"]["iteration"] >= 1
        assert c.call("echo", {"q": 1}).result["args"] == {"q": 1}  # read-only queries are served
        with pytest.raises(RemoteError, match="runs one job at a time") as ei:
            c.call("slow_job", {"steps": 1})
        assert ei.value.type == "EngineBusy"
        with pytest.raises(RemoteError, match="cannot load_scene while 'slow_job' runs"):
            c.load_scene("/x.ply").result(5)
        assert c.cancel(job.request_id).result(5)["cancelled"] is True
        with pytest.raises(Cancelled, match="slow job cancelled"):
            job.result(10)
        assert job.progress["phase"] == "test" and 0 < job.events < 2000
        assert c.status().result(5)["job"] is None  # free before the reply was sent
        done = c.call_async("slow_job", {"steps": 3}, timeout=10)  # the next job runs
        assert done.result(10)["steps"] == 3
        assert done.progress["iteration"] == 3  # the last progress event is never throttled away


def test_wrong_token_is_refused_and_server_keeps_serving(server: EngineServer) -> None:
    with pytest.raises(RemoteError, match="wrong token") as ei:
        _connect(server, token="x" * 40)
    assert ei.value.type == "AuthenticationError"
    with _connect(server) as c:
        assert c.ping().result(5)


def test_request_before_hello_is_refused(server: EngineServer) -> None:
    s = _raw(server)
    P.send_message(s, P.request_header(1, "status"))
    msgs = _closed_by_peer(s)
    assert msgs and msgs[0].header["error"]["type"] == "AuthenticationError"


def test_other_protocol_version_is_a_clear_error(server: EngineServer) -> None:
    s = _raw(server)
    P.send_message(s, P.request_header(1, "hello", {"protocol": 99, "auth": P.auth_digest(TOKEN, s.nonce)}))
    msgs = _closed_by_peer(s)
    assert msgs[0].header["error"]["type"] == "ProtocolVersionError"
    assert "speaks protocol 99" in msgs[0].header["error"]["message"]


def test_garbage_bytes_close_only_that_connection(server: EngineServer) -> None:
    with _connect(server) as good:
        s = _raw(server)
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n" + bytes(range(256)) * 10)
        msgs = _closed_by_peer(s)
        assert msgs and msgs[0].header["error"]["type"] == "ProtocolError"  # bad magic
        assert good.ping().result(5)


def test_truncated_frame_then_silence_times_out(server: EngineServer) -> None:
    s = _raw(server)
    frame = P.frame_bytes(P.request_header(1, "hello", {"protocol": 1, "auth": "0" * 64}))
    s.sendall(frame[: len(frame) // 2])  # and then nothing: the auth timeout (2 s) ends it
    t0 = time.monotonic()
    _closed_by_peer(s, timeout=10)
    assert time.monotonic() - t0 < 9
    s2 = _raw(server)
    s2.sendall(frame[:20])
    s2.close()  # cut short by the peer closing
    with _connect(server) as c:
        assert c.ping().result(5)


def test_oversized_frames(server: EngineServer) -> None:
    s = _raw(server)  # before authentication the limit is tiny
    s.sendall(P.PREFIX.pack(P.MAGIC, 100, P.PRE_AUTH_MAX_FRAME_BYTES))
    msgs = _closed_by_peer(s)
    assert "exceeds the limit" in msgs[0].header["error"]["message"]
    with _connect(server) as c:
        # the client knows the engine's limit (4 MiB here) and refuses to send more
        with pytest.raises(EngineError, match="more than the engine accepts"):
            c.call("echo", {}, {"big": np.zeros(5 * 2**20, np.uint8)})
        assert c.ping().result(5)
    assert _wait_for(lambda: server._active is None)
    s = _raw(server)  # a peer ignoring the limit after authenticating is disconnected
    P.send_message(s, P.request_header(0, "hello", {"protocol": 1, "auth": P.auth_digest(TOKEN, s.nonce)}))
    assert P.recv_message(s).header["ok"]
    s.sendall(P.PREFIX.pack(P.MAGIC, 100, 5 * 2**20))
    msgs = _closed_by_peer(s)
    assert msgs[-1].header["error"]["type"] == "FrameTooLarge"


def test_second_client_is_refused_while_the_first_is_connected(server: EngineServer) -> None:
    first = _connect(server)
    with pytest.raises(RemoteError, match="already serves another client") as ei:
        _connect(server)
    assert ei.value.type == "EngineBusy"
    assert first.ping().result(5)
    first.close()
    assert _wait_for(lambda: server._active is None)
    with _connect(server) as second:
        assert second.ping().result(5)


def test_client_dying_mid_job_cancels_the_job(server: EngineServer) -> None:
    c = _connect(server)
    job = c.call_async("slow_job", {"steps": 100000}, timeout=30)
    assert _wait_for(lambda: bool(job.progress))
    c._sock.close()  # the client vanishes without a word
    assert _wait_for(lambda: server.job_status() is None, timeout=10), "job still running after its client died"
    with pytest.raises(EngineGone):
        job.result(5)
    with _connect(server) as c2:  # the engine serves the next client
        assert c2.status().result(5)["job"] is None


def test_heartbeat_timeout_drops_a_silent_client() -> None:
    srv = _start(heartbeat_timeout_s=0.5)
    try:
        s = _raw(srv)
        P.send_message(s, P.request_header(0, "hello", {"protocol": 1, "auth": P.auth_digest(TOKEN, s.nonce)}))
        assert P.recv_message(s).header["ok"]
        _closed_by_peer(s, timeout=5)
        with EngineClient.connect("127.0.0.1", srv.port, TOKEN, timeout=5, heartbeat_s=0.1) as c:
            time.sleep(1.2)  # pings keep it connected
            assert c.alive and c.ping().result(5)
    finally:
        srv.request_shutdown("test over")
        assert srv.wait(20)


def test_idle_timeout_and_shutdown_command() -> None:
    srv = _start(idle_timeout_s=0.5)
    assert srv.wait(10) and "no client" in srv.stop_reason
    srv = _start()
    c = _connect(srv)
    assert c.shutdown().result(5)["stopping"]
    assert srv.wait(10) and "shutdown requested" in srv.stop_reason
    assert _wait_for(lambda: not c.alive)
    with pytest.raises(EngineGone):
        c.ping().result(5)


def test_shutdown_cancels_a_running_job() -> None:
    srv = _start()
    c = _connect(srv)
    job = c.call_async("slow_job", {"steps": 100000}, timeout=30)
    assert _wait_for(lambda: bool(job.progress))
    c.shutdown()
    assert srv.wait(20)
    with pytest.raises((Cancelled, EngineGone)):
        job.result(5)


def test_connection_flood_is_bounded() -> None:
    from engine.serve.server import MAX_PENDING_LOGINS

    srv = EngineServer(ServerConfig(token=TOKEN, auth_timeout_s=30.0), EngineSession(), TEST_COMMANDS)
    srv.start()
    extra = 4
    try:
        with _connect(srv) as good:
            socks = []
            try:
                for _ in range(MAX_PENDING_LOGINS + extra):
                    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                    socks.append(s)
                    # one at a time, so the order of arrival (hence of eviction) is known
                    assert P.recv_message(s, P.PRE_AUTH_MAX_FRAME_BYTES).header["event"] == "challenge"
                for s in socks[:extra]:  # the ones that waited longest are told why, then closed
                    refusal = P.recv_message(s, P.PRE_AUTH_MAX_FRAME_BYTES)
                    assert refusal.header["error"]["type"] == "EngineBusy", refusal.header
                    assert "waited longest" in refusal.header["error"]["message"]
                    assert P.recv_message(s, P.PRE_AUTH_MAX_FRAME_BYTES) is None
                assert good.ping().result(5)  # the authenticated client is unaffected
                assert _wait_for(lambda: len(srv._connections) == MAX_PENDING_LOGINS + 1, timeout=15)
            finally:
                for s in socks:
                    s.close()
            assert _wait_for(lambda: len(srv._connections) == 1, timeout=15), len(srv._connections)
    finally:
        srv.request_shutdown("test over")
        assert srv.wait(20)


def test_token_is_required() -> None:
    with pytest.raises(EngineError, match="token"):
        EngineServer(ServerConfig(token=""), EngineSession())


def test_concurrent_calls_from_many_threads(server: EngineServer) -> None:
    with _connect(server) as c:
        results: list[bool] = []

        def worker(k: int) -> None:
            for i in range(20):
                a = np.full((100 + k, 3), i, np.float32)
                rep = c.call("echo", {"k": k, "i": i}, {"a": a}, timeout=10)
                results.append(rep.result["args"] == {"k": k, "i": i} and np.array_equal(rep["a"], a))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) == 80 and all(results)


def test_connecting_to_something_that_is_not_an_engine() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def sshd_like() -> None:
        conn, _ = listener.accept()
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n" + bytes(64))
        conn.close()

    t = threading.Thread(target=sshd_like, daemon=True)
    t.start()
    try:
        with pytest.raises(EngineGone, match="is not a Click-Gaussian engine"):
            EngineClient.connect("127.0.0.1", port, TOKEN, timeout=5)
    finally:
        t.join(5)
        listener.close()
    with pytest.raises(EngineGone, match="cannot reach the engine"):
        EngineClient.connect("127.0.0.1", port, TOKEN, timeout=5)  # nothing listens there now


def test_waiting_inside_a_callback_is_an_error_not_a_deadlock(server: EngineServer) -> None:
    with _connect(server) as c:
        seen: list[BaseException] = []

        def on_progress(data: dict) -> None:
            if not seen:
                try:
                    c.ping().result(5)
                except EngineError as exc:
                    seen.append(exc)

        job = c.call_async("slow_job", {"steps": 5}, timeout=10, on_progress=on_progress)
        assert job.result(10)["steps"] == 5
        assert seen and "inside a client callback" in str(seen[0])


@pytest.mark.parametrize("overrides, match", [
    ({"port": 99999}, "port must be"),
    ({"port": -1}, "port must be"),
    ({"max_frame_bytes": -5}, "frame limit"),
    ({"idle_timeout_s": float("nan")}, "idle timeout"),
    ({"heartbeat_timeout_s": -1.0}, "heartbeat timeout"),
])
def test_absurd_server_settings_are_refused(overrides, match) -> None:
    with pytest.raises(EngineError, match=match):
        ServerConfig(token=TOKEN, **overrides)
