"""Probes of the file side as a hostile or careless user would send them (issue 12): malformed
.ply headers and data, empty compressed files, bad camera files, broken features files,
features writes over files that are not features files, and a corrupt stale features file
beside a valid scene. Each must end in the engine's one-line error (an EngineError subclass,
no other exception) or in a clean result; nothing foreign may be replaced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.cameras import Camera, intrinsics, load_cameras, validate_camera
from engine.core.errors import CameraError, EngineError, SceneFormatError, TrainingError
from engine.core.features import TrainedFeatures, check_features_target, is_features_file, scene_hash
from engine.core.formats.ply import inria_vertex_dtype, read_ply, write_ply
from engine.core.scene import GaussianScene
from factories import random_scene, random_trained


REPO = Path(__file__).resolve().parents[1]
N = 40


def _scene(n: int = N, seed: int = 0) -> GaussianScene:
    return random_scene(n, seed)


def _trained(scene: GaussianScene) -> TrainedFeatures:
    return random_trained(scene, settings={"iterations": 10})


def _one_line(exc: BaseException, *names: str) -> str:
    """The message of an engine error: one line that names each of ``names``."""
    msg = str(exc)
    assert isinstance(exc, EngineError), f"{type(exc).__name__}: {msg}"
    assert "\n" not in msg, msg
    for name in names:
        assert name in msg, (name, msg)
    return msg


# =========================================================================== .ply files

_PROPS = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1",
          "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
_HEAD = ["format binary_little_endian 1.0", *(f"property float {p}" for p in _PROPS)]


def _raw(path: Path, header: list[str], body: bytes = b"") -> Path:
    path.write_bytes(("\n".join(["ply", *header, "end_header"]) + "\n").encode() + body)
    return path


def _vertex_header(count: str, fmt: str = "binary_little_endian") -> list[str]:
    return [f"format {fmt} 1.0", f"element vertex {count}", *(f"property float {p}" for p in _PROPS)]


_BAD_HEADERS = {
    "negative count": (_vertex_header("-5"), bytes(56 * 4)),
    "negative count ascii": (_vertex_header("-1", "ascii"), b"0 " * 14 + b"\n"),
    "huge count": (_vertex_header(str(10**12)), bytes(56 * 4)),
    "huge count ascii": (_vertex_header(str(2**40), "ascii"), b"0 " * 14 + b"\n"),
    "count beyond int64": (_vertex_header(str(2**64)), bytes(56)),
    "count not a number": (_vertex_header("many"), b""),
    "missing properties": (["format binary_little_endian 1.0", "element vertex 2",
                            "property float x", "property float y", "property float z"], bytes(24)),
    "truncated data": (_vertex_header("10"), bytes(56 * 3 + 5)),
    "zero vertices": (_vertex_header("0"), b""),
    "unknown format": (_vertex_header("1", "binary_middle_endian"), bytes(56)),
    "unknown type": (["format binary_little_endian 1.0", "element vertex 1", "property quad x"], bytes(16)),
    "list property": (["format binary_little_endian 1.0", "element vertex 1",
                       "property list uchar int vertex_indices"], b"\x01" + bytes(4)),
    "property before element": (["format binary_little_endian 1.0", "property float x",
                                 "element vertex 1"], bytes(4)),
    "garbage ascii values": (_vertex_header("1", "ascii"), b"a b c d e f g h i j k l m n\n"),
    "negative chunk count": (["format binary_little_endian 1.0", "element chunk -3",
                              *(f"property float {p}" for p in ("min_x", "min_y", "min_z", "max_x",
                                "max_y", "max_z", "min_scale_x", "min_scale_y", "min_scale_z",
                                "max_scale_x", "max_scale_y", "max_scale_z")),
                              "element vertex 1",
                              *(f"property uint {p}" for p in ("packed_position", "packed_rotation",
                                                                "packed_scale", "packed_color"))],
                             bytes(64)),
}


@pytest.mark.parametrize("case", sorted(_BAD_HEADERS))
def test_bad_ply_is_a_one_line_scene_error(tmp_path: Path, case: str) -> None:
    header, body = _BAD_HEADERS[case]
    path = _raw(tmp_path / "bad.ply", header, body)
    with pytest.raises(SceneFormatError) as info:
        read_ply(path)
    _one_line(info.value, "bad.ply")


@pytest.mark.parametrize("body", [b"", b"ply", b"ply\n", b"ply\nformat", b"ply\n\x00\xff" * 40,
                                  b"ply\nend_header\n", bytes(range(256))])
def test_garbage_files_are_scene_errors(tmp_path: Path, body: bytes) -> None:
    path = tmp_path / "junk.ply"
    path.write_bytes(body)
    with pytest.raises(SceneFormatError) as info:
        read_ply(path)
    _one_line(info.value, "junk.ply")


_PLY_TYPES = ["char", "uchar", "short", "ushort", "int", "uint", "float", "double", "int8",
              "float32", "quad", ""]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(["binary_little_endian", "binary_big_endian", "ascii", "bogus"]),
       count=st.one_of(st.integers(-2**40, 2**40), st.sampled_from(["", "x", "1e3", "-0", "+3"])),
       props=st.lists(st.tuples(st.sampled_from(_PLY_TYPES), st.sampled_from(_PROPS + ["nx", "q"])),
                      max_size=16),
       extra_element=st.booleans(), body=st.binary(max_size=300))
def test_generated_headers_never_escape(tmp_path: Path, fmt: str, count: object,
                                        props: list[tuple[str, str]], extra_element: bool,
                                        body: bytes) -> None:
    header = [f"format {fmt} 1.0", f"element vertex {count}",
              *(f"property {t} {n}".replace("  ", " ") for t, n in props)]
    if extra_element:
        header += ["element face 1", "property list uchar int vertex_indices"]
    path = _raw(tmp_path / "gen.ply", header, body)
    try:
        scene = read_ply(path)
    except SceneFormatError as exc:
        _one_line(exc, "gen.ply")
    else:
        assert scene.num_gaussians > 0


def _compressed_header(n_chunks: int, n_vertices: int) -> list[str]:
    return ["format binary_little_endian 1.0", f"element chunk {n_chunks}",
            *(f"property float {p}" for p in ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                                               "min_scale_x", "min_scale_y", "min_scale_z",
                                               "max_scale_x", "max_scale_y", "max_scale_z")),
            f"element vertex {n_vertices}",
            *(f"property uint {p}" for p in ("packed_position", "packed_rotation", "packed_scale",
                                              "packed_color"))]


@pytest.mark.parametrize("n_chunks", [0, 1])
def test_empty_compressed_ply_is_a_clear_error(tmp_path: Path, n_chunks: int) -> None:
    path = _raw(tmp_path / "empty.compressed.ply", _compressed_header(n_chunks, 0), bytes(48 * n_chunks))
    with pytest.raises(SceneFormatError, match="no Gaussians") as info:
        read_ply(path)
    _one_line(info.value, "empty.compressed.ply")


def test_compressed_ply_with_too_few_chunks(tmp_path: Path) -> None:
    path = _raw(tmp_path / "c.compressed.ply", _compressed_header(0, 3), bytes(48))
    with pytest.raises(SceneFormatError) as info:
        read_ply(path)
    _one_line(info.value, "c.compressed.ply")


# =========================================================================== cameras

def _npz(path: Path, **over: object) -> Path:
    arrays: dict[str, object] = {"viewmats": np.eye(4)[None].repeat(2, 0),
                                 "Ks": intrinsics(100, 100, 32, 24)[None].repeat(2, 0),
                                 "width": 64, "height": 48}
    for key, value in over.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(path, **arrays)
    return path


def _zero_view() -> np.ndarray:
    return np.zeros((2, 4, 4))


def _singular_view() -> np.ndarray:
    v = np.eye(4)[None].repeat(2, 0)
    v[1, 2, :3] = v[1, 1, :3]  # two equal rows: no inverse
    return v


def _nan(shape: tuple[int, ...], base: np.ndarray) -> np.ndarray:
    out = base.copy()
    out.reshape(-1)[0] = np.nan
    return out


_NPZ_CASES = {
    "width 0": ({"width": 0}, "width"),
    "width negative": ({"width": -64}, "width"),
    "height 0": ({"height": 0}, "height"),
    "width 10^12": ({"width": 10**12}, "width"),
    "width NaN": ({"width": np.nan}, "width"),
    "width not integer": ({"width": 64.5}, "width"),
    "width array": ({"width": np.array([64, 64])}, "width"),
    "K zero": ({"Ks": np.zeros((2, 3, 3))}, "K"),
    "K NaN": ({"Ks": _nan((2, 3, 3), intrinsics(100, 100, 32, 24)[None].repeat(2, 0))}, "K"),
    "negative focal": ({"Ks": intrinsics(-100, 100, 32, 24)[None].repeat(2, 0)}, "focal"),
    "viewmat zero": ({"viewmats": _zero_view()}, "viewmat"),
    "viewmat singular": ({"viewmats": _singular_view()}, "singular"),
    "viewmat NaN": ({"viewmats": _nan((2, 4, 4), np.eye(4)[None].repeat(2, 0))}, "viewmat"),
    "viewmat inf": ({"viewmats": np.full((2, 4, 4), np.inf)}, "viewmat"),
    "viewmat bad shape": ({"viewmats": np.zeros((2, 3, 4))}, "viewmats"),
    "no cameras": ({"viewmats": np.zeros((0, 4, 4)), "Ks": np.zeros((0, 3, 3))}, "no cameras"),
    "missing Ks": ({"Ks": None}, "Ks"),
    "string width": ({"width": "wide"}, "width"),
}


@pytest.mark.parametrize("case", sorted(_NPZ_CASES))
def test_bad_npz_cameras_are_refused_at_load(tmp_path: Path, case: str) -> None:
    over, field = _NPZ_CASES[case]
    path = _npz(tmp_path / "cams.npz", **over)
    with pytest.raises(CameraError) as info:
        load_cameras(path)
    _one_line(info.value, "cams.npz", field)


def test_npz_that_is_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "cams.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(CameraError) as info:
        load_cameras(path)
    _one_line(info.value, "cams.npz")


def _inria_entry(**over: object) -> dict:
    entry = {"id": 0, "img_name": "a", "width": 64, "height": 48, "position": [0, 0, -3],
             "rotation": np.eye(3).tolist(), "fx": 100.0, "fy": 100.0}
    entry.update(over)
    return entry


_INRIA_CASES = {
    "width 0": ({"width": 0}, "width"),
    "width negative": ({"width": -1}, "width"),
    "width 10^12": ({"width": 10**12}, "width"),
    "width NaN": ({"width": float("nan")}, "width"),
    "width infinite": ({"width": float("inf")}, "width"),
    "fx 0": ({"fx": 0}, "focal"),
    "fy NaN": ({"fy": float("nan")}, "K"),
    "rotation zero": ({"rotation": np.zeros((3, 3)).tolist()}, "singular"),
    "position NaN": ({"position": [0, float("nan"), 0]}, "position"),
    "rotation 2x2": ({"rotation": [[1, 0], [0, 1]]}, "rotation"),
    "width string": ({"width": "64px"}, "width"),
}


@pytest.mark.parametrize("case", sorted(_INRIA_CASES))
def test_bad_inria_cameras_json_is_refused_at_load(tmp_path: Path, case: str) -> None:
    over, field = _INRIA_CASES[case]
    path = tmp_path / "cameras.json"
    path.write_text(json.dumps([_inria_entry(), _inria_entry(id=1, img_name="b", **over)]))
    with pytest.raises(CameraError) as info:
        load_cameras(path)
    _one_line(info.value, "cameras.json", field)


_TRANSFORMS_CASES = {
    "w 0": ({"w": 0}, "width"),
    "h negative": ({"h": -48}, "height"),
    "matrix zero": ({"transform_matrix": np.zeros((4, 4)).tolist()}, "singular"),
    "matrix NaN": ({"transform_matrix": [[float("nan")] * 4] * 4}, "transform_matrix"),
    "fl_x 0": ({"fl_x": 0.0}, "focal"),
    "camera_angle_x 0": ({"fl_x": None, "camera_angle_x": 0.0}, "camera_angle_x"),
    "camera_angle_x pi": ({"fl_x": None, "camera_angle_x": 3.5}, "camera_angle_x"),
    "bottom row": ({"transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 1, 1, 1]]},
                   "bottom row"),
}


@pytest.mark.parametrize("case", sorted(_TRANSFORMS_CASES))
def test_bad_transforms_json_is_refused_at_load(tmp_path: Path, case: str) -> None:
    over, field = _TRANSFORMS_CASES[case]
    frame = {"file_path": "images/b.png", "transform_matrix": np.eye(4).tolist(),
             "fl_x": 100.0, "fl_y": 100.0, "w": 64, "h": 48}
    for key, value in over.items():
        if value is None:
            frame.pop(key)
        else:
            frame[key] = value
    good = {"file_path": "images/a.png", "transform_matrix": np.eye(4).tolist(),
            "fl_x": 100.0, "fl_y": 100.0, "w": 64, "h": 48}
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps({"frames": [good, frame]}))
    with pytest.raises(CameraError) as info:
        load_cameras(path, warn=lambda m: None)
    _one_line(info.value, "transforms.json", field)


def test_colmap_text_camera_with_zero_width(tmp_path: Path) -> None:
    (tmp_path / "cameras.txt").write_text("1 PINHOLE 0 48 100 100 32 24\n")
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 3 1 a.png\n\n")
    with pytest.raises(CameraError) as info:
        load_cameras(tmp_path, warn=lambda m: None)
    _one_line(info.value, "COLMAP", "width")


def test_image_header_with_zero_width(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name in ("cams_000", "cams_001"):  # PNG headers that claim 0x48 pixels
        (images / f"{name}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + b"IHDR"
                                             + (0).to_bytes(4, "big") + (48).to_bytes(4, "big") + bytes(5))
    with pytest.raises(CameraError) as info:
        load_cameras(_npz(tmp_path / "cams.npz"), images, warn=lambda m: None)
    _one_line(info.value, "cams_000.png", "width")


def test_validate_camera_directly() -> None:
    good = Camera(np.eye(4), intrinsics(100, 100, 32, 24), 64, 48, "v")
    assert validate_camera(good, "test") is good
    for mutate, field in [(lambda c: setattr(c, "width", 0), "invalid size"),
                          (lambda c: setattr(c, "height", 10**12), "height"),
                          (lambda c: setattr(c, "viewmat", np.zeros((4, 4))), "all zero"),
                          (lambda c: setattr(c, "K", np.zeros((3, 3))), "focal"),
                          (lambda c: c.viewmat.__setitem__((0, 3), np.nan), "viewmat"),
                          (lambda c: setattr(c, "K", np.eye(2)), "K")]:
        cam = Camera(np.eye(4), intrinsics(100, 100, 32, 24), 64, 48, "v")
        mutate(cam)
        with pytest.raises(CameraError) as info:
            validate_camera(cam, "probe")
        _one_line(info.value, "probe", "'v'", field)
    with pytest.raises(CameraError):
        validate_camera("not a camera", "probe")  # type: ignore[arg-type]


# =========================================================================== features files

def _save_arrays(path: Path, **over: object) -> Path:
    """A features file as TrainedFeatures writes it, with arrays replaced."""
    scene = _scene()
    t = _trained(scene)
    arrays = {"format_version": np.int32(1), "features": t.features,
              "coarse_centers": t.coarse_centers, "fine_centers": t.fine_centers,
              "coarse_labels": t.coarse_labels, "fine_labels": t.fine_labels,
              "settings_json": np.array(json.dumps(t.settings)),
              "scene_hash": np.array(t.scene_hash)}
    arrays.update(over)
    np.savez(path, **arrays)
    return path


_FEATURE_CASES = {
    "coarse centres 13 wide": ({"coarse_centers": np.zeros((3, 13), np.float32)}, "coarse_centers"),
    "fine centres 12 wide": ({"fine_centers": np.zeros((5, 12), np.float32)}, "fine_centers"),
    "flat centres": ({"coarse_centers": np.zeros(36, np.float32)}, "coarse_centers"),
    "features strings": ({"features": np.array([["a"] * 24] * N)}, "features"),
    "features 23 wide": ({"features": np.zeros((N, 23), np.float16)}, "features"),
    "features NaN": ({"features": np.full((N, 24), np.nan, np.float16)}, "NaN"),
    "one NaN feature": ({"features": np.where(np.eye(N, 24) > 0, np.nan, 0).astype(np.float16)}, "NaN"),
    "centres inf": ({"fine_centers": np.full((5, 24), np.inf, np.float32)}, "fine_centers"),
    "labels float": ({"coarse_labels": np.zeros(N, np.float32)}, "coarse_labels"),
    "labels out of range": ({"fine_labels": np.full(N, 99, np.int32)}, "fine_labels"),
    "labels short": ({"fine_labels": np.zeros(N - 1, np.int32)}, "fine_labels"),
    "settings list": ({"settings_json": np.array("[1, 2]")}, "settings_json"),
    "settings not json": ({"settings_json": np.array("{oops")}, "settings_json"),
    "settings number": ({"settings_json": np.array(3)}, "settings_json"),
    "format_version string": ({"format_version": np.array("one")}, "features.clickgs.npz"),
    "format from the future": ({"format_version": np.int32(99)}, "format"),
}


@pytest.mark.parametrize("case", sorted(_FEATURE_CASES))
def test_broken_features_files_are_refused_at_load(tmp_path: Path, case: str) -> None:
    over, field = _FEATURE_CASES[case]
    path = _save_arrays(tmp_path / "features.clickgs.npz", **over)
    with pytest.raises(TrainingError) as info:
        TrainedFeatures.load(path)
    _one_line(info.value, "features.clickgs.npz", field)


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04" + bytes(40)])
def test_features_file_that_is_not_a_zip(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.clickgs.npz"
    path.write_bytes(content)
    with pytest.raises(TrainingError) as info:
        TrainedFeatures.load(path)
    _one_line(info.value, "x.clickgs.npz")


def test_truncated_features_file(tmp_path: Path) -> None:
    path = tmp_path / "t.clickgs.npz"
    _trained(_scene()).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TrainingError) as info:
        TrainedFeatures.load(path)
    _one_line(info.value, "t.clickgs.npz")


# ----------------------------------------------------------------- writes over foreign files

def _foreign_files(tmp_path: Path) -> dict[str, Path]:
    scene_path = tmp_path / "scene.ply"
    write_ply(_scene(), scene_path)
    other_npz = tmp_path / "other.npz"
    np.savez(other_npz, a=np.arange(3))
    text = tmp_path / "notes.clickgs.npz"  # our name, not our content
    text.write_text("my notes")
    empty = tmp_path / "empty.clickgs.npz"
    empty.write_bytes(b"")
    return {"scene": scene_path, "other npz": other_npz, "named like ours": text, "empty": empty}


def test_features_writes_never_replace_foreign_files(tmp_path: Path) -> None:
    trained = _trained(_scene())
    for kind, path in _foreign_files(tmp_path).items():
        before = path.read_bytes()
        assert not is_features_file(path), kind
        with pytest.raises(TrainingError) as info:
            trained.save(path)
        _one_line(info.value, str(path), "not a Click-Gaussian features file")
        assert path.read_bytes() == before, kind
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_features_write_to_a_folder_or_missing_folder(tmp_path: Path) -> None:
    trained = _trained(_scene())
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(TrainingError) as info:
        trained.save(folder)
    _one_line(info.value, str(folder), "folder")
    with pytest.raises(TrainingError) as info:
        trained.save(tmp_path / "nope" / "f.clickgs.npz")
    _one_line(info.value, "does not exist")


def test_features_write_replaces_our_own_file(tmp_path: Path) -> None:
    scene = _scene()
    path = tmp_path / "any-name.bin"  # ours by content, whatever the name
    _trained(scene).save(path)
    assert is_features_file(path) and check_features_target(path) == str(path)
    newer = _trained(scene)
    newer.settings = {"iterations": 99}
    newer.save(path)
    assert TrainedFeatures.load(path, scene).settings == {"iterations": 99}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_session_save_features_refuses_foreign_files(tmp_path: Path) -> None:
    from engine.serve.session import EngineSession

    scene = _scene()
    session = EngineSession(device="cpu")
    session.set_scene(scene)
    session.trained = _trained(scene)
    for path in [*_foreign_files(tmp_path).values(), tmp_path]:
        before = path.read_bytes() if path.is_file() else None
        with pytest.raises(TrainingError) as info:
            session.save_features(str(path))
        _one_line(info.value, str(path))
        if before is not None:
            assert path.read_bytes() == before
    out = tmp_path / "ok.clickgs.npz"
    assert session.save_features(str(out))["path"] == str(out)
    assert session.save_features(str(out))["path"] == str(out)  # our own: replaced


# ----------------------------------------------------------------- stale features beside a scene

_STALE = {
    "garbage": lambda p: p.write_bytes(b"garbage" * 10),
    "empty": lambda p: p.write_bytes(b""),
    "wrong width": lambda p: _save_arrays(p, coarse_centers=np.zeros((3, 13), np.float32)),
    "strings": lambda p: _save_arrays(p, features=np.array([["a"] * 24] * N)),
    "NaN": lambda p: _save_arrays(p, features=np.full((N, 24), np.nan, np.float16)),
    "settings list": lambda p: _save_arrays(p, settings_json=np.array("[]")),
    "other scene": lambda p: _trained(_scene(seed=5)).save(p),
}


@pytest.mark.parametrize("case", sorted(_STALE))
def test_load_scene_ignores_a_corrupt_stale_features_file(tmp_path: Path, case: str) -> None:
    from engine.core.features import default_features_path
    from engine.serve.session import EngineSession

    scene_path = tmp_path / "scene.ply"
    write_ply(_scene(), scene_path)
    _STALE[case](Path(default_features_path(scene_path)))
    session = EngineSession(device="cpu")
    info = session.load_scene(str(scene_path))
    assert info["num_gaussians"] == N if "num_gaussians" in info else True
    assert "features" not in info and session.trained is None
    assert "\n" not in info["features_warning"] and "scene.clickgs.npz" in info["features_warning"]


def test_server_load_scene_with_a_corrupt_features_file(tmp_path: Path) -> None:
    from engine.link.client import EngineClient
    from engine.serve.server import EngineServer, ServerConfig
    from engine.serve.session import EngineSession

    scene_path = tmp_path / "scene.ply"
    write_ply(_scene(), scene_path)
    _save_arrays(tmp_path / "scene.clickgs.npz", settings_json=np.array("[1]"))
    token = "probe-files-token-" + "ab" * 16
    srv = EngineServer(ServerConfig(token=token), EngineSession(device="cpu"))
    srv.start()
    try:
        c = EngineClient.connect("127.0.0.1", srv.port, token, timeout=10, heartbeat_s=0)
        try:
            info = c.call("load_scene", {"path": str(scene_path)}).result
            assert "scene.clickgs.npz" in info["features_warning"] and "features" not in info
            bad = tmp_path / "bad.ply"
            _raw(bad, _vertex_header("-5"), bytes(56))
            with pytest.raises(SceneFormatError) as err:  # the engine's own class, not "internal"
                c.call("load_scene", {"path": str(bad)})
            _one_line(err.value, "bad.ply", "negative count")
        finally:
            c.close()
    finally:
        srv.request_shutdown("test over")
        assert srv.wait(20)


# =========================================================================== the command line

def _engine(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)


def _assert_one_line_failure(proc: subprocess.CompletedProcess, *names: str) -> None:
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])


def test_cli_train_refuses_out_over_the_scene_and_bad_inputs(tmp_path: Path) -> None:
    scene_path = tmp_path / "S.ply"
    write_ply(_scene(), scene_path)
    before = scene_path.read_bytes()
    proc = _engine("train", str(scene_path), "--out", str(scene_path), "--device", "cpu")
    _assert_one_line_failure(proc, "S.ply", "not a Click-Gaussian features file")
    assert scene_path.read_bytes() == before

    bad = _raw(tmp_path / "neg.ply", _vertex_header("-5"), bytes(56))
    _assert_one_line_failure(_engine("train", str(bad), "--device", "cpu"), "neg.ply")

    cams = _npz(tmp_path / "cams.npz", width=0)
    proc = _engine("train", str(scene_path), "--cameras", str(cams), "--device", "cpu",
                   "--out", str(tmp_path / "S.clickgs.npz"))
    _assert_one_line_failure(proc, "cams.npz", "width")
    assert scene_path.read_bytes() == before


# =========================================================================== Blender import

@pytest.mark.bpy
def test_blender_import_of_bad_files_leaves_nothing_behind(bpy, tmp_path: Path) -> None:
    negative = _raw(tmp_path / "negative.ply", _vertex_header("-5"), bytes(56))
    empty = _raw(tmp_path / "empty.compressed.ply", _compressed_header(1, 0), bytes(48))
    for path in (negative, empty):
        with pytest.raises(RuntimeError) as info:
            bpy.ops.import_scene.gaussian_splatting(filepath=str(path))
        msg = str(info.value)
        assert path.name in msg and "Traceback" not in msg, msg
        assert len(msg.strip().splitlines()) == 1, msg
        assert len(bpy.data.objects) == 0 and len(bpy.data.meshes) == 0


@pytest.mark.bpy
def test_blender_scene_to_object_cleans_up_on_any_failure(bpy, monkeypatch: pytest.MonkeyPatch) -> None:
    from click_gaussian_blender import display, io_import
    from click_gaussian_blender.engine.core.errors import SceneFormatError as AddonSceneFormatError

    settings = io_import.ImportSettings()
    # (the add-on imports the engine as its own subpackage: its error classes are its own)
    with pytest.raises(AddonSceneFormatError, match="no Gaussians"):
        io_import.scene_to_object(_scene(0), bpy.context, settings, source="empty.ply")
    assert len(bpy.data.objects) == 0 and len(bpy.data.meshes) == 0

    def broken(*args: object, **kwargs: object) -> None:
        raise MemoryError("display setup failed")

    monkeypatch.setattr(display, "setup_display", broken)
    with pytest.raises(MemoryError):
        io_import.scene_to_object(_scene(), bpy.context, settings, source="s.ply")
    assert len(bpy.data.objects) == 0 and len(bpy.data.meshes) == 0
