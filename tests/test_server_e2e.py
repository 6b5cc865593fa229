"""End to end through a real engine process: launch it, load the fox, train a few iterations with
progress events, cancel a run, fetch the 50k features, click, segment, render, shut down — and
check that no process is left behind. The engine writes only under tmp_path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.link.client import EngineClient
from engine.core.errors import Cancelled, EngineError
from engine.link.launcher import EngineProcess, launch_engine

from _proc import pid_running as _pid_running

pytestmark = pytest.mark.slow

SHORT = {"iterations": 4, "pixels_per_iter": 512, "gfl_start": 2, "gfl_interval": 100, "checkpoint_every": 1000,
         "spatial_samples": 5000, "gfl_samples": 5000}


def _needs(module: str, name: str) -> None:
    try:
        mod = __import__(module, fromlist=[name])
        getattr(mod, name)
    except (ImportError, AttributeError):
        pytest.skip(f"{module}.{name} is not in this version of the engine")


class Link:
    """The engine process, the current client connection and the test's folder."""

    def __init__(self, ep: EngineProcess, client: EngineClient, tmp: Path) -> None:
        self.ep, self.client, self.tmp = ep, client, tmp

    def __iter__(self):
        return iter((self.ep, self.client))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, fox_path: Path):
    _needs("engine.masks", "prepare_masks")
    _needs("engine.train", "train")
    tmp = tmp_path_factory.mktemp("e2e")
    ep = launch_engine(sys.executable, device="cpu", log_path=str(tmp / "engine.log"),
                       extra_args=["--cache-dir", str(tmp / "cache")])
    link = Link(ep, ep.connect(timeout=20), tmp)
    yield link
    if ep.alive():
        link.client.close()
        ep.stop(timeout=10)


def test_load_scene_and_views(engine: Link, fox_path: Path) -> None:
    ep, c = engine
    info = c.load_scene(str(fox_path)).result(60)
    assert info["num_gaussians"] == 50_000 and info["sh_degree"] == 0
    assert c.orbit_cameras(4, 96, 96).result(60)["num_cameras"] == 4
    assert c.set_masks_source("builtin").result(60)["kind"] == "builtin"


def test_cancel_a_training_run(engine: Link) -> None:
    ep, c = engine
    job = c.train({**SHORT, "iterations": 100_000}, save_path=str(engine.tmp / "cancelled.clickgs.npz"), timeout=300)
    end = time.monotonic() + 240
    while not job.progress and not job.done() and time.monotonic() < end:
        time.sleep(0.05)
    assert job.progress.get("phase") in ("images", "masks", "prepare", "train"), job.progress
    status = c.status().result(10)
    assert status["job"]["command"] == "train"
    job.cancel_job().result(10)
    with pytest.raises(Cancelled):
        job.result(120)
    assert c.status().result(10)["job"] is None
    assert not (engine.tmp / "cancelled.clickgs.npz").exists()


def test_train_with_progress_events(engine: Link) -> None:
    ep, c = engine
    events: list[dict] = []
    save = engine.tmp / "fox.clickgs.npz"
    job = c.train(SHORT, save_path=str(save), on_progress=events.append, timeout=300)
    summary = job.result(300)
    assert summary["num_gaussians"] == 50_000 and summary["saved_to"] == str(save) and save.is_file()
    its = [e["iteration"] for e in events if e.get("phase") == "train"]
    assert its and its == sorted(its) and max(its) <= SHORT["iterations"]
    assert any(e.get("losses") for e in events)
    assert job.progress  # the last event is kept on the future


def test_fetch_features(engine: Link) -> None:
    from engine.core.features import TrainedFeatures

    ep, c = engine
    rep = c.get_features().result(60)
    feats = rep.features()
    assert feats.features.shape == (50_000, 24) and feats.features.dtype == np.float16
    assert feats.coarse_labels.shape == (50_000,) and feats.fine_labels.dtype == np.int32
    on_disk = TrainedFeatures.load(engine.tmp / "fox.clickgs.npz")
    assert np.array_equal(on_disk.features.view(np.uint16), feats.features.view(np.uint16))
    assert np.array_equal(on_disk.coarse_labels, feats.coarse_labels)
    assert on_disk.scene_hash == feats.scene_hash


