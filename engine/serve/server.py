"""The engine server: a local TCP socket speaking :mod:`engine.link.protocol`, in front of one
:class:`engine.serve.session.EngineSession`.

Behaviour (what the client may rely on):

- **Binding.** 127.0.0.1 by default; port 0 picks a free port (``python -m engine serve``
  announces it on stdout as one JSON line ``{"ready": true, "port": ...}``).
- **Authentication.** On connect the server sends the event ``challenge`` (random nonce); the
  first request must be ``hello`` with ``auth = HMAC-SHA256(token, nonce)`` and the client's
  protocol version. A wrong token, another version, or any other first request gets an error
  reply and the connection is closed. Before authentication frames are limited to
  :data:`engine.link.protocol.PRE_AUTH_MAX_FRAME_BYTES` and the whole login shares one deadline,
  ``auth_timeout_s`` from the connect (a peer trickling bytes gets ``LoginTimeout`` and is
  closed); after it, to ``max_frame_bytes``. At most :data:`MAX_PENDING_LOGINS` connections
  wait to log in: one more closes the one that waited longest (``EngineBusy``), so stuck or
  hostile connections never lock the real client out.
- **One client at a time.** While an authenticated client is connected, a second client that
  authenticates gets the error ``EngineBusy`` (naming when the first connected) and is closed;
  it never disturbs the first. When the first disconnects, the next one is served.
- **Three lanes.** Control commands (hello, version, ping, status, cancel, shutdown) are answered
  at once by the connection's reader thread, so they work while anything else runs. Query
  commands (load_scene, set_cameras, click, segment, render, get_features, ...) run one after
  another on a query worker thread. Jobs (prepare_masks, train) run on their own thread, one at a
  time, streaming ``progress`` events (same request id) before their reply; ``cancel`` stops them
  (the reply is then an error of type ``Cancelled``). Commands that change the session are
  refused with ``EngineBusy`` while a job runs; read-only queries are served.
- **Errors are data.** Every failure is a reply ``{ok: false, error: {type, message,
  traceback}}``; an unknown command or protocol version is such a reply, never a crash. A frame
  that cannot be parsed (garbage, cut short, too large, an impossible array shape) is a
  ``ProtocolError``: logged, answered with an error reply (id 0), and that connection only is
  closed (the stream position is lost).
- **No orphans.** The server stops when told to (``shutdown``, SIGTERM), when the process given
  as ``parent_pid`` exits, when stdin reaches end of file (``exit_on_stdin_eof``: the launcher
  holds the pipe), or after ``idle_timeout_s`` with no client. When the client running a job
  disconnects, the job is cancelled. ``heartbeat_timeout_s`` (on by default) drops a logged-in
  client that sent nothing for that long (the client pings while idle) — a vanished peer, e.g.
  behind a dead SSH tunnel, must not keep the only slot forever.
- **Log.** Everything goes to the logger ``clickgs.engine`` (``python -m engine serve`` writes it
  to a file the user can open; its path is in the ready line and in ``hello``'s reply).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..link import protocol as P
from ..core.errors import EngineError
from .commands import BadRequest, Command, Request, build_commands

log = logging.getLogger("clickgs.engine")
#: Connections that have not logged in yet, at one time. When one more arrives, the one that has
#: waited longest is closed (told EngineBusy): a real client logs in at once, so the oldest
#: pending login is the likeliest to be a stuck or hostile peer, and the newest must not be
#: locked out by them. With the single authenticated client this also bounds the threads.
MAX_PENDING_LOGINS = 16
#: Queue of connections the kernel holds before the accept loop takes them: large enough that a
#: burst of connections is queued (then greeted or closed) rather than left to SYN retries.
LISTEN_BACKLOG = 128
#: Default for ServerConfig.heartbeat_timeout_s: the client (engine.link.client) pings whenever it has
#: been silent for a fraction of this, so a live but idle client is never dropped, while one that
#: vanished without a close (a dead SSH tunnel, a frozen machine) frees the only slot.
DEFAULT_HEARTBEAT_TIMEOUT_S = 60.0


class EngineBusy(EngineError):
    """The engine is doing something that the request would conflict with."""


class UnknownCommand(EngineError):
    """The request names a command this engine does not have."""


class ProtocolVersionError(EngineError):
    """The peer speaks another protocol version."""


class AuthenticationError(EngineError):
    """The hello did not carry the right token."""


class LoginTimeout(EngineError):
    """The peer did not complete its hello within the authentication timeout."""


@dataclass(frozen=True)
class ServerConfig:
    token: str  # the per-launch secret (never logged, never on the command line)
    host: str = "127.0.0.1"
    port: int = 0  # 0 = any free port
    max_frame_bytes: int = P.DEFAULT_MAX_FRAME_BYTES
    auth_timeout_s: float = 10.0  # the whole login (challenge to hello), not each read
    heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S  # drop a client silent this long; 0 = never
    idle_timeout_s: float = 0.0  # stop after this long without a client; 0 = never
    parent_pid: int | None = None  # stop when this process exits
    exit_on_stdin_eof: bool = False  # stop when stdin is closed (the launcher holds the pipe)
    progress_interval_s: float = 0.05  # at most one progress event per interval (the last always)
    log_path: str | None = None  # reported to clients

    def __post_init__(self) -> None:
        if not 0 <= int(self.port) <= 65535:
            raise EngineError(f"port must be 0 (any free port) or 1..65535, got {self.port}")
        if self.max_frame_bytes < 1 << 20:
            raise EngineError(f"the frame limit must be at least 1 MiB, got {self.max_frame_bytes} bytes")
        for name in ("auth_timeout_s", "heartbeat_timeout_s", "idle_timeout_s", "progress_interval_s"):
            value = getattr(self, name)
            if not value >= 0:  # also refuses NaN
                raise EngineError(f"{name.removesuffix('_s').replace('_', ' ')} must be >= 0 seconds, got {value}")
        if self.auth_timeout_s == 0:
            raise EngineError("the authentication timeout must be positive")


@dataclass
class _Job:
    request: Request
    conn: "_Connection"
    thread: threading.Thread
    started: float


def error_payload(exc: BaseException, log_path: str | None = None) -> tuple[str, str, str]:
    """(type, message, traceback text) for an exception crossing the socket. Engine errors keep
    their message (written for the user); anything else is marked as an internal error."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if isinstance(exc, EngineError):
        return type(exc).__name__, str(exc), tb
    where = f" (details in the engine log: {log_path})" if log_path else ""
    if isinstance(exc, ModuleNotFoundError):
        return "MissingComponent", f"this engine cannot do that: module {exc.name!r} is not available{where}", tb
    return type(exc).__name__, f"internal engine error: {type(exc).__name__}: {exc}{where}", tb


