"""Build the installable Blender extension zip.

    .venv/bin/python scripts/build_extension.py [--out dist] [--wheel-dir DIR]

Assembles a staging folder with the manifest (repository root), the add-on package
``click_gaussian_blender/`` and real copies of the engine's torch-free layers inside it,
``engine/__init__.py``, ``engine/core/`` and ``engine/link/`` (the repository holds a symlink
``click_gaussian_blender/engine``; the rest of the engine runs in the engine process, never in
Blender, and is left out), leaving out tests and caches; checks that nothing bundled imports
torch, gsplat, hdbscan or segment_anything, or reaches outside the bundled packages; fetches the pure-Python
wheels the manifest lists (``pip download --no-deps``, cached in ``build/wheels``; or taken from
``--wheel-dir``); builds with Blender's own ``blender_ext.py build`` and checks the result with
``blender_ext.py validate``. Writes ``<out>/click_gaussian_blender-<version>.zip`` and prints its
path. Exit status 0 on success, 1 with a one-line message otherwise.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine.core.atomic import replace_with_copy  # noqa: E402
ADDON = "click_gaussian_blender"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".pytest_cache", "tests", "*.zip")
# The engine packages Blender may import (torch-free); the zip bundles exactly these.
ENGINE_BUNDLED = ("core", "link")
FORBIDDEN = ("torch", "gsplat", "hdbscan", "segment_anything", "bpy")


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
    if not (REPO / ADDON / "engine" / "__init__.py").is_file():
        raise BuildError(f"{ADDON}/engine does not lead to the engine package")
    top_ignore = lambda folder, names: (IGNORE(folder, names)  # noqa: E731
                                        | ({"engine"} if Path(folder) == REPO / ADDON else set()))
    shutil.copytree(REPO / ADDON, staging, symlinks=False, ignore=top_ignore)
    stage_engine(staging / "engine")
    shutil.copy2(manifest_path, staging / "blender_manifest.toml")
    wheels = [os.path.basename(w) for w in manifest.get("wheels", [])]
    fetch_wheels(wheels, wheel_dir, staging / "wheels")
    return manifest


def stage_engine(dest: Path) -> None:
    """Copy ``engine/__init__.py`` and the bundled engine packages into ``dest`` and check them."""
    engine = REPO / ADDON / "engine"
    dest.mkdir(parents=True)
    shutil.copy2(engine / "__init__.py", dest / "__init__.py")
    for pkg in ENGINE_BUNDLED:
        shutil.copytree(engine / pkg, dest / pkg, symlinks=False, ignore=IGNORE)
    check_bundled_engine(dest)


def bundled_imports(engine_dir: Path) -> dict[str, set[str]]:
    """Every import (module level or inside functions) of each bundled engine file, as absolute
    names with ``engine`` for the package: ``{relative path: {module, ...}}``."""
    found = {}
    for path in sorted(engine_dir.rglob("*.py")):
        rel = path.relative_to(engine_dir.parent)
        package = list(rel.parent.parts)  # a module's package; an __init__'s is its own folder
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                    if node.module:
                        names.add(mod)
                    else:  # from . import name: a submodule or a name of the package
                        names.update(f"{mod}.{a.name}" for a in node.names)
                else:
                    names.add(node.module or "")
        found[str(rel)] = names
    return found


def check_bundled_engine(engine_dir: Path) -> None:
    """Refuse a bundle whose engine files import a torch-side library or an engine module that
    is not bundled (it would fail inside Blender, where there is no torch)."""
    for rel, names in bundled_imports(engine_dir).items():
        for name in names:
            top = name.split(".")[0]
            if top in FORBIDDEN:
                raise BuildError(f"{rel} imports {name}: the bundled engine must not need {top}")
            parts = name.split(".")
            if top == "engine" and len(parts) > 1 and parts[1] not in (*ENGINE_BUNDLED, "__version__"):
                raise BuildError(f"{rel} imports {name}, which is not bundled "
                                 f"(only engine/{{{','.join(ENGINE_BUNDLED)}}})")


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
        replace_with_copy(partial, target)
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
