"""Segment Anything (SAM) as a mask source, through segment-anything's own API.

The user gives a checkpoint file (the official ``sam_vit_h_4b8939.pth``, ``sam_vit_l_0b3195.pth``
or ``sam_vit_b_01ec64.pth``, or any state dict of the same architecture). The model type is
detected from the state dict (image-encoder width and depth: vit_b 768/12, vit_l 1024/24,
vit_h 1280/32) or checked against the one given. The checkpoint is loaded with
``torch.load(weights_only=True)`` (no arbitrary code runs from the file; segment-anything's own
``checkpoint=`` path calls ``torch.load`` without it) and memory-mapped when its format allows,
so constructing a source is quick and validates everything (weights and generator settings);
the network is built (``sam_model_registry`` on the meta device, then the checkpoint's tensors
assigned: no random initialisation) and moved to the device on first use. Runs on CUDA when
available. On a CPU SAM is slow per view (the image embedding, plus the prompt batches;
``points_per_side=16`` quarters the latter): masks are cached by
:func:`engine.masks.prepare_masks`.

torch and segment_anything are imported only when this module is.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, sam_model_registry

from ..core.errors import Cancelled, MaskError
from ..render.gaussians import resolve_device
from .source import MaskSourceBase, Report, check_image

# (image-encoder embed dim, depth) -> model type, from segment_anything/build_sam.py.
_VARIANTS = {(768, 12): "vit_b", (1024, 24): "vit_l", (1280, 32): "vit_h"}
_ALIASES = {"default": "vit_h", "vit_h": "vit_h", "vit_l": "vit_l", "vit_b": "vit_b"}
_PATCH_KEY = "image_encoder.patch_embed.proj.weight"


def file_identity(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """A cheap content identity of a (possibly multi-GB) file: its size plus a SHA-256 of the
    first and last ``chunk`` bytes. Survives copying/moving the file; changes when it is
    replaced by another checkpoint."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(p, "rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(chunk, size - chunk))
            h.update(f.read(chunk))
    return f"{size}:{h.hexdigest()[:32]}"


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """torch.load(weights_only=True), memory-mapped when the file is in the zip format."""
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy format
    except Exception as exc:  # unpickling, zip and format errors all mean the same to the user
        # torch's own text is a paragraph about weights_only; the user needs what the file should be.
        text = str(exc).lower()
        if "weights only load failed" in text and ("can still be loaded" in text or "unsupported global" in text):
            raise MaskError(
                f"SAM checkpoint {path} holds Python objects besides tensors and cannot be loaded safely "
                f"(loading it could run code; segment-anything's .pth files hold only weights)"
            ) from exc
        raise MaskError(
            f"SAM checkpoint {path} is not a PyTorch weights file (expected segment-anything's "
            f"sam_vit_h / sam_vit_l / sam_vit_b .pth; torch.load failed: {type(exc).__name__})"
        ) from exc
    if isinstance(obj, dict):
        for wrapper in ("model", "state_dict"):  # training-script checkpoints wrap the weights
            inner = obj.get(wrapper)
            if _PATCH_KEY not in obj and isinstance(inner, dict):
                obj = inner
        obj = {k[7:] if isinstance(k, str) and k.startswith("module.") else k: v for k, v in obj.items()}
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise MaskError(f"SAM checkpoint {path} does not hold a state dict of tensors")
    return obj


def detect_model_type(state_dict: dict[str, torch.Tensor], path: str | os.PathLike[str] = "") -> str:
    """vit_b / vit_l / vit_h from the image encoder's embed width and number of blocks."""
    weight = state_dict.get(_PATCH_KEY)
    if weight is None or weight.ndim != 4:
        raise MaskError(f"{path or 'checkpoint'} is not a SAM checkpoint (it has no SAM image encoder)")
    embed = int(weight.shape[0])
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))}
    depth = max(blocks) + 1 if blocks else 0
    kind = _VARIANTS.get((embed, depth))
    if kind is None:
        raise MaskError(
            f"{path or 'checkpoint'} is not a SAM vit_b/vit_l/vit_h checkpoint "
            f"(image encoder width {embed}, {depth} blocks)"
        )
    return kind


