"""Build the installable Blender extension zip.

    .venv/bin/python scripts/build_extension.py [--out dist] [--wheel-dir DIR]

Assembles a staging folder with the manifest (repository root), the add-on package
``click_gaussian_blender/`` and a real copy of ``engine/`` inside it (the repository holds a
symlink there; the copy dereferences it), leaving out tests and caches; fetches the pure-Python
wheels the manifest lists (``pip download --no-deps``, cached in ``build/wheels``; or taken from
``--wheel-dir``); builds with Blender's own ``blender_ext.py build`` and checks the result with
``blender_ext.py validate``. Writes ``<out>/click_gaussian_blender-<version>.zip`` and prints its
path. Exit status 0 on success, 1 with a one-line message otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ADDON = "click_gaussian_blender"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".pytest_cache", "tests", "*.zip")


class BuildError(Exception):
    pass


def find_blender_ext() -> Path:
    """Path of Blender's extension command line tool, from the installed bpy module."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.origin:
        raise BuildError("bpy is not installed in this Python; it provides blender_ext.py")
    found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise BuildError(f"blender_ext.py not found under {Path(spec.origin).parent}")
    return found[-1]


def fetch_wheels(names: list[str], wheel_dir: Path | None, dest: Path) -> None:
    """Copy each wheel file named in the manifest into ``dest``; download missing ones from
    the package registry into the build cache first (pure-Python wheels, no dependencies)."""
    cache = REPO / "build" / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        for folder in (wheel_dir, cache):
            if folder is not None and (folder / name).is_file():
                shutil.copy2(folder / name, dest / name)
                break
        else:
            dist, version = name.split("-")[:2]
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as part:  # atomic: concurrent builds
                cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                       "--only-binary=:all:", "-d", part, f"{dist}=={version}"]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0 or not (Path(part) / name).is_file():
                    raise BuildError(f"could not download wheel {name}: "
                                     f"{' '.join(res.stderr.strip().splitlines()[-1:])}")
                os.replace(Path(part) / name, cache / name)
            shutil.copy2(cache / name, dest / name)


def stage(staging: Path, wheel_dir: Path | None) -> dict:
    manifest_path = REPO / "blender_manifest.toml"
    with open(manifest_path, "rb") as f:
        manifest = tomllib.load(f)
    shutil.copytree(REPO / ADDON, staging, symlinks=False, ignore=IGNORE)  # follows engine/ link
    if not (staging / "engine" / "__init__.py").is_file():
        raise BuildError(f"{ADDON}/engine does not lead to the engine package")
    shutil.copy2(manifest_path, staging / "blender_manifest.toml")
    wheels = [os.path.basename(w) for w in manifest.get("wheels", [])]
    fetch_wheels(wheels, wheel_dir, staging / "wheels")
    return manifest


def run_tool(tool: Path, *args: str) -> None:
    res = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True)
    if res.returncode != 0:
        msg = (res.stdout + res.stderr).strip().replace("\n", " | ")
        raise BuildError(f"blender_ext {args[0]} failed: {msg}")


def build(out_dir: Path, wheel_dir: Path | None = None) -> Path:
    """Build and validate the extension zip; returns its path."""
    tool = find_blender_ext()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cgs_ext_") as tmp:
        staging = Path(tmp) / ADDON
        manifest = stage(staging, wheel_dir)
        run_tool(tool, "validate", str(staging))
        target = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
        partial = Path(tmp) / target.name
        run_tool(tool, "build", "--source-dir", str(staging), "--output-filepath", str(partial))
        run_tool(tool, "validate", str(partial))
        shutil.copy2(partial, str(target) + ".part")
        os.replace(str(target) + ".part", target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output folder (default: dist/)")
    parser.add_argument("--wheel-dir", type=Path, default=None,
                        help="folder holding the manifest's wheels (default: download into build/wheels)")
    args = parser.parse_args(argv)
    try:
        path = build(args.out.resolve(), args.wheel_dir)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