def test_click_segment_render(engine: Link) -> None:
    ep, c = engine
    image = c.render(0).result(60)
    assert image["image"].shape == (96, 96, 3) and image["alpha"].shape == (96, 96)
    assert image["alpha"][48, 48] > 0.5  # the orbit views look at the statue
    seg = c.segment(0, "coarse").result(60)["labels"]
    assert seg.shape == (96, 96) and seg.dtype == np.int32
    _needs("engine.core.click", "click_query")
    rep = c.click(0, 48.0, 48.0, "coarse").result(60)
    feats = c.get_features().result(60).features()
    sel = np.asarray(rep["selected"])
    assert rep["num_selected"] == sel.size
    assert sel.size == 0 or (sel.min() >= 0 and sel.max() < 50_000)
    if sel.size and rep.result.get("clusters"):
        assert np.isin(feats.coarse_labels[sel], rep.result["clusters"]).all()


KILLED_CLIENT = """
import json, os, sys, time
from engine.link.client import EngineClient
from engine.core.errors import EngineError
end = time.monotonic() + 30
while True:
    try:
        c = EngineClient.connect("127.0.0.1", int(sys.argv[1]), os.environ["CLICKGS_TEST_TOKEN"], heartbeat_s=0)
        break
    except EngineError:
        if time.monotonic() > end:
            raise
        time.sleep(0.2)
job = c.train(json.loads(sys.argv[2]), save_path=sys.argv[3], timeout=300)
while job.progress.get("phase") != "train" or job.progress.get("iteration", 0) < 2:
    if job.done():
        print("finished early", job.exception(), flush=True)
        sys.exit(1)
    time.sleep(0.02)
print("training", flush=True)
time.sleep(600)
"""


def test_client_killed_mid_training_then_resume(engine: Link) -> None:
    ep, c = engine
    c.close()  # one client at a time: make room for the one that will die
    save = str(engine.tmp / "killed.clickgs.npz")
    settings = {**SHORT, "iterations": 100}
    env = dict(os.environ, CLICKGS_TEST_TOKEN=ep.token, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    doomed = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, str(ep.port), json.dumps(settings), save],
                              env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert doomed.stdout.readline().strip() == "training"
        doomed.send_signal(signal.SIGKILL)  # the client dies without a word, mid-job
        doomed.wait(10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    end = time.monotonic() + 60
    while True:  # the engine notices, cancels the job (writing its checkpoint) and frees itself
        try:
            c2 = ep.connect(timeout=10)
            if c2.status().result(10)["job"] is None:
                break
            c2.close()
        except EngineError:
            pass
        assert time.monotonic() < end, "the engine did not recover from its client dying"
        time.sleep(0.2)
    assert "went away during job 'train'" in Path(ep.log_path).read_text()
    assert Path(save + ".ckpt").is_file()
    resumed = c2.train(settings, save_path=save, resume=True, timeout=300)
    end = time.monotonic() + 120
    while job_iteration(resumed) is None and not resumed.done() and time.monotonic() < end:
        time.sleep(0.02)
    first = job_iteration(resumed)
    resumed.cancel_job().result(10)
    with pytest.raises(Cancelled):
        resumed.result(120)
    assert first is not None and first >= 3  # continued from the checkpoint, not from 0
    engine.client = c2  # later tests use this connection


def job_iteration(fut) -> int | None:
    p = fut.progress
    return p.get("iteration") if p.get("phase") == "train" else None


def test_shutdown_leaves_no_process(engine: Link) -> None:
    ep, c = engine
    assert c.shutdown().result(30)["stopping"]
    assert ep.process.wait(timeout=30) == 0
    end = time.monotonic() + 10
    while _pid_running(ep.pid) and time.monotonic() < end:
        time.sleep(0.05)
    assert not _pid_running(ep.pid)
    children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == ep.pid]
    assert children == []


def _ppid(proc_dir: Path) -> int:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1
