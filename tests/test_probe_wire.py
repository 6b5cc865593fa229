"""Probes of the wire side as a hostile or careless peer would send them (issue 12): malformed
frames (listed and hypothesis-generated shapes and dtypes), peers that trickle a login a byte at
a time or stay silent, bursts of connections, and cameras with impossible values sent to the
command layer. Every case must end in a ProtocolError or a one-line error reply naming the field,
logged by the engine, with nothing escaping to stderr, and the real client must still get in.

Everything runs on 127.0.0.1 against in-process servers, with bounded counts; every wait has a
generous deadline and no assertion depends on how fast the machine is."""

from __future__ import annotations

import json
import logging
import math
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.link import protocol as P
from engine.core.cameras import Camera
from engine.link.client import EngineClient, RemoteError
from engine.core.errors import CameraError, EngineError
from engine.serve.server import COMMANDS, MAX_PENDING_LOGINS, EngineServer, ServerConfig
from engine.serve.commands import BadRequest, Request, camera_arg
from engine.serve.session import EngineSession

TOKEN = "probe-wire-token-" + "ef" * 16
DEADLINE_S = 30.0  # generous bound on any single wait; a healthy run takes a small fraction


# --------------------------------------------------------------------------- helpers


@contextmanager
def _server(**overrides: Any) -> Iterator[EngineServer]:
    """An engine server on a free 127.0.0.1 port, stopped (and waited for) on exit."""
    cfg = ServerConfig(token=TOKEN, **{"auth_timeout_s": 5.0, **overrides})
    srv = EngineServer(cfg, EngineSession(device="cpu"), dict(COMMANDS))
    srv.start()
    try:
        yield srv
    finally:
        srv.request_shutdown("probe over")
        assert srv.wait(DEADLINE_S), "server did not stop"


@pytest.fixture()
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Exceptions that escape any thread (they would reach stderr, not the engine log)."""
    seen: list[str] = []

    def hook(args: threading.ExceptHookArgs) -> None:
        seen.append(f"{args.thread.name if args.thread else '?'}: {args.exc_type.__name__}: {args.exc_value}")

    monkeypatch.setattr(threading, "excepthook", hook)
    return seen


def _raw(srv: EngineServer) -> tuple[socket.socket, str]:
    """A raw connection that has read the challenge; returns it and the nonce."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=DEADLINE_S)
    challenge = P.recv_message(s, P.PRE_AUTH_MAX_FRAME_BYTES)
    assert challenge is not None and challenge.header["event"] == "challenge"
    return s, challenge.header["data"]["nonce"]


def _logged_in(srv: EngineServer) -> socket.socket:
    s, nonce = _raw(srv)
    P.send_message(s, P.request_header(0, "hello", {"protocol": P.PROTOCOL_VERSION, "auth": P.auth_digest(TOKEN, nonce)}))
    reply = P.recv_message(s)
    assert reply is not None and reply.header["ok"], reply.header if reply else None
    return s


def _closed_after_reply(s: socket.socket) -> dict[str, Any] | None:
    """The error object of the last error reply before the engine closed ``s`` (None if it
    closed without one). Fails if the connection stays open."""
    error = None
    s.settimeout(DEADLINE_S)
    try:
        while True:
            msg = P.recv_message(s, P.DEFAULT_MAX_FRAME_BYTES)
            if msg is None:
                return error
            if msg.kind == "reply" and not msg.header["ok"]:
                error = msg.header["error"]
    except ConnectionResetError:
        return error
    except socket.timeout:
        pytest.fail(f"the engine left the connection open for {DEADLINE_S:g} s")


def _frame(arrays: list[dict[str, Any]], payload_len: int = 0, **header: Any) -> bytes:
    """Prefix and header of a request whose header lists ``arrays`` (no payload bytes: every
    case below is refused from the header, so payload bytes would stay unread)."""
    raw = json.dumps({"v": 1, "kind": "request", "id": 7, "command": "ping", "args": {}, "arrays": arrays,
                      **header}).encode()
    return P.PREFIX.pack(P.MAGIC, len(raw), payload_len) + raw


