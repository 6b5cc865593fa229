"""Helpers for the format tests: the fox with generated SH, the round-trip comparison, and
PlayCanvas splat-transform (installed by scripts/setup_splat_transform.sh into tools/)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from engine.core.scene import GaussianScene

REPO = Path(__file__).resolve().parents[1]
SPLAT_TRANSFORM = REPO / "tools" / "splat-transform" / "node_modules" / ".bin" / "splat-transform"


def splat_transform(*args: str) -> None:
    """Run splat-transform (overwriting outputs); skip the test with the reason when missing."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the splat-transform cross-check needs node and npm")
    if not SPLAT_TRANSFORM.exists():
        pytest.skip("splat-transform is not installed: run scripts/setup_splat_transform.sh")
    done = subprocess.run([str(SPLAT_TRANSFORM), "-q", "-w", *args], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def with_sh(scene: GaussianScene, degree: int = 3, seed: int = 0) -> GaussianScene:
    """The scene with SH of ``degree`` generated (smooth in space: a function of the position,
    so a palette can represent it, plus a little noise), built at run time."""
    k = (degree + 1) ** 2 - 1
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((3, k * 3)).astype(np.float32)
    pos = (scene.means - scene.means.mean(0)) / (scene.means.std(0) + 1e-6)
    sh = np.tanh(pos @ basis) * 0.3 + rng.standard_normal((scene.num_gaussians, k * 3)) * 0.01
    out = scene.subset(np.arange(scene.num_gaussians))
    out.sh_rest = sh.reshape(-1, k, 3).astype(np.float32)
    out.layout = None
    return out


def quat_error(a: GaussianScene, b: GaussianScene) -> np.ndarray:
    """[N] largest component difference of the unit quaternions, sign aligned (q ~ -q)."""
    qa, qb = a.unit_quats(), b.unit_quats()
    return np.minimum(np.abs(qa - qb).max(1), np.abs(qa + qb).max(1))


def match_by_position(ref: GaussianScene, other: GaussianScene) -> GaussianScene:
    """``ref`` reordered to ``other``'s order (splat-transform writes Morton order): each of
    other's Gaussians gets ref's nearest by position."""
    from scipy.spatial import cKDTree

    _, idx = cKDTree(ref.means).query(other.means)
    return ref.subset(idx)
