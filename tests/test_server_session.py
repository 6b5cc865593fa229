"""Session commands through the server on real data (no training): scene upload, cameras from
the wire, from a file and orbits, photos, mask sources, rendering and features files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.link.client import EngineClient, RemoteError
from engine.core.errors import CameraError, EngineError, MaskError, TrainingError
from engine.serve.server import EngineServer, ServerConfig
from engine.serve.session import EngineSession

TOKEN = "session-test-token-" + "ef" * 16


@pytest.fixture()
def client():
    srv = EngineServer(ServerConfig(token=TOKEN), EngineSession(device="cpu"))
    srv.start()
    c = EngineClient.connect("127.0.0.1", srv.port, TOKEN, timeout=10, heartbeat_s=0)
    c.server = srv  # type: ignore[attr-defined]
    yield c
    c.close()
    srv.request_shutdown("test over")
    assert srv.wait(20)


@pytest.fixture(scope="module")
def fox(fox_path: Path):
    from engine.core.formats.ply import read_ply

    return read_ply(fox_path)


def test_render_through_the_server_equals_a_direct_render(client: EngineClient, fox) -> None:
    from engine.core.cameras import orbit_cameras
    from engine.render.gaussians import Gaussians
    from engine.render.renderer import render

    assert client.upload_scene(fox, "fox").result(60)["num_gaussians"] == 50_000
    cams = orbit_cameras(fox, 2, 64, 48)
    photo = np.full((48, 64, 3), 200, np.uint8)
    info = client.set_cameras(cams, [photo, None]).result(30)
    assert info["num_cameras"] == 2 and info["num_images"] == 1
    assert np.array_equal(client.server.session.images[0], photo)
    by_index = client.render(1).result(60)
    by_camera = client.render(cams[1]).result(60)
    direct = render(Gaussians.from_scene(fox, "cpu"), cams[1])
    want = direct.values.numpy()
    assert by_index["image"].shape == (48, 64, 3) and by_index["image"].dtype == np.float32
    assert np.allclose(by_index["image"], want, atol=1e-5)
    assert np.allclose(by_camera["image"], want, atol=1e-5)
    assert np.allclose(by_index["alpha"], direct.alpha.numpy(), atol=1e-5)
    with pytest.raises(EngineError, match="no trained features"):
        client.render(0, "coarse").result(30)
    with pytest.raises(CameraError, match="outside 0..1"):
        client.render(5).result(30)
    with pytest.raises(RemoteError, match="must be one of rgb, coarse, fine"):
        client.render(0, "normals").result(30)


def test_bad_camera_images_are_refused(client: EngineClient, fox) -> None:
    from engine.core.cameras import orbit_cameras

    client.upload_scene(fox).result(60)
    cams = orbit_cameras(fox, 1, 32, 32)
    with pytest.raises(CameraError, match="is 16x16, camera is 32x32"):
        client.set_cameras(cams, [np.zeros((16, 16, 3), np.uint8)]).result(30)
    with pytest.raises(CameraError, match="must be uint8"):
        client.set_cameras(cams, [np.zeros((32, 32, 3), np.float32)]).result(30)
    with pytest.raises(RemoteError, match="has no camera"):
        client.call("set_cameras", {"cameras": []}, {"image:3": np.zeros((2, 2, 3), np.uint8)})


def test_cameras_from_a_file_and_orbits(client: EngineClient, shared_data: Path, fox) -> None:
    client.upload_scene(fox).result(60)
    info = client.load_cameras(str(shared_data / "garden_cameras.npz")).result(30)
    assert info["num_cameras"] == 3 and info["sizes"] == [[648, 420]]
    with pytest.raises(CameraError, match="not found"):
        client.load_cameras("/nonexistent/sparse/0").result(30)
    assert client.orbit_cameras(6, 40, 30).result(30)["num_cameras"] == 6
    with pytest.raises(CameraError, match="orbit views"):
        client.orbit_cameras(0, 40, 30).result(30)


def test_mask_sources(client: EngineClient, tmp_path: Path) -> None:
    assert "lower quality" in client.set_masks_source("builtin").result(30)["quality"]
    with pytest.raises(MaskError, match="needs a checkpoint"):
        client.set_masks_source("sam").result(30)
    with pytest.raises(MaskError, match="not found"):
        client.set_masks_source("folder", folder=str(tmp_path / "nope")).result(30)
    assert client.set_masks_source("folder", folder=str(tmp_path)).result(30)["kind"] == "folder"
    with pytest.raises(RemoteError, match="must be one of builtin, sam, folder"):
        client.set_masks_source("magic").result(30)


def test_features_file_load_and_fetch(client: EngineClient, fox, tmp_path: Path) -> None:
    from engine.core.features import TrainedFeatures, scene_hash

    n = fox.num_gaussians
    rng = np.random.default_rng(3)
    feats = TrainedFeatures(rng.standard_normal((n, 24)).astype(np.float16),
                            np.eye(2, 12, dtype=np.float32), np.eye(3, 24, dtype=np.float32),
                            rng.integers(-1, 2, n).astype(np.int32), rng.integers(-1, 3, n).astype(np.int32),
                            settings={"iterations": 7}, scene_hash=scene_hash(fox))
    good = feats.save(tmp_path / "fox.clickgs.npz")
    stale = TrainedFeatures(feats.features, feats.coarse_centers, feats.fine_centers, feats.coarse_labels,
                            feats.fine_labels, scene_hash="0" * 40).save(tmp_path / "stale.clickgs.npz")
    with pytest.raises(EngineError, match="no scene is loaded"):
        client.load_features(good).result(30)
    client.upload_scene(fox).result(60)
    with pytest.raises(TrainingError, match="different version"):
        client.load_features(stale).result(30)
    with pytest.raises(TrainingError, match="no trained features"):
        client.get_features().result(30)
    info = client.load_features(good).result(30)
    assert info["coarse_clusters"] == 2 and info["fine_clusters"] == 3
    got = client.get_features().result(30).features()
    assert np.array_equal(got.features.view(np.uint16), feats.features.view(np.uint16))
    assert np.array_equal(got.fine_labels, feats.fine_labels) and got.settings == {"iterations": 7}
    assert client.status().result(10)["session"]["features"]["path"] == str(good)
    out = tmp_path / "copy.clickgs.npz"
    assert client.call("save_features", {"path": str(out)}).result["path"] == str(out)
    assert TrainedFeatures.load(out, fox).scene_hash == feats.scene_hash


def test_mask_warnings_reach_the_caller(fox) -> None:
    """A view where the mask source finds nothing is a warning in the progress stream and in the
    result (not only a Python warning in the engine's log)."""
    from engine.masks.source import MaskSourceBase

    class HalfBlind(MaskSourceBase):
        name, quality, cacheable = "halfblind", "test", False

        def __init__(self) -> None:
            self.calls = 0

        def segments(self, image, cancel=None, report=None):
            self.calls += 1
            if self.calls == 1:
                return []
            h, w = image.shape[:2]
            seg = np.zeros((h, w), bool)
            seg[: h // 2] = True
            return [{"segmentation": seg, "area": int(seg.sum())}, {"segmentation": ~seg, "area": int((~seg).sum())}]

    s = EngineSession(device="cpu")
    s.set_scene(fox.subset(np.arange(0, 50_000, 25)))
    s.orbit_cameras(2, 32, 32)
    s.mask_source, s.mask_source_desc = HalfBlind(), {"kind": "test"}
    events: list[dict] = []
    out = s.prepare_masks(progress=events.append)
    assert len(out["warnings"]) == 1 and "orbit_000" in out["warnings"][0]
    assert [e["message"] for e in events if e.get("phase") == "warning"] == out["warnings"]


def test_training_publishes_a_provisional_result_that_clicks(fox, monkeypatch) -> None:
    """An intermediate result becomes the session's features during the run (clickable, marked
    provisional in the summary and in a progress event); the final one replaces it."""
    from engine.train import trainer as T

    monkeypatch.setattr(T, "FIRST_RESULT_ITERATION", 10)
    monkeypatch.setattr(T, "RESULT_INTERVAL", 1000)
    s = EngineSession(device="cpu")
    s.set_scene(fox.subset(np.arange(0, 50_000, 25)))
    s.orbit_cameras(4, 48, 48)
    seen: list[dict] = []

    def progress(e: dict) -> None:
        if "provisional_result" in e:
            summary = s.status()["features"]
            seen.append(summary)
            s.click(0, 24, 24)  # clicking works during training

    out = s.train({"iterations": 30, "pixels_per_iter": 200}, progress=progress)
    assert len(seen) == 1 and seen[0]["provisional"] is True
    assert out["provisional"] is False and s.status()["features"]["provisional"] is False