def _spec(shape: Any, dtype: Any = "float32", nbytes: Any = 0, name: Any = "a") -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape, "nbytes": nbytes}


HUGE_EMPTY = _frame([_spec([0, 2**62 - 1])])

# (case id, bytes the peer sends, error type expected in the reply)
MALFORMED: list[tuple[str, bytes, str]] = [
    ("http", b"GET / HTTP/1.1\r\n", "ProtocolError"),  # exactly a prefix long: no unread bytes
    ("bad-magic", P.PREFIX.pack(b"XXXX", 10, 0), "ProtocolError"),
    ("header-length-0", P.PREFIX.pack(P.MAGIC, 0, 0), "ProtocolError"),
    ("frame-too-large", P.PREFIX.pack(P.MAGIC, 100, 2**40), "FrameTooLarge"),
    ("not-json", P.PREFIX.pack(P.MAGIC, 4, 0) + b"\xff{{{", "ProtocolError"),
    ("not-object", P.PREFIX.pack(P.MAGIC, 6, 0) + b"[1, 2]", "ProtocolError"),
    ("huge-empty-array", HUGE_EMPTY, "ProtocolError"),
    ("huge-empty-3d", _frame([_spec([2**31, 0, 2**31], "float64")]), "ProtocolError"),
    ("negative-dim", _frame([_spec([-1], nbytes=4)], 64), "ProtocolError"),
    ("bool-dim", _frame([_spec([True], nbytes=4)], 64), "ProtocolError"),
    ("float-dim", _frame([_spec([2.0], nbytes=8)], 64), "ProtocolError"),
    ("nine-dims", _frame([_spec([1] * 9, nbytes=4)], 64), "ProtocolError"),
    ("object-dtype", _frame([_spec([1], "object", 8)], 64), "ProtocolError"),
    ("nbytes-mismatch", _frame([_spec([2], nbytes=4)], 64), "ProtocolError"),
    ("nbytes-bool", _frame([_spec([1], "bool", True)], 64), "ProtocolError"),
    ("payload-mismatch", _frame([_spec([2], nbytes=8)], 16), "ProtocolError"),
    ("repeated-name", _frame([_spec([1], nbytes=4), _spec([1], nbytes=4)], 128), "ProtocolError"),
    ("long-name", _frame([_spec([1], "complex", 8, "n" * 5000)], 64), "ProtocolError"),
]


# --------------------------------------------------------------------------- frames, in memory


@pytest.mark.parametrize("shape", [[0, 2**62 - 1], [2**62 - 1, 0], [0, 2**31, 2**31], [0] + [2**20] * 7])
@pytest.mark.parametrize("dtype", sorted(P.ALLOWED_DTYPES))
def test_huge_empty_arrays_are_protocol_errors(shape: list[int], dtype: str) -> None:
    with pytest.raises(P.ProtocolError, match="absurdly large"):
        P.decode_frames(_frame([_spec(shape, dtype)]))


@pytest.mark.parametrize("case, data, error_type", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_listed_malformed_frames_are_protocol_errors(case: str, data: bytes, error_type: str) -> None:
    with pytest.raises(P.ProtocolError) as info:
        P.decode_frames(data + bytes(64 * 4))
    assert type(info.value).__name__ == error_type
    assert "\n" not in str(info.value) and len(str(info.value)) < 400  # one line, peer values cut short


_dims = st.one_of(st.integers(0, 4), st.integers(-3, -1), st.integers(2**20, 2**64), st.booleans(),
                  st.floats(allow_nan=True), st.text(max_size=3))
_dtypes = st.one_of(st.sampled_from(sorted(P.ALLOWED_DTYPES)), st.sampled_from(["object", "float128", "<f4", "U8",
                                                                                 "complex64", "", "int16"]),
                    st.integers(), st.none())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(st.tuples(st.one_of(st.lists(_dims, max_size=10), st.integers(), st.none()), _dtypes,
                                st.one_of(st.none(), st.integers(-2, 2**40), st.booleans())), max_size=3),
       exact_nbytes=st.booleans(), payload_fill=st.integers(0, 2))