class _CancellableGenerator(SamAutomaticMaskGenerator):
    """SAM's automatic mask generator, checking a cancel event and reporting progress before
    each crop's image embedding and each batch of point prompts."""

    cancel: threading.Event | None = None
    report: Report | None = None
    _crop = 0
    _batch = 0
    _batches = 0

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("mask generation was cancelled")

    def _process_crop(self, image: Any, crop_box: Any, crop_layer_idx: int, orig_size: Any) -> Any:
        self._check_cancel()
        self._crop += 1
        self._batch = 0
        self._batches = -(-len(self.point_grids[crop_layer_idx]) // self.points_per_batch)
        if self.report is not None:
            self.report(f"SAM image embedding (crop {self._crop})")
        return super()._process_crop(image, crop_box, crop_layer_idx, orig_size)

    def _process_batch(self, *args: Any, **kwargs: Any) -> Any:
        self._check_cancel()
        self._batch += 1
        if self.report is not None:
            self.report(f"SAM prompts batch {self._batch}/{self._batches} (crop {self._crop})")
        return super()._process_batch(*args, **kwargs)


class SamMaskSource(MaskSourceBase):
    """Segment Anything's automatic mask generator as a mask source.

    checkpoint: path to a SAM checkpoint (.pth). model_type: "vit_h" / "vit_l" / "vit_b"
    (or "default" = vit_h); None detects it from the weights. device: None / "auto" (CUDA when
    available), "cpu", "cuda:0", ... generator_kwargs: passed to
    ``SamAutomaticMaskGenerator`` (points_per_side, pred_iou_thresh, stability_score_thresh,
    ...; SAM's defaults otherwise; ``output_mode`` is always "binary_mask").

    Raises MaskError for a missing file, a file that is not a PyTorch weights file, weights that
    are not SAM, a given model type that does not match the weights, or an unknown generator
    setting.
    """

    name = "sam"

    def __init__(
        self,
        checkpoint: str | os.PathLike[str],
        model_type: str | None = None,
        device: str | torch.device | None = None,
        **generator_kwargs: Any,
    ) -> None:
        path = Path(checkpoint).expanduser()
        if not path.exists():
            raise MaskError(f"SAM checkpoint not found: {path}")
        if not path.is_file():
            raise MaskError(f"SAM checkpoint {path} is not a file")
        if model_type is not None and model_type not in _ALIASES:
            raise MaskError(f"SAM model type {model_type!r} is not one of vit_h, vit_l, vit_b")
        allowed = set(inspect.signature(SamAutomaticMaskGenerator.__init__).parameters) - {"self", "model"}
        unknown = sorted(set(generator_kwargs) - allowed)
        if unknown:
            raise MaskError(f"unknown SAM generator setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(allowed))}")
        generator_kwargs.pop("output_mode", None)

        state_dict = _load_state_dict(path)
        detected = detect_model_type(state_dict, path)
        if model_type is not None and _ALIASES[model_type] != detected:
            raise MaskError(f"SAM checkpoint {path} holds a {detected} model, not {model_type} as given")
        self._check_keys(state_dict, detected, path)
        self._check_generator(detected, generator_kwargs)

        self.checkpoint = path
        self.model_type = detected
        self.device = resolve_device(device, "SAM device", MaskError)
        self.generator_kwargs = dict(generator_kwargs)
        self.quality = f"sam ({detected})"
        self._identity = file_identity(path)
        self._state_dict: dict[str, torch.Tensor] | None = state_dict
        self._generator: _CancellableGenerator | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _check_generator(model_type: str, generator_kwargs: dict[str, Any]) -> None:
        """Construct the generator around a weightless (meta) model so bad settings fail now,
        not minutes later on the first view."""
        with torch.device("meta"):
            model = sam_model_registry[model_type]()
        try:
            SamAutomaticMaskGenerator(model, output_mode="binary_mask", **generator_kwargs)
        except (AssertionError, ValueError, TypeError, ImportError) as exc:
            raise MaskError(f"SAM generator settings {generator_kwargs} are invalid: {exc or type(exc).__name__}") from None

    @staticmethod
    def _check_keys(state_dict: dict[str, torch.Tensor], model_type: str, path: Path) -> None:
        with torch.device("meta"):  # architecture only: no memory, no random init
            ref = sam_model_registry[model_type]().state_dict()
        missing = sorted(set(ref) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(ref))
        wrong = sorted(k for k in set(ref) & set(state_dict) if tuple(ref[k].shape) != tuple(state_dict[k].shape))
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
            if wrong:
                parts.append(f"{len(wrong)} with the wrong shape (e.g. {wrong[0]})")
            raise MaskError(f"SAM checkpoint {path} does not match SAM {model_type}: weights {'; '.join(parts)}")

    def settings(self) -> dict[str, Any]:
        return {
            "model_type": self.model_type,
            "checkpoint": self._identity,
            "generator": {k: _jsonable(v) for k, v in sorted(self.generator_kwargs.items())},
        }

    def _get_generator(self) -> _CancellableGenerator:
        with self._lock:
            if self._generator is None:
                with torch.device("meta"):
                    model = sam_model_registry[self.model_type]()
                assert self._state_dict is not None
                model.load_state_dict(self._state_dict, strict=True, assign=True)
                leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
                if leftover:  # a future segment-anything with new non-persistent state
                    model = sam_model_registry[self.model_type]()
                    model.load_state_dict(self._state_dict, strict=True)
                model = model.to(device=self.device, dtype=torch.float32).eval()
                try:
                    self._generator = _CancellableGenerator(model, output_mode="binary_mask", **self.generator_kwargs)
                except (AssertionError, ValueError, TypeError, ImportError) as exc:
                    raise MaskError(f"SAM generator settings {self.generator_kwargs} are invalid: {exc}") from exc
                self._state_dict = None  # the model owns the weights now
            return self._generator

    def segments(
        self, image: np.ndarray, cancel: threading.Event | None = None, report: Report | None = None
    ) -> list[dict[str, Any]]:
        """image uint8 [H, W, 3] RGB -> SAM records (bool ``segmentation`` [H, W], ``area``,
        ``bbox``, ``predicted_iou``, ``stability_score``, ...). Cancelled before the image
        embedding and between point batches when ``cancel`` is set; ``report`` receives a
        message at each of those steps."""
        image = check_image(image)
        if report is not None and self._generator is None:
            report(f"loading SAM {self.model_type} on {self.device}")
        gen = self._get_generator()
        with self._lock:  # one image at a time through the shared predictor
            gen.cancel, gen.report, gen._crop = cancel, report, 0
            try:
                return gen.generate(image)
            finally:
                gen.cancel, gen.report = None, None

    def __repr__(self) -> str:
        return f"SamMaskSource({str(self.checkpoint)!r}, model_type={self.model_type!r}, device={str(self.device)!r})"


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v