def _parent_alive_checker(pid: int) -> Callable[[], bool]:
    """A cheap check that process ``pid`` still runs (POSIX: our parent pid unchanged, or
    kill(pid, 0); Windows: the process handle not signalled)."""
    if os.name == "nt":  # pragma: no cover - exercised on Windows only
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x00100000, False, pid)  # SYNCHRONIZE
        if not handle:
            return lambda: False

        def alive_nt() -> bool:
            return kernel32.WaitForSingleObject(handle, 0) != 0  # WAIT_OBJECT_0 = exited

        return alive_nt
    if os.getppid() == pid:
        return lambda: os.getppid() == pid  # re-parented = parent died (immune to pid reuse)

    def alive_posix() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    return alive_posix


class _Connection:
    def __init__(self, server: "EngineServer", sock: socket.socket, addr: Any) -> None:
        self.server = server
        self.sock = sock
        self.addr = addr
        self.send_lock = threading.Lock()
        self.closed = threading.Event()
        self.authenticated = False
        self.nonce = secrets.token_hex(32)
        self.connected_at = time.time()
        self.accepted_at = time.monotonic()
        self.refused = ""  # why the engine closed it (for the log), set by refuse()
        self.login_deadline = self.accepted_at + server.config.auth_timeout_s
        self.name = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)

    def send(self, header: dict[str, Any], arrays: dict[str, Any] | None = None) -> bool:
        if self.closed.is_set():
            return False
        try:
            with self.send_lock:
                P.send_message(self.sock, header, arrays)
            return True
        except (OSError, ValueError) as exc:
            log.warning("could not send %s %r to %s: %s", header.get("kind"), header.get("command"), self.name, exc)
            self.close()
            return False

    def send_buffers(self, bufs: list, what: str) -> bool:
        """Send an encoded frame (see :func:`engine.link.protocol.encode_frame`)."""
        if self.closed.is_set():
            return False
        try:
            with self.send_lock:
                P.send_buffers(self.sock, bufs)
            return True
        except OSError as exc:
            log.warning("could not send the reply to %r to %s: %s", what, self.name, exc)
            self.close()
            return False

    def send_error(self, rid: int, command: str, exc: BaseException) -> bool:
        t, msg, tb = error_payload(exc, self.server.config.log_path)
        if not isinstance(exc, EngineError):
            log.error("request %d %r failed:\n%s", rid, command, tb)
        else:
            log.info("request %d %r: %s: %s", rid, command, t, msg)
        return self.send(P.error_header(rid, command, t, msg, tb))

    def read_into(self, view: memoryview) -> int:
        """``recv_into`` for :func:`engine.link.protocol.read_message`. Until the hello succeeds every
        read shares the one login deadline, so a peer trickling a byte at a time cannot hold
        its slot past the authentication timeout; after it, the socket's own timeout (the
        heartbeat timeout) applies to each read."""
        if not self.authenticated:
            remaining = self.login_deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("login deadline passed")
            self.sock.settimeout(remaining)
        return self.sock.recv_into(view)

    def refuse(self, exc: EngineError) -> None:
        """Tell the peer why in an error reply, then close. Never blocks: the peer may not be
        reading, and the caller may be the accept loop. The reply is skipped when another
        thread is mid-send (it would interleave with that frame)."""
        t, msg, tb = error_payload(exc)
        self.refused = f"{t}: {msg}"
        log.warning("closing %s: %s", self.name, msg)
        if not self.closed.is_set() and self.send_lock.acquire(blocking=False):
            try:
                data = P.frame_bytes(P.error_header(0, "hello", t, msg))
                flags = getattr(socket, "MSG_DONTWAIT", 0)
                if not flags:  # Windows: no per-call flag, make the socket non-blocking instead
                    self.sock.setblocking(False)
                self.sock.send(data, flags)
            except OSError:
                pass  # best effort: a peer that does not read may have a full buffer
            finally:
                self.send_lock.release()
        self.close()

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