def test_generated_shapes_and_dtypes_decode_exactly_or_are_protocol_errors(
        specs: list[tuple[Any, Any, Any]], exact_nbytes: bool, payload_fill: int) -> None:
    arrays = []
    offset = 0
    for i, (shape, dtype, nbytes) in enumerate(specs):
        if exact_nbytes and isinstance(shape, list) and dtype in P.ALLOWED_DTYPES and \
                all(type(d) is int and 0 <= d <= 4 for d in shape):
            nbytes = math.prod(shape) * P.ALLOWED_DTYPES[dtype].itemsize
        arrays.append(_spec(shape, dtype, nbytes, f"a{i}"))
        if isinstance(nbytes, int) and not isinstance(nbytes, bool) and 0 <= nbytes <= 4096:
            offset += (-offset) % P.ARRAY_ALIGN + nbytes
    payload = offset if payload_fill == 0 else offset + payload_fill * 8
    if payload > 1 << 16:
        payload = 0
    data = _frame(arrays, payload) + bytes(payload)
    try:
        messages = P.decode_frames(data)
    except P.ProtocolError as exc:
        assert "\n" not in str(exc)
        return
    (msg,) = messages
    for spec in arrays:  # accepted: every array is exactly what its entry announced
        a = msg.arrays[spec["name"]]
        assert list(a.shape) == spec["shape"] and a.dtype == P.ALLOWED_DTYPES[spec["dtype"]]
        assert a.nbytes == spec["nbytes"]


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, 400), flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4))
def test_mutated_valid_frames_decode_or_are_protocol_errors(cut: int, flips: list[tuple[int, int]]) -> None:
    good = bytearray(P.frame_bytes(P.request_header(3, "echo", {"x": 1}),
                                   {"m": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(5, bool)}))
    for pos, value in flips:
        if pos < len(good):
            good[pos] = value
    try:
        P.decode_frames(bytes(good[:max(cut, 1)]) if cut < len(good) else bytes(good))
    except P.ProtocolError as exc:
        assert "\n" not in str(exc)


# --------------------------------------------------------------------------- frames, on the wire


