"""Masks read from a folder: every documented layout, and the errors for missing, ambiguous,
mismatched and malformed files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.core.errors import MaskError
from engine.masks import FolderMaskSource, area_rule_stack

H, W = 6, 8
IMAGE = np.zeros((H, W, 3), np.uint8)


def _stack() -> np.ndarray:
    s = np.zeros((3, H, W), bool)
    s[0, :, :6] = True  # big
    s[1, 1:4, 1:4] = True  # inside the big one
    s[2, 4:, 6:] = True  # separate
    return s


def test_npz_segment_stack_goes_through_area_rule(tmp_path: Path) -> None:
    np.savez(tmp_path / "view_a.npz", masks=_stack())
    vm = FolderMaskSource(tmp_path).view_masks(IMAGE, "images/view_a.jpg")
    ref = area_rule_stack(_stack())
    np.testing.assert_array_equal(vm.coarse, ref.coarse)
    np.testing.assert_array_equal(vm.fine, ref.fine)
    assert vm.coarse[2, 2] == 0 and vm.fine[2, 2] == 1 and vm.fine[5, 7] == 2 and vm.coarse[0, 7] == -1


def test_npz_two_level_maps_used_as_they_are(tmp_path: Path) -> None:
    c = np.arange(H * W).reshape(H, W) % 3 - 1
    f = np.arange(H * W).reshape(H, W) % 5 - 2
    np.savez(tmp_path / "v.npz", coarse=c.astype(np.int16), fine=f)
    vm = FolderMaskSource(tmp_path).view_masks(IMAGE, "v.png")
    np.testing.assert_array_equal(vm.coarse, c)
    np.testing.assert_array_equal(vm.fine, np.where(f < 0, -1, f))
    assert vm.coarse.dtype == np.int32


def test_npy_stack_and_label_map(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", _stack().astype(np.uint8))
    np.testing.assert_array_equal(FolderMaskSource(tmp_path).view_masks(IMAGE, "s").fine, area_rule_stack(_stack()).fine)
    labels = np.full((H, W), -1)
    labels[:3] = 4
    labels[3:, :2] = 9
    np.save(tmp_path / "l.npy", labels)
    vm = FolderMaskSource(tmp_path).view_masks(IMAGE, "l.jpg")
    np.testing.assert_array_equal(vm.coarse, labels)
    np.testing.assert_array_equal(vm.fine, labels)


@pytest.mark.parametrize("bits", [8, 16])
def test_label_png(tmp_path: Path, bits: int) -> None:
    top = 255 if bits == 8 else 65535
    dtype = np.uint8 if bits == 8 else np.uint16
    labels = np.zeros((H, W), dtype)
    labels[:2] = 7
    labels[2:4] = 300 if bits == 16 else 30
    labels[4:, :4] = top  # unassigned by the documented rule, like 0
    Image.fromarray(labels).save(tmp_path / "p.png")
    vm = FolderMaskSource(tmp_path).view_masks(IMAGE, "p.jpg")
    expected = np.where((labels == 0) | (labels == top), -1, labels.astype(np.int64) - 1)
    np.testing.assert_array_equal(vm.coarse, expected)
    np.testing.assert_array_equal(vm.fine, expected)


def test_palette_png_and_two_level_pngs(tmp_path: Path) -> None:
    coarse = np.zeros((H, W), np.uint8)
    coarse[:, :5] = 1
    fine = coarse.copy()
    fine[:3, :5] = 2
    im = Image.fromarray(coarse, mode="L").convert("P")
    im.save(tmp_path / "pal.png")
    np.testing.assert_array_equal(FolderMaskSource(tmp_path).view_masks(IMAGE, "pal").coarse, np.where(coarse == 0, -1, coarse - 1))
    Image.fromarray(coarse).save(tmp_path / "two.coarse.png")
    Image.fromarray(fine).save(tmp_path / "two.fine.png")
    vm = FolderMaskSource(tmp_path).view_masks(IMAGE, "two.jpg")
    np.testing.assert_array_equal(vm.coarse, np.where(coarse == 0, -1, 0))
    np.testing.assert_array_equal(vm.fine, np.where(fine == 0, -1, fine.astype(np.int64) - 1))


def test_sam_amg_script_layout(tmp_path: Path) -> None:
    # segment-anything's scripts/amg.py writes <stem>/<i>.png (mask * 255) and metadata.csv.
    d = tmp_path / "frame_10"
    d.mkdir()
    for i, m in enumerate(_stack()):
        Image.fromarray(m.astype(np.uint8) * 255).save(d / f"{i}.png")
    (d / "metadata.csv").write_text("id,area\n")
    vm = FolderMaskSource(tmp_path).view_masks(IMAGE, "frame_10.jpg")
    ref = area_rule_stack(_stack())
    np.testing.assert_array_equal(vm.coarse, ref.coarse)
    np.testing.assert_array_equal(vm.fine, ref.fine)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(MaskError, match="mask folder not found"):
        FolderMaskSource(tmp_path / "missing")
    src = FolderMaskSource(tmp_path)
    with pytest.raises(MaskError, match=r"no mask file for view 'gone.jpg'.*gone\.npz"):
        src.view_masks(IMAGE, "gone.jpg")
    np.save(tmp_path / "small.npy", np.zeros((2, H - 1, W), bool))
    with pytest.raises(MaskError, match=r"are 8x5 but its image is 8x6"):
        src.view_masks(IMAGE, "small")
    np.save(tmp_path / "both.npy", _stack())
    np.savez(tmp_path / "both.npz", masks=_stack())
    with pytest.raises(MaskError, match="more than one mask file"):
        src.view_masks(IMAGE, "both")
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(MaskError, match="single-channel"):
        src.view_masks(IMAGE, "rgb")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(MaskError, match="cannot be read"):
        src.view_masks(IMAGE, "broken")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(tmp_path / "half.coarse.png")
    with pytest.raises(MaskError, match="needs its other level"):
        src.view_masks(IMAGE, "half")
    np.savez(tmp_path / "odd.npz", a=np.zeros(3), b=np.zeros(3))
    with pytest.raises(MaskError, match="expected 'coarse'\\+'fine'"):
        src.view_masks(IMAGE, "odd")
    np.save(tmp_path / "nonbin.npy", np.full((1, H, W), 3))
    with pytest.raises(MaskError, match="not binary"):
        src.view_masks(IMAGE, "nonbin")
    with pytest.raises(MaskError, match="view's name"):
        src.view_masks(IMAGE, None)


def test_damaged_npz(tmp_path: Path) -> None:
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(MaskError, match="not a readable .npz"):
        FolderMaskSource(tmp_path).view_masks(IMAGE, "bad")


def test_written_masks_read_back_exactly(tmp_path: Path) -> None:
    from engine.masks import ViewMasks, write_view_masks

    rng = np.random.default_rng(2)
    vm = ViewMasks(rng.integers(-1, 300, (H, W)), rng.integers(-1, 40000, (H, W)))
    paths = write_view_masks(tmp_path, "images/frame_7.jpg", vm)
    assert [p.name for p in paths] == ["frame_7.coarse.png", "frame_7.fine.png"]
    back = FolderMaskSource(tmp_path).view_masks(IMAGE, "frame_7.jpg")
    np.testing.assert_array_equal(back.coarse, vm.coarse)
    np.testing.assert_array_equal(back.fine, vm.fine)
    with pytest.raises(MaskError, match="already in"):
        write_view_masks(tmp_path, "frame_7", vm)
    write_view_masks(tmp_path, "frame_7", ViewMasks.empty(H, W), overwrite=True)
    assert FolderMaskSource(tmp_path).view_masks(IMAGE, "frame_7").is_empty
    with pytest.raises(MaskError, match="above 65533"):
        write_view_masks(tmp_path, "big", ViewMasks(np.full((H, W), 70000), np.zeros((H, W))))
    assert not list(tmp_path.glob(".tmp-*"))


def test_preview_png(tmp_path: Path) -> None:
    from engine.masks import area_rule_stack, colorize, save_preview

    vm = area_rule_stack(_stack())
    image = np.full((H, W, 3), 100, np.uint8)
    path = save_preview(tmp_path / "out" / "p.png", image, vm)
    pic = np.asarray(Image.open(path))
    assert pic.shape == (H, 3 * W, 3)
    np.testing.assert_array_equal(pic[:, :W], image)
    c = colorize(vm.fine)
    assert vm.fine[0, 7] == -1 and (c[0, 7] == 0).all()  # unassigned, no image: black
    assert not np.array_equal(c[2, 2], c[5, 7])  # different segments, different colours
