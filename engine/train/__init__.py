"""Click-Gaussian training: per-Gaussian two-level features from two-level 2D masks.

Public API:
- :class:`TrainSettings` (frozen; the paper's constants by default), :class:`TrainProgress`.
- :class:`TrainView` (camera, image, masks) and :func:`views_from_scene` (images rendered from
  the splats or read from disk, masks from a mask source through ``engine.masks.prepare_masks``).
- :func:`train` (progress callback, cancel Event, checkpoint + resume) -> ``TrainedFeatures``.
- :func:`segment_everything`: per-pixel global-cluster maps of any view.

Modules: ``losses`` (every term, with fast paths and reference twins), ``gfl`` (global
clusters), ``data`` (views and the frozen-geometry pixel cache), ``trainer`` (the loop),
``segment`` (segment everything).
"""

from .data import TrainView, views_from_scene
from .segment import segment_everything
from .settings import TrainProgress, TrainSettings
from .trainer import train

__all__ = ["TrainProgress", "TrainSettings", "TrainView", "segment_everything", "train", "views_from_scene"]