@pytest.mark.parametrize("logged_in", [False, True], ids=["before-login", "after-login"])
@pytest.mark.parametrize("case, data, error_type", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_frames_are_answered_on_the_wire_and_logged(
        case: str, data: bytes, error_type: str, logged_in: bool, thread_errors: list[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="clickgs.engine")
    with _server() as srv:
        s = _logged_in(srv) if logged_in else _raw(srv)[0]
        with s:
            s.sendall(data)
            error = _closed_after_reply(s)
        assert error is not None, "closed without an error reply"
        assert error["type"] == error_type and "\n" not in error["message"], error
        with EngineClient.connect("127.0.0.1", srv.port, TOKEN, timeout=DEADLINE_S) as c:
            assert c.ping().result(DEADLINE_S)  # the engine serves on
    assert any("malformed frame" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert not thread_errors


def test_a_frame_cut_short_closes_quietly_and_is_logged(thread_errors: list[str],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="clickgs.engine")
    with _server() as srv:
        s = _logged_in(srv)
        s.sendall(P.frame_bytes(P.request_header(1, "ping"))[:-3])
        s.close()  # the peer vanishes mid-frame: nobody to answer
        # the engine frees the one client slot when it has read the cut frame; a new client
        # that arrives before that is (rightly) refused as a second client
        deadline = time.monotonic() + DEADLINE_S
        while srv._active is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert srv._active is None, "the engine kept the vanished client's slot"
        with EngineClient.connect("127.0.0.1", srv.port, TOKEN, timeout=DEADLINE_S) as c:
            assert c.ping().result(DEADLINE_S)
    assert any("in the middle of a frame" in r.getMessage() for r in caplog.records)
    assert not thread_errors


# --------------------------------------------------------------------------- slow, silent, bursts


class _Tricklers:
    """Connections that each read the challenge, then send a valid (long) hello one byte per
    tick, far slower than any login deadline; a driver thread sends, stopping on any error."""

    def __init__(self, srv: EngineServer, n: int, tick_s: float = 0.05) -> None:
        self.socks = []
        self.frames = []
        for _ in range(n):
            s, nonce = _raw(srv)
            frame = P.frame_bytes(P.request_header(0, "hello", {
                "protocol": P.PROTOCOL_VERSION, "auth": P.auth_digest(TOKEN, nonce), "pad": "x" * 4000}))
            self.socks.append(s)
            self.frames.append(frame)
        self.sent = [0] * n
        self.tick_s = tick_s
        self.stop = threading.Event()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._drive, name="probe-tricklers", daemon=True)
        self.thread.start()

    def _drive(self) -> None:
        live = set(range(len(self.socks)))
        while live and not self.stop.is_set():
            for i in list(live):
                try:
                    self.socks[i].send(self.frames[i][self.sent[i]:self.sent[i] + 1])
                    self.sent[i] += 1
                except OSError:
                    live.discard(i)
            self.started.set()
            self.stop.wait(self.tick_s)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(DEADLINE_S)
        for s in self.socks:
            s.close()


def test_sixteen_trickling_logins_do_not_lock_out_the_real_client(
        thread_errors: list[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="clickgs.engine")
    with _server(auth_timeout_s=2.0) as srv:
        tr = _Tricklers(srv, 16)
        try:
            assert tr.started.wait(DEADLINE_S)
            with EngineClient.connect("127.0.0.1", srv.port, TOKEN, timeout=5.0) as c:
                assert c.ping().result(DEADLINE_S)
                # Every trickler is closed: the oldest to make room for the client (EngineBusy),
                # the rest at the login deadline (LoginTimeout), long before its hello is sent.
                errors = [_closed_after_reply(s) for s in tr.socks]
                assert all(sent < len(f) for sent, f in zip(tr.sent, tr.frames)), "a trickler finished its hello"
                kinds = sorted(e["type"] for e in errors if e is not None)
                assert set(kinds) <= {"EngineBusy", "LoginTimeout"}, kinds
                assert c.alive and c.ping().result(DEADLINE_S)  # the real client is untouched
        finally:
            tr.close()
    messages = [r.getMessage() for r in caplog.records]
    closing = [m for m in messages if m.startswith("closing ")]  # one line per connection the engine closed
    assert sum("login timed out" in m for m in closing) == 15, closing
    assert sum("waited longest" in m for m in closing) == 1, closing
    assert not thread_errors


def test_more_tricklers_than_the_cap_evict_the_oldest(thread_errors: list[str]) -> None:
    with _server(auth_timeout_s=DEADLINE_S) as srv:
        tr = _Tricklers(srv, MAX_PENDING_LOGINS + 6)
        try:
            assert tr.started.wait(DEADLINE_S)
            for s in tr.socks[:6]:  # arrived first, so closed first, at once (not at the deadline)
                error = _closed_after_reply(s)
                assert error is None or error["type"] == "EngineBusy", error
            with EngineClient.connect("127.0.0.1", srv.port, TOKEN, timeout=5.0) as c:
                assert c.ping().result(DEADLINE_S)
        finally:
            tr.close()
    assert not thread_errors


def test_a_silent_connection_is_closed_at_the_login_deadline() -> None:
    with _server(auth_timeout_s=0.5) as srv:
        s, _ = _raw(srv)
        with s:
            error = _closed_after_reply(s)
        assert error is not None and error["type"] == "LoginTimeout" and "login timed out" in error["message"]


def test_a_silent_logged_in_client_frees_the_slot_and_a_live_idle_one_stays() -> None:
    with _server(heartbeat_timeout_s=3.0) as srv:
        s = _logged_in(srv)
        with s:
            error = _closed_after_reply(s)  # says nothing after the hello: dropped
        assert error is None
        # The client pings often enough for the engine's limit (reported in hello) even though
        # it was asked for its default interval, so an idle live client is never dropped.
        with EngineClient.connect("127.0.0.1", srv.port, TOKEN, timeout=DEADLINE_S) as c:
            assert c._heartbeat_s <= 3.0 / 4
            time.sleep(4.0)  # longer than the limit: only the pings keep it
            assert c.alive and c.ping().result(DEADLINE_S)


def test_the_heartbeat_timeout_is_on_by_default_and_the_launcher_passes_it() -> None:
    import inspect

    from engine.link.launcher import launch_engine

    default = ServerConfig(token="x").heartbeat_timeout_s
    assert default > 0
    assert inspect.signature(launch_engine).parameters["heartbeat_timeout"].default == default
    assert inspect.signature(EngineClient.connect).parameters["heartbeat_s"].default * 4 <= default


def test_a_burst_of_connections_is_greeted_or_closed_promptly(thread_errors: list[str]) -> None:
    with _server(auth_timeout_s=DEADLINE_S) as srv:
        socks = []
        try:
            for _ in range(50):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", srv.port))
                socks.append(s)
            waiting = set(socks)
            end = time.monotonic() + 10.0  # a SYN retry after a full backlog alone takes longer
            while waiting and time.monotonic() < end:
                readable, _, _ = select.select(list(waiting), [], [], 0.5)
                waiting -= set(readable)
            assert not waiting, f"{len(waiting)} of 50 connections neither greeted nor closed"
            first = []
            for s in socks:
                s.setblocking(True)
                s.settimeout(DEADLINE_S)
                try:
                    first.append(P.recv_message(s, P.PRE_AUTH_MAX_FRAME_BYTES))
                except ConnectionResetError:
                    first.append(None)
            for m in first:
                assert m is None or m.header.get("event") == "challenge" or \
                    m.header["error"]["type"] == "EngineBusy", m.header
            assert sum(m is not None and m.header.get("event") == "challenge" for m in first) >= MAX_PENDING_LOGINS
            with EngineClient.connect("127.0.0.1", srv.port, TOKEN, timeout=5.0) as c:
                assert c.ping().result(DEADLINE_S)
        finally:
            for s in socks:
                s.close()
    assert not thread_errors


# --------------------------------------------------------------------------- cameras over the socket


def _good_camera() -> dict[str, Any]:
    return P.camera_to_wire(Camera(np.eye(4), [[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]], 64, 48, "probe"))


def _singular() -> list[list[float]]:
    m = np.eye(4)
    m[2, :3] = m[0, :3]  # rank 2: no camera direction
    return m.tolist()


# (case id, change to a good wire camera, the field the message must name)
BAD_CAMERAS: list[tuple[str, dict[str, Any], str]] = [
    ("K-zero", {"K": [[0.0] * 3] * 3}, "K"),
    ("K-negative-focal", {"K": [[-100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]]}, "K"),
    ("K-2x2", {"K": [[1.0, 0], [0, 1.0]]}, "K"),
    ("K-missing", {"K": None}, "K"),
    ("viewmat-zero", {"viewmat": [[0.0] * 4] * 4}, "viewmat"),
    ("viewmat-singular", {"viewmat": _singular()}, "viewmat"),
    ("viewmat-nan", {"viewmat": [[float("nan")] * 4] * 4}, "viewmat"),
    ("viewmat-text", {"viewmat": "identity"}, "viewmat"),
    ("width-0", {"width": 0}, "width"),
    ("width-negative", {"width": -640}, "width"),
    ("width-1e12", {"width": 10**12}, "width"),
    ("height-1e12", {"height": 10**12}, "height"),
    ("width-float", {"width": 64.5}, "width"),
    ("width-text", {"width": "64"}, "width"),
    ("height-bool", {"height": True}, "height"),
]


def _bad_camera(change: dict[str, Any]) -> dict[str, Any]:
    cam = {**_good_camera(), **change}
    return {k: v for k, v in cam.items() if v is not None}


@pytest.fixture(scope="module")
def camera_client() -> Iterator[EngineClient]:
    with _server() as srv, EngineClient.connect("127.0.0.1", srv.port, TOKEN, timeout=DEADLINE_S) as c:
        yield c


@pytest.mark.parametrize("command", ["set_cameras", "click", "segment", "render"])
@pytest.mark.parametrize("case, change, field", BAD_CAMERAS, ids=[b[0] for b in BAD_CAMERAS])
def test_bad_cameras_are_refused_at_the_command_boundary(camera_client: EngineClient, command: str, case: str,
                                                         change: dict[str, Any], field: str) -> None:
    cam = _bad_camera(change)
    args = {"cameras": [_good_camera(), cam]} if command == "set_cameras" else {"camera": cam, "u": 1.0, "v": 1.0}
    with pytest.raises(EngineError) as info:
        camera_client.call(command, args, timeout=DEADLINE_S)
    exc = info.value
    message = str(exc)
    assert isinstance(exc, CameraError) or (isinstance(exc, RemoteError) and exc.type == "BadRequest"), repr(exc)
    assert "\n" not in message and field in message and command in message, message
    assert "no scene" not in message and "bincount" not in message  # refused before any session work
    if command == "set_cameras":
        assert "cameras[1]" in message, message


@pytest.mark.parametrize("orbit, field", [
    ({"n_views": 4, "width": 0, "height": 64}, "width"),
    ({"n_views": 4, "width": 64, "height": 10**12}, "height"),
    ({"n_views": 4, "width": "64", "height": 64}, "width"),
    ({"n_views": 4, "width": 64.7, "height": 64}, "width"),
    ({"n_views": -1, "width": 64, "height": 64}, "n_views"),
    ({"width": 64, "height": 64}, "n_views"),
])
def test_bad_orbit_sizes_are_one_line_errors(camera_client: EngineClient, orbit: dict[str, Any], field: str) -> None:
    with pytest.raises(EngineError) as info:
        camera_client.call("set_cameras", {"orbit": orbit}, timeout=DEADLINE_S)
    message = str(info.value)
    assert "\n" not in message and field in message, message


_entries = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.integers(-10, 10),
                     st.sampled_from([0.0, 1.0, -1.0, 1e-300, 1e300]))


@settings(max_examples=200, deadline=None)
@given(viewmat=st.lists(st.lists(_entries, min_size=4, max_size=4), min_size=3, max_size=4),
       K=st.lists(st.lists(_entries, min_size=3, max_size=3), min_size=3, max_size=3),
       width=st.one_of(st.integers(-2, 2**40), st.floats(), st.booleans()),
       height=st.one_of(st.integers(-2, 2**40), st.just(48)))
def test_generated_wire_cameras_are_valid_or_one_line_errors(viewmat: Any, K: Any, width: Any, height: Any) -> None:
    req = Request(1, "render", {"camera": {"viewmat": viewmat, "K": K, "width": width, "height": height}}, {},
                  threading.Event(), lambda event, data: None)
    try:
        cam = camera_arg(req)
    except (BadRequest, CameraError) as exc:
        assert "\n" not in str(exc) and "render" in str(exc)
        return
    # accepted: renderable as far as its numbers go
    assert 1 <= cam.width <= 32768 and 1 <= cam.height <= 32768
    assert np.isfinite(cam.viewmat).all() and np.isfinite(cam.K).all()
    assert abs(np.linalg.det(cam.viewmat[:3, :3])) > 0 and cam.K[0, 0] > 0 and cam.K[1, 1] > 0
