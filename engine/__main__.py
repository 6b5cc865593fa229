"""``python -m engine COMMAND ...`` — the engine's command line.

Each command lives in its own module ``engine/cli/<command>.py`` exposing
``add_arguments(parser)`` and ``run(args) -> int``; this file only dispatches, so commands
can be added without touching each other.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "demo": "the engine-only pipeline without Blender: views, masks, training, segments, clicks -> PNGs",
    "render": "render views of a 3DGS scene to PNG files",
    "masks": "compute two-level training masks for a scene's views and write them as PNG files",
    "train": "train Click-Gaussian features for a scene",
    "segment": "write segment-everything PNGs for a trained scene",
    "serve": "run the engine server for the Blender extension",
    "convert": "convert a scene between .ply, .compressed.ply, .splat, .spz and .sog",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    available = {}
    for name, help_text in COMMANDS.items():
        try:
            module = importlib.import_module(f".cli.{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.endswith(f"cli.{name}"):
                continue  # command not built in this version
            raise
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        available[name] = module
    args = parser.parse_args(argv)
    from .core.errors import EngineError

    try:
        return int(available[args.command].run(args) or 0)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
