"""``python -m engine.bench transfer`` — array transfer engine -> client over loopback TCP.

Starts an engine server in a child process holding N x 24 float16 trained features (random,
seeded), connects the real client, and times complete calls (request sent -> reply decoded into
numpy arrays) after one warm-up call:

- ``features only``: the N x 24 float16 array alone (the issue's figure; target < 100 ms at 1M);
- ``get_features``: the real command (features + both label arrays + cluster centres);
- ``ping``: a small request/reply round trip (the protocol's fixed cost per call).

The first received array is checked bit-for-bit against the seeded data. Prints plain
``label: value unit`` lines.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _features(n: int, dim: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, dim), dtype=np.float32).astype(np.float16)


def _serve_child(n: int, dim: int) -> int:
    from ..core.features import TrainedFeatures
    from ..serve.server import COMMANDS, EngineServer, ServerConfig
    from ..serve.commands import Command
    from ..serve.session import EngineSession

    feats = _features(n, dim)
    session = EngineSession(device="cpu")
    session.trained = TrainedFeatures(feats, np.zeros((0, 12), np.float32), np.zeros((0, 24), np.float32),
                                      np.full(n, -1, np.int32), np.full(n, -1, np.int32))

    def features_only(server: object, req: object) -> tuple[dict, dict]:
        return {}, {"features": session.trained.features}

    server = EngineServer(ServerConfig(token=os.environ["CLICKGS_TOKEN"], exit_on_stdin_eof=True), session,
                          {**COMMANDS, "features_only": Command("features_only", features_only, "query", False)})
    print(json.dumps({"ready": True, "port": server.bind()}), flush=True)
    server.serve_forever()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.bench transfer", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000, help="number of Gaussians (rows)")
    p.add_argument("--dim", type=int, default=24, help="feature width")
    p.add_argument("--repeats", type=int, default=7, help="timed calls per measurement")
    p.add_argument("--serve-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.n < 1 or args.dim != 24 or args.repeats < 1:
        print("error: --n and --repeats must be positive and --dim 24 (the trained-features width)", file=sys.stderr)
        return 2
    if args.serve_child:
        return _serve_child(args.n, args.dim)

    from ..link.client import EngineClient

    token = secrets.token_hex(32)
    repo = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, CLICKGS_TOKEN=token, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-m", "engine.bench", "transfer", "--serve-child", "--n", str(args.n),
                              "--dim", str(args.dim)], cwd=repo, env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        if not line:
            print("error: the engine child did not start", file=sys.stderr)
            return 1
        port = json.loads(line)["port"]
        client = EngineClient.connect("127.0.0.1", port, token, timeout=30, heartbeat_s=0)
        expected = _features(args.n, args.dim)
        results = {}
        for command in ("features_only", "get_features"):
            first = client.call(command, timeout=120)  # warm-up (and correctness check)
            if not np.array_equal(first["features"].view(np.uint16), expected.view(np.uint16)):
                print(f"error: {command} returned different features", file=sys.stderr)
                return 1
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                rep = client.call(command, timeout=120)
                times.append((time.perf_counter() - t0) * 1000.0)
            nbytes = sum(a.nbytes for a in rep.arrays.values())
            results[command] = (times, nbytes)
        pings = []
        for _ in range(max(20, args.repeats)):
            t0 = time.perf_counter()
            client.call("ping", timeout=30)
            pings.append((time.perf_counter() - t0) * 1000.0)
        client.shutdown().result(10)
        client.close()
    finally:
        if child.stdin:
            child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
    mib = args.n * args.dim * 2 / 2**20
    print(f"transfer rows: {args.n} x {args.dim} float16 ({mib:.1f} MiB)")
    for command, (times, nbytes) in results.items():
        med = statistics.median(times)
        print(f"{command} median: {med:.1f} ms")
        print(f"{command} min: {min(times):.1f} ms")
        print(f"{command} max: {max(times):.1f} ms")
        print(f"{command} payload: {nbytes / 2**20:.1f} MiB")
        print(f"{command} throughput: {nbytes / 2**20 / (med / 1000.0):.0f} MiB/s")
    print(f"ping round trip median: {statistics.median(pings):.2f} ms")
    print(f"transfer repeats: {args.repeats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
