"""TrainedFeatures file format, scene hash and stale-file detection."""

from __future__ import annotations

import numpy as np
import pytest

from engine.core.errors import TrainingError
from engine.core.features import (
    FORMAT_VERSION,
    TrainedFeatures,
    default_features_path,
    scene_hash,
)
from factories import random_scene as _scene
from factories import random_trained as _trained


def test_roundtrip_keeps_every_array_and_dtype(tmp_path):
    scene = _scene()
    tf = _trained(scene)
    path = tmp_path / "s.clickgs.npz"
    tf.save(path)
    back = TrainedFeatures.load(path, scene=scene)
    assert back.features.dtype == np.float16 and back.features.shape == (50, 24)
    np.testing.assert_array_equal(back.features, tf.features)
    np.testing.assert_array_equal(back.coarse_centers, tf.coarse_centers)
    np.testing.assert_array_equal(back.fine_centers, tf.fine_centers)
    np.testing.assert_array_equal(back.coarse_labels, tf.coarse_labels)
    np.testing.assert_array_equal(back.fine_labels, tf.fine_labels)
    assert back.coarse_labels.dtype == np.int32
    assert back.settings == tf.settings
    assert back.scene_hash == tf.scene_hash
    with np.load(path, allow_pickle=False) as z:
        assert int(z["format_version"]) == FORMAT_VERSION
    assert [p.name for p in tmp_path.iterdir()] == ["s.clickgs.npz"]  # no temp file left


def test_scene_hash_changes_with_geometry_not_colour():
    a = _scene()
    h = scene_hash(a)
    b = a.subset(np.arange(a.num_gaussians))
    b.sh_dc = b.sh_dc + 1
    assert scene_hash(b) == h
    b.means = b.means.copy()
    b.means[3, 0] += 1e-3
    assert scene_hash(b) != h
    assert scene_hash(a.subset(np.arange(49))) != h


def test_stale_file_is_detected(tmp_path):
    scene = _scene()
    path = _trained(scene).save(tmp_path / "f.npz")
    other = _scene(seed=5)
    with pytest.raises(TrainingError, match="different version"):
        TrainedFeatures.load(path, scene=other)
    with pytest.raises(TrainingError, match="49"):
        TrainedFeatures.load(path, scene=scene.subset(np.arange(49)))


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(TrainingError, match="does not exist"):
        TrainedFeatures.load(tmp_path / "nope.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(TrainingError, match="junk.npz"):
        TrainedFeatures.load(junk)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(TrainingError, match="missing"):
        TrainedFeatures.load(other)


def test_labels_must_point_at_clusters():
    scene = _scene()
    tf = _trained(scene)
    with pytest.raises(TrainingError, match="coarse_labels"):
        TrainedFeatures(tf.features, tf.coarse_centers, tf.fine_centers, tf.coarse_labels + 5, tf.fine_labels)


def test_members_and_unit_features():
    tf = _trained(_scene())
    sel = tf.members("fine", [1, 3])
    assert np.all(np.isin(tf.fine_labels[sel], [1, 3]))
    assert len(sel) == np.isin(tf.fine_labels, [1, 3]).sum()
    u = tf.unit_features("coarse")
    assert u.shape == (50, 12) and u.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1, atol=1e-5)


def test_default_features_path():
    assert default_features_path("/a/fox.ply") == "/a/fox.clickgs.npz"
    assert default_features_path("/a/g.compressed.ply") == "/a/g.compressed.clickgs.npz"
