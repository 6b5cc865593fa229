"""Two-level training masks (Click-Gaussian, supplementary B).

Public API:
- :class:`ViewMasks` (coarse, fine: int32 [H, W], -1 = unassigned, view-local IDs) and
  :func:`area_rule` (SAM segment records -> ViewMasks: coarse keeps the largest overlapping
  segment, fine the smallest).
- Mask sources (:class:`MaskSource` protocol): :class:`SamMaskSource` (segment-anything from a
  checkpoint file), :class:`FolderMaskSource` (masks computed elsewhere),
  :class:`BuiltinMaskSource` (classical two-scale segmentation, no download; lower quality than
  SAM).
- :func:`prepare_masks`: masks for a list of views, cached on disk, with progress and cancel.

Importing this package does not import torch (only :class:`SamMaskSource` needs it, when used).
"""

from .area_rule import UNASSIGNED, ViewMasks, area_rule, area_rule_stack
from .builtin import BuiltinMaskSource, BuiltinSettings
from .cache import MaskCache, prepare_masks
from .folder import FolderMaskSource, write_view_masks
from .preview import colorize, preview, save_preview
from .source import MaskSource, MaskSourceBase, MaskWarning

__all__ = [
    "UNASSIGNED",
    "BuiltinMaskSource",
    "BuiltinSettings",
    "FolderMaskSource",
    "MaskCache",
    "MaskSource",
    "MaskSourceBase",
    "MaskWarning",
    "SamMaskSource",
    "ViewMasks",
    "area_rule",
    "area_rule_stack",
    "colorize",
    "prepare_masks",
    "preview",
    "save_preview",
    "write_view_masks",
]


def __getattr__(name: str):  # SamMaskSource imports torch: load it only when asked for
    if name == "SamMaskSource":
        from .sam import SamMaskSource

        return SamMaskSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
