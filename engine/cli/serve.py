"""``python -m engine serve`` — run the engine server for the Blender extension.

The token comes from the environment variable ``CLICKGS_TOKEN`` or, with ``--token-stdin``, from
the first line of stdin — never from the command line (other users can read command lines).
With ``--generate-token`` the engine makes its own token and prints it in the ready line (for
an engine started by hand on a remote GPU machine: copy port and token into the add-on's
preferences and forward the port with ``ssh -L``). When ready, one JSON line goes to stdout::

    {"ready": true, "host": "127.0.0.1", "port": 50123, "pid": 4242, "protocol": 1,
     "engine": "0.1.0", "log": "<log folder>/engine-4242.log", "torch": "2.14.1", "cuda": false, ...}

and nothing else is written to stdout afterwards. The log (everything the engine does, with
tracebacks of internal errors) goes to ``--log`` (default: a file in the temp folder, named in
the ready line). Exits 0 when stopped (shutdown command, SIGTERM/SIGINT, parent gone, stdin
closed, idle timeout), 2 with a one-line ``error: ...`` on stderr when it cannot start.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import ipaddress
import json
import logging
import os
import signal
import sys
import tempfile

from .. import __version__
from ..link import protocol as P
from ..core.errors import EngineError
from ..serve.server import DEFAULT_HEARTBEAT_TIMEOUT_S

TOKEN_ENV = "CLICKGS_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="TCP port (0 = any free port, announced on stdout)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; use an SSH tunnel rather than exposing it)")
    parser.add_argument("--log", default=None, help="log file (default: a file in the temp folder)")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process exits")
    parser.add_argument("--token-stdin", action="store_true",
                        help=f"read the token from the first line of stdin (else from ${TOKEN_ENV})")
    parser.add_argument("--generate-token", action="store_true",
                        help="make a random token and print it in the ready line (for an engine started by hand, "
                             "e.g. on a GPU machine reached through an SSH tunnel)")
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="exit when stdin is closed (the launcher keeps the pipe open while it lives)")
    parser.add_argument("--idle-timeout", type=float, default=0.0, help="exit after this many seconds without a client (0 = never)")
    parser.add_argument("--heartbeat-timeout", type=float, default=DEFAULT_HEARTBEAT_TIMEOUT_S,
                        help="drop a client silent for this many seconds, so a vanished client frees the "
                             f"engine (0 = never; default {DEFAULT_HEARTBEAT_TIMEOUT_S:g}; clients ping well within it)")
    parser.add_argument("--max-frame-mb", type=float, default=P.DEFAULT_MAX_FRAME_BYTES / 2**20,
                        help="largest accepted message in MiB")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="torch device")
    parser.add_argument("--cache-dir", default=None, help="folder for mask caches (default: beside the scene)")


def _read_token(args: argparse.Namespace) -> str:
    token = os.environ.pop(TOKEN_ENV, "")  # not inherited by anything we start
    if args.generate_token:
        import secrets

        return secrets.token_hex(32)
    if args.token_stdin:
        line = sys.stdin.readline()
        token = line.strip() or token
    if not token:
        raise EngineError(f"no token: set {TOKEN_ENV} or pass --token-stdin and write it on stdin "
                          "(the token is never taken from the command line)")
    if len(token) < 16:
        raise EngineError("the token is too short (at least 16 characters; the launcher uses 64 random hex digits)")
    return token


def device_info(device: str) -> dict:
    """torch / CUDA / gsplat facts for the ready line (raises EngineError when torch is missing)."""
    try:
        import torch
    except ImportError as exc:
        raise EngineError(f"torch is not installed in this Python ({sys.executable}): {exc}; "
                          "point the add-on at the engine's environment (the one set up by scripts/setup.sh)") from None
    cuda = bool(torch.cuda.is_available())
    if device == "cuda" and not cuda:
        raise EngineError("--device cuda was asked for but torch sees no CUDA GPU")
    info = {"python": sys.executable, "torch": torch.__version__, "cuda": cuda,
            "device": ("cuda" if cuda else "cpu") if device == "auto" else device}
    if cuda:
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        info["gsplat"] = importlib.metadata.version("gsplat")
    except importlib.metadata.PackageNotFoundError:
        info["gsplat"] = None
    return info


def _setup_logging(path: str | None) -> str:
    if not path:
        folder = os.path.join(tempfile.gettempdir(), "clickgs")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"engine-{os.getpid()}.log")
    path = os.path.abspath(path)
    try:
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        raise EngineError(f"cannot write the engine log {path}: {exc.strerror or exc}") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    for name in ("clickgs", "py.warnings"):  # library warnings (cameras, masks) land in the log too
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
    logging.captureWarnings(True)
    return path


def run(args: argparse.Namespace) -> int:
    from ..serve.server import EngineServer, ServerConfig
    from ..serve.session import EngineSession

    token = _read_token(args)
    log_path = _setup_logging(args.log)
    log = logging.getLogger("clickgs.engine")
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        log.warning("binding to %s: reachable from other machines (token required, traffic not encrypted)", args.host)
    info = device_info(args.device)
    log.info("engine %s, python %s, torch %s, cuda %s, gsplat %s", __version__, sys.version.split()[0], info["torch"],
             info["cuda"], info["gsplat"])
    config = ServerConfig(token=token, host=args.host, port=args.port,
                          max_frame_bytes=int(args.max_frame_mb * 2**20), heartbeat_timeout_s=args.heartbeat_timeout,
                          idle_timeout_s=args.idle_timeout, parent_pid=args.parent_pid,
                          exit_on_stdin_eof=args.exit_on_stdin_eof, log_path=log_path)
    server = EngineServer(config, EngineSession(device=info["device"], cache_dir=args.cache_dir))
    server.info.update(info)
    port = server.bind()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: server.request_shutdown(f"signal {signal.Signals(signum).name}"))
    ready = {"ready": True, "host": args.host, "port": port, "pid": os.getpid(), "protocol": P.PROTOCOL_VERSION,
             "engine": __version__, "log": log_path, **info}
    if args.generate_token:
        ready["token"] = token  # the person who started it needs it; it is not on the command line
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    reason = server.serve_forever()
    log.info("exit: %s", reason)
    return 0