class EngineServer:
    """Serve one :class:`~engine.serve.session.EngineSession` (or any object the command table
    accepts) on a socket. ``bind()`` then ``serve_forever()`` (blocks until stopped), or
    ``start()`` to run the accept loop on a thread."""

    def __init__(self, config: ServerConfig, session: Any = None, commands: dict[str, Command] | None = None) -> None:
        if not config.token:
            raise EngineError("the engine server needs a non-empty token")
        self.config = config
        if session is None:
            from .session import EngineSession

            session = EngineSession()
        self.session = session
        self.commands = dict(COMMANDS if commands is None else commands)
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self.stop_reason = ""
        self._lock = threading.Lock()
        self._active: _Connection | None = None
        self._connections: set[_Connection] = set()
        self._job: _Job | None = None
        self._query_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickgs-query")
        self._last_client_seen = time.monotonic()
        self._thread: threading.Thread | None = None
        self.started_at = time.time()
        self.info: dict[str, Any] = {}  # extra facts for hello/version (device, torch version)

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        assert self._listener is not None, "bind() first"
        return int(self._listener.getsockname()[1])

    def bind(self) -> int:
        """Open the listening socket; returns the port."""
        try:
            infos = socket.getaddrinfo(self.config.host, self.config.port, type=socket.SOCK_STREAM)
            family = infos[0][0]
            sock = socket.socket(family, socket.SOCK_STREAM)
            if os.name != "nt":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(infos[0][4])
            sock.listen(LISTEN_BACKLOG)
        except OSError as exc:
            raise EngineError(f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}") from None
        sock.settimeout(0.25)
        self._listener = sock
        log.info("engine %s listening on %s:%d (pid %d, protocol %d)", __version__, self.config.host, self.port,
                 os.getpid(), P.PROTOCOL_VERSION)
        return self.port

    def start(self) -> int:
        """bind() and run the accept loop on a daemon thread; returns the port."""
        port = self.bind() if self._listener is None else self.port
        self._thread = threading.Thread(target=self.serve_forever, name="clickgs-accept", daemon=True)
        self._thread.start()
        return port

    def request_shutdown(self, reason: str) -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
            log.info("stopping: %s", reason)
            self._stop.set()

    @property
    def stopped(self) -> threading.Event:
        return self._stop

    def serve_forever(self) -> str:
        """Accept clients until stopped; returns why it stopped."""
        if self._listener is None:
            self.bind()
        assert self._listener is not None
        parent_alive = _parent_alive_checker(self.config.parent_pid) if self.config.parent_pid else None
        if self.config.exit_on_stdin_eof:
            threading.Thread(target=self._watch_stdin, name="clickgs-stdin", daemon=True).start()
        next_parent_check = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if parent_alive is not None and now >= next_parent_check:
                    next_parent_check = now + 0.5
                    if not parent_alive():
                        self.request_shutdown(f"the launching process {self.config.parent_pid} has exited")
                        break
                if self.config.idle_timeout_s > 0:
                    with self._lock:
                        busy = self._active is not None or self._job is not None
                    if busy:
                        self._last_client_seen = now
                    elif now - self._last_client_seen > self.config.idle_timeout_s:
                        self.request_shutdown(f"no client for {self.config.idle_timeout_s:g} s")
                        break
                try:
                    sock, addr = self._listener.accept()
                except socket.timeout:
                    continue
                except OSError as exc:
                    if self._stop.is_set():
                        break
                    log.warning("accept failed: %s", exc)
                    time.sleep(0.05)
                    continue
                conn = _Connection(self, sock, addr)
                with self._lock:
                    pending = [c for c in self._connections if not c.authenticated and not c.closed.is_set()]
                    oldest = min(pending, key=lambda c: c.accepted_at) if len(pending) >= MAX_PENDING_LOGINS else None
                    if oldest is not None:
                        self._connections.discard(oldest)
                    self._connections.add(conn)
                if oldest is not None:  # bounds threads and sockets; see MAX_PENDING_LOGINS
                    oldest.refuse(EngineBusy(
                        f"the engine is busy: {MAX_PENDING_LOGINS} connections were logging in at once and this one "
                        "had waited longest; try again"))
                threading.Thread(target=self._serve_connection, args=(conn,), name=f"clickgs-conn-{conn.name}",
                                 daemon=True).start()
        finally:
            self._close_all()
        return self.stop_reason

    def _watch_stdin(self) -> None:
        # os.read on the descriptor, not sys.stdin: a daemon thread blocked inside a buffered
        # reader aborts the interpreter at exit.
        try:
            fd = sys.stdin.fileno() if sys.stdin is not None else -1
            while fd >= 0 and os.read(fd, 65536):
                pass
        except (OSError, ValueError):
            pass
        self.request_shutdown("stdin was closed (the launching process is gone)")

    def _close_all(self) -> None:
        self._stop.set()
        with self._lock:
            job = self._job
            conns = list(self._connections)
        if job is not None:
            job.request.cancel.set()
        if self._listener is not None:
            try:
                self._listener.close()
            except OSError:
                pass
        if job is not None:
            job.thread.join(timeout=15.0)
            if job.thread.is_alive():
                log.warning("job %r did not stop within 15 s of cancellation", job.request.command)
        self._query_pool.shutdown(wait=False, cancel_futures=True)
        for c in conns:
            c.close()
        log.info("engine stopped (%s)", self.stop_reason or "closed")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a thread started by start() to finish; True if it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ------------------------------------------------------------------ connections

    def _serve_connection(self, conn: _Connection) -> None:
        log.info("connection from %s", conn.name)
        try:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # dead remote peers
        except OSError:
            pass
        reason = "closed by the client"
        try:
            conn.sock.settimeout(self.config.auth_timeout_s)  # until read_into takes over the deadline
            conn.send(P.event_header(0, "hello", "challenge", {
                "nonce": conn.nonce, "protocol": P.PROTOCOL_VERSION, "engine": __version__}))
            while not conn.closed.is_set() and not self._stop.is_set():
                limit = self.config.max_frame_bytes if conn.authenticated else P.PRE_AUTH_MAX_FRAME_BYTES
                try:
                    msg = P.read_message(conn.read_into, limit)
                except socket.timeout:
                    if not conn.authenticated:
                        conn.refuse(LoginTimeout(
                            f"login timed out: no valid hello within {self.config.auth_timeout_s:g} s of connecting"))
                    else:
                        reason = f"silent for more than {self.config.heartbeat_timeout_s:g} s (heartbeat timeout)"
                    break
                except (P.ProtocolError, MemoryError) as exc:
                    if isinstance(exc, MemoryError):
                        exc = P.FrameTooLarge("the engine has not enough memory for a frame that large")
                    reason = f"protocol error: {exc}"
                    log.warning("%s sent a malformed frame: %s", conn.name, exc)
                    # The stream position is lost, so the connection ends; the peer hears why
                    # first (best effort: it may not be listening).
                    conn.send(P.error_header(0, "", type(exc).__name__, str(exc)))
                    break
                if msg is None:
                    break
                if not self._handle(conn, msg):
                    reason = "closed by the engine"
                    break
        except OSError as exc:
            if not conn.closed.is_set():
                reason = f"connection error: {exc}"
        except Exception as exc:  # noqa: BLE001 - a bug: into the log and to the peer, not to stderr
            reason = f"internal engine error: {type(exc).__name__}: {exc}"
            log.exception("connection %s failed", conn.name)
            conn.send_error(0, "", exc)
        finally:
            self._drop(conn, reason)

    def _drop(self, conn: _Connection, reason: str) -> None:
        # the client's slot is freed before the socket closes: a client that reconnects as soon
        # as it sees the close must not be refused as a second client
        with self._lock:
            self._connections.discard(conn)
            was_active = self._active is conn
            if was_active:
                self._active = None
                self._last_client_seen = time.monotonic()
            job = self._job if self._job is not None and self._job.conn is conn else None
        conn.close()
        reason = conn.refused or reason
        if job is not None and not job.request.cancel.is_set():
            log.warning("client %s went away during job %r (request %d): cancelling it",
                        conn.name, job.request.command, job.request.id)
            job.request.cancel.set()
        log.info("connection %s ended: %s", conn.name, reason)

    def _handle(self, conn: _Connection, msg: P.Message) -> bool:
        """Handle one frame; False closes the connection."""
        h = msg.header
        rid, command = h["id"], h["command"]
        if h["v"] != P.PROTOCOL_VERSION:
            conn.send_error(rid, command, ProtocolVersionError(
                f"the client speaks protocol {h['v']} but this engine ({__version__}) speaks {P.PROTOCOL_VERSION};"
                " use the engine shipped with this add-on version"))
            return conn.authenticated
        if h["kind"] != "request":
            if not conn.authenticated:
                conn.send_error(rid, command, AuthenticationError("expected a hello request first"))
                return False
            return True  # the client sends only requests; ignore anything else
        if not conn.authenticated:
            if command != "hello":
                conn.send_error(rid, command, AuthenticationError("the first request must be 'hello' with the engine token"))
                return False
            return self._hello(conn, rid, h.get("args"))
        args = h.get("args")
        if not isinstance(args, dict):
            conn.send_error(rid, command, BadRequest(f"request {command!r}: 'args' must be a JSON object"))
            return True
        cmd = self.commands.get(command)
        if cmd is None:
            conn.send_error(rid, command, UnknownCommand(
                f"unknown command {command!r}; this engine knows: {', '.join(sorted(self.commands))}"))
            return True
        req = Request(rid, command, args, msg.arrays, threading.Event(), self._emitter(conn, rid, command))
        if cmd.lane == "control":
            self._run(conn, cmd, req)
        elif cmd.lane == "query":
            try:
                self._refuse_if_busy(cmd)
                self._query_pool.submit(self._run_query, conn, cmd, req)
            except (EngineError, RuntimeError) as exc:  # RuntimeError: pool shut down
                conn.send_error(rid, command, exc if isinstance(exc, EngineError) else EngineBusy("the engine is stopping"))
        else:
            self._start_job(conn, cmd, req)
        return not (command == "shutdown" and self._stop.is_set())

    def _hello(self, conn: _Connection, rid: int, args: object) -> bool:
        args = args if isinstance(args, dict) else {}
        version = args.get("protocol")
        if version != P.PROTOCOL_VERSION:
            conn.send_error(rid, "hello", ProtocolVersionError(
                f"the client speaks protocol {version!r} but this engine ({__version__}) speaks {P.PROTOCOL_VERSION};"
                " use the engine shipped with this add-on version"))
            return False
        if not P.check_auth(self.config.token, conn.nonce, args.get("auth")):
            log.warning("refused %s: wrong token", conn.name)
            conn.send_error(rid, "hello", AuthenticationError(
                "the engine refused the connection: wrong token (is another program using this port?)"))
            return False
        with self._lock:
            other = self._active
            if other is None and not conn.closed.is_set():
                self._active = conn
                conn.authenticated = True  # under the lock: the accept loop counts pending logins
        if conn.closed.is_set():
            return False
        if other is not None:
            since = time.strftime("%H:%M:%S", time.localtime(other.connected_at))
            log.warning("refused %s: already serving %s", conn.name, other.name)
            conn.send_error(rid, "hello", EngineBusy(
                f"this engine already serves another client (connected at {since}); it serves one client at a time"))
            return False
        conn.sock.settimeout(self.config.heartbeat_timeout_s or None)
        log.info("client %s authenticated (%s)", conn.name, args.get("client", "unknown client"))
        conn.send(P.reply_header(rid, "hello", self.describe()))
        return True

    def describe(self) -> dict[str, Any]:
        return {"engine": __version__, "protocol": P.PROTOCOL_VERSION, "pid": os.getpid(),
                "log": self.config.log_path, "commands": sorted(self.commands),
                "max_frame_bytes": self.config.max_frame_bytes, "heartbeat_timeout_s": self.config.heartbeat_timeout_s,
                "python_version": sys.version.split()[0], **self.info}

    # ------------------------------------------------------------------ running commands

    def _emitter(self, conn: _Connection, rid: int, command: str) -> Callable[[str, dict[str, Any]], None]:
        last = [0.0]

        def emit(event: str, data: dict[str, Any]) -> None:
            now = time.monotonic()
            done = data.get("iteration", data.get("done"))
            final = bool(data.get("final")) or ("total" in data and done is not None and done >= data["total"])
            if event == "progress" and not final and now - last[0] < self.config.progress_interval_s:
                return  # throttled; status still sees the latest state
            last[0] = now
            conn.send(P.event_header(rid, command, event, data))

        return emit

    def _run(self, conn: _Connection, cmd: Command, req: Request) -> None:
        self._deliver(conn, req, self._execute(cmd, req))

    def _execute(self, cmd: Command, req: Request) -> list | BaseException:
        """Run a handler: the encoded reply frame, or the exception it raised."""
        try:
            result, arrays = cmd.handler(self, req)
            return P.encode_frame(P.reply_header(req.id, req.command, result), arrays)  # may fail: a bug
        except BaseException as exc:  # noqa: BLE001 - every failure becomes an error reply
            return exc

    @staticmethod
    def _deliver(conn: _Connection, req: Request, outcome: list | BaseException) -> None:
        if isinstance(outcome, BaseException):
            conn.send_error(req.id, req.command, outcome)
        else:
            conn.send_buffers(outcome, req.command)

    def _refuse_if_busy(self, cmd: Command) -> None:
        if not cmd.mutating:
            return
        with self._lock:
            job = self._job
        if job is not None:
            raise EngineBusy(f"cannot {cmd.name} while {job.request.command!r} runs (request {job.request.id});"
                             " wait for it or cancel it")

    def _run_query(self, conn: _Connection, cmd: Command, req: Request) -> None:
        if conn.closed.is_set():
            return
        try:
            self._refuse_if_busy(cmd)
        except EngineBusy as exc:
            conn.send_error(req.id, req.command, exc)
            return
        self._run(conn, cmd, req)

    def _start_job(self, conn: _Connection, cmd: Command, req: Request) -> None:
        with self._lock:
            running = self._job
            if running is None:
                thread = threading.Thread(target=self._run_job, args=(conn, cmd, req), name=f"clickgs-job-{cmd.name}",
                                          daemon=True)
                self._job = _Job(req, conn, thread, time.monotonic())
        if running is not None:
            conn.send_error(req.id, req.command, EngineBusy(
                f"{running.request.command!r} is already running (request {running.request.id});"
                " the engine runs one job at a time: wait for it or cancel it"))
            return
        log.info("job %r started (request %d)", req.command, req.id)
        thread.start()

    def _run_job(self, conn: _Connection, cmd: Command, req: Request) -> None:
        outcome: list | BaseException = EngineError("the job did not finish")
        try:
            outcome = self._execute(cmd, req)
        finally:
            # The engine is free again before the client hears the reply, so its next request
            # (status, another job) never sees this job as still running.
            with self._lock:
                job, self._job = self._job, None
            elapsed = time.monotonic() - job.started if job else 0.0
            log.info("job %r (request %d) finished after %.1f s%s", req.command, req.id, elapsed,
                     " (cancelled)" if req.cancel.is_set() else "")
            self._deliver(conn, req, outcome)

    def job_status(self) -> dict[str, Any] | None:
        with self._lock:
            job = self._job
        if job is None:
            return None
        return {"id": job.request.id, "command": job.request.command,
                "running_s": round(time.monotonic() - job.started, 3),
                "cancelling": job.request.cancel.is_set(), "progress": dict(job.request.progress_state)}

    def cancel_job(self, request_id: int | None) -> bool:
        with self._lock:
            job = self._job
        if job is None or (request_id is not None and job.request.id != request_id):
            return False
        log.info("cancelling job %r (request %d)", job.request.command, job.request.id)
        job.request.cancel.set()
        return True


COMMANDS: dict[str, Command] = build_commands()
