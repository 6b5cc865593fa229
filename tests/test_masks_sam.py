"""SAM mask source: checkpoint validation and model-type detection (fast, with weight files
whose tensors are broadcast views of one number), and the automatic generator with a randomly
initialised vit_b on one tiny image (slow: SAM embeds at 1024x1024 on the CPU)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import sam_model_registry

from engine.core.errors import Cancelled, MaskError
from engine.masks import SamMaskSource, ViewMasks, area_rule


def _cheap_sam_weights(model_type: str, path: Path) -> Path:
    """A state dict with SAM's exact keys and shapes whose tensors share one element of storage,
    so the file is a few hundred KB even for vit_h."""
    with torch.device("meta"):
        sd = sam_model_registry[model_type]().state_dict()
    one = torch.zeros(1)
    torch.save({k: one.expand(v.shape) for k, v in sd.items()}, path)
    return path


@pytest.mark.parametrize("model_type", ["vit_b", "vit_l", "vit_h"])
def test_model_type_is_detected(tmp_path: Path, model_type: str) -> None:
    ckpt = _cheap_sam_weights(model_type, tmp_path / f"sam_{model_type}.pth")
    src = SamMaskSource(ckpt, device="cpu")
    assert src.model_type == model_type
    assert src.quality == f"sam ({model_type})"
    assert src.settings()["model_type"] == model_type
    SamMaskSource(ckpt, model_type=model_type, device="cpu")  # given and matching: fine


def test_wrong_given_model_type(tmp_path: Path) -> None:
    ckpt = _cheap_sam_weights("vit_b", tmp_path / "sam_b.pth")
    with pytest.raises(MaskError, match="holds a vit_b model, not vit_h"):
        SamMaskSource(ckpt, model_type="vit_h")
    with pytest.raises(MaskError, match="not one of"):
        SamMaskSource(ckpt, model_type="vit_x")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MaskError, match="not found"):
        SamMaskSource(tmp_path / "nope.pth")
    with pytest.raises(MaskError, match="not a file"):
        SamMaskSource(tmp_path)


@pytest.mark.parametrize("content", [b"", b"this is not a checkpoint\n" * 20, bytes(range(256)) * 64])
def test_not_a_torch_checkpoint(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "junk.pth"
    p.write_bytes(content)
    with pytest.raises(MaskError, match="not a PyTorch weights file"):
        SamMaskSource(p)


def test_pickled_object_is_refused(tmp_path: Path) -> None:
    # weights_only=True: a checkpoint that would run code on load is rejected, not executed.
    p = tmp_path / "evil.pth"
    torch.save({"model": threading.Event}, p)
    with pytest.raises(MaskError, match="loaded safely"):
        SamMaskSource(p)


def test_random_state_dict_is_not_sam(tmp_path: Path) -> None:
    p = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.randn(8, 3, 3, 3), "fc.bias": torch.zeros(10)}, p)
    with pytest.raises(MaskError, match="not a SAM checkpoint"):
        SamMaskSource(p)
    p2 = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), p2)
    with pytest.raises(MaskError, match="state dict"):
        SamMaskSource(p2)


def test_damaged_sam_checkpoint(tmp_path: Path) -> None:
    with torch.device("meta"):
        sd = sam_model_registry["vit_b"]().state_dict()
    one = torch.zeros(1)
    partial = {k: one.expand(v.shape) for k, v in sd.items() if not k.startswith("mask_decoder.")}
    p = tmp_path / "partial.pth"
    torch.save(partial, p)
    with pytest.raises(MaskError, match="does not match SAM vit_b: weights .* missing"):
        SamMaskSource(p)


def test_wrapped_checkpoint_and_unknown_setting(tmp_path: Path) -> None:
    with torch.device("meta"):
        sd = sam_model_registry["vit_b"]().state_dict()
    one = torch.zeros(1)
    p = tmp_path / "wrapped.pth"
    torch.save({"model": {f"module.{k}": one.expand(v.shape) for k, v in sd.items()}}, p)
    assert SamMaskSource(p).model_type == "vit_b"
    with pytest.raises(MaskError, match="unknown SAM generator setting"):
        SamMaskSource(p, points_per_sid=4)


def test_checkpoint_identity_changes_with_content(tmp_path: Path) -> None:
    a = _cheap_sam_weights("vit_b", tmp_path / "a.pth")
    b = tmp_path / "b.pth"
    b.write_bytes(a.read_bytes())
    assert SamMaskSource(a).settings() == SamMaskSource(b).settings()  # a copy is the same input
    assert SamMaskSource(a, points_per_side=8).settings() != SamMaskSource(a).settings()


@pytest.mark.slow
def test_random_vit_b_masks_flow_into_two_levels(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = sam_model_registry["vit_b"](checkpoint=None)
    ckpt = tmp_path / "sam_vit_b_random.pth"
    torch.save({k: v.half() for k, v in model.state_dict().items()}, ckpt)  # half: smaller file
    del model
    src = SamMaskSource(
        ckpt,
        device="cpu",
        points_per_side=4,
        points_per_batch=16,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        stability_score_offset=0.1,
        box_nms_thresh=0.95,
    )
    assert src.model_type == "vit_b"
    yy, xx = np.mgrid[0:48, 0:64]
    image = np.zeros((48, 64, 3), np.uint8)
    image[..., 0] = np.where(xx < 32, 200, 30)
    image[..., 1] = np.where(yy < 24, 180, 60)
    image[..., 2] = (xx * 4).astype(np.uint8)

    assert src._generator is None  # the network is built on first use, not on construction
    messages: list[str] = []
    records = src.segments(image, report=messages.append)
    assert src._generator is not None
    assert messages == ["loading SAM vit_b on cpu", "SAM image embedding (crop 1)", "SAM prompts batch 1/1 (crop 1)"]
    assert records, "lowered thresholds must let the random model's masks through"
    for r in records:
        assert r["segmentation"].shape == (48, 64) and r["segmentation"].dtype == bool
        assert r["area"] == int(r["segmentation"].sum())
    vm = area_rule(records, 48, 64)
    assert isinstance(vm, ViewMasks) and vm.shape == (48, 64) and not vm.is_empty
    covered = vm.coarse >= 0
    np.testing.assert_array_equal(covered, vm.fine >= 0)
    union = np.any([r["segmentation"] for r in records], axis=0)
    np.testing.assert_array_equal(covered, union)
    areas = np.array([r["area"] for r in records])
    c, f = vm.coarse[covered], vm.fine[covered]
    assert (areas[c] >= areas[f]).all()
    for y, x in zip(*np.nonzero(covered)):
        cover = [i for i, r in enumerate(records) if r["segmentation"][y, x]]
        assert areas[vm.coarse[y, x]] == max(areas[cover])
        assert areas[vm.fine[y, x]] == min(areas[cover])

    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        src.segments(image, cancel=stop)


def test_legacy_checkpoint_format(tmp_path: Path) -> None:
    # Files saved before PyTorch 1.6's zip format cannot be memory-mapped: loaded normally.
    with torch.device("meta"):
        sd = sam_model_registry["vit_l"]().state_dict()
    one = torch.zeros(1)
    p = tmp_path / "legacy.pth"
    torch.save({k: one.expand(v.shape) for k, v in sd.items()}, p, _use_new_zipfile_serialization=False)
    assert SamMaskSource(p).model_type == "vit_l"


def test_bad_generator_values_fail_at_construction(tmp_path: Path) -> None:
    ckpt = _cheap_sam_weights("vit_b", tmp_path / "b.pth")
    with pytest.raises(MaskError, match="generator settings"):
        SamMaskSource(ckpt, points_per_side="many")
    with pytest.raises(MaskError, match="generator settings"):
        SamMaskSource(ckpt, points_per_side=None)  # SAM needs points_per_side or point_grids
    try:
        import cv2  # noqa: F401
    except ImportError:  # SAM's small-region cleanup needs OpenCV, which is not a dependency
        with pytest.raises(MaskError, match="generator settings"):
            SamMaskSource(ckpt, min_mask_region_area=100)
