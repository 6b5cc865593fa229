"""The Blender click benchmark runs end to end at a small size (two fox tiles; run, not timed): every click
selects, in both modes, after the vertices were sorted by cluster as training results are."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bpy

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("click_mode", ["replace", "add"])
def test_blender_click_bench_small(tmp_path, click_mode):
    env = {"BLENDER_USER_RESOURCES": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "engine.bench", "blender_click", "--sizes", "100000", "--clicks", "3",
                          "--click-mode", click_mode], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    assert lines["order"] == "trained" and "reorder_100k" in lines
    assert lines["click_ok_edit_100k"] == "3/3 clicks" and lines["click_ok_object_100k"] == "3/3 clicks"
    assert float(lines["click_median_edit_100k"].split()[0]) > 0
    assert int(lines["click_selected_median_edit_100k"].split()[0]) > 0
