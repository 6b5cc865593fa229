"""Scene settings of the Click-Gaussian panel (``scene.clickgs``): training inputs, mask source,
granularity, similarity threshold and the click tool's last message."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from .engine.core.features import LEVELS
from .engine.core.schedule import GFL_START_FRACTION
from .engine.link.protocol import MASK_SOURCE_KINDS

# The choices are the engine's own lists; these only give them names and tooltips (a kind the
# engine adds later shows under its own name until it gets one here).
_LEVEL_TEXT = {"coarse": ("Coarse", "Whole objects"), "fine": ("Fine", "Parts of objects")}
LEVEL_ITEMS = [(level, *_LEVEL_TEXT.get(level, (level.title(), ""))) for level in LEVELS]
_MASK_SOURCE_TEXT = {
    "builtin": ("Built-in", "Built-in segmentation (no download; lower quality than SAM)"),
    "sam": ("SAM", "Segment Anything with the checkpoint set in the preferences (slow on CPU)"),
    "folder": ("Mask Folder", "Masks computed elsewhere, one per view"),
}
MASK_SOURCE_ITEMS = [(kind, *_MASK_SOURCE_TEXT.get(kind, (kind.title(), f"Masks from the engine's {kind} source")))
                     for kind in MASK_SOURCE_KINDS]


class ClickGaussianSettings(bpy.types.PropertyGroup):
    level: EnumProperty(name="Granularity", items=LEVEL_ITEMS, default=LEVELS[0],
                        description="Select whole objects (coarse) or their parts (fine); F toggles in the click tool")
    min_similarity: FloatProperty(
        name="Similarity Threshold", default=0.0, min=0.0, max=1.0, subtype="FACTOR",
        description="A click selects nothing when the best cluster's cosine similarity to the clicked "
                    "feature is below this (0 = always select the best cluster)")
    training_input: EnumProperty(
        name="Views", default="ORBIT",
        items=[("ORBIT", "Rendered from Splats", "Virtual views around the scene, rendered from the Gaussians"),
               ("CAMERAS", "Capture Cameras", "The original capture's cameras and images (COLMAP, "
                                              "cameras.json, transforms.json, .npz)")])
    cameras_path: StringProperty(name="Cameras", subtype="FILE_PATH",
                                 description="COLMAP sparse folder or file, cameras.json, transforms.json or .npz")
    images_dir: StringProperty(name="Images", subtype="DIR_PATH",
                               description="Folder with the capture's images (optional: rendered when missing)")
    orbit_views: IntProperty(name="Views", default=24, min=4, max=512, description="Number of virtual views")
    orbit_size: IntProperty(name="Size", default=256, min=64, max=2048, description="Virtual view size in pixels")
    mask_source: EnumProperty(
        name="Masks", default=MASK_SOURCE_KINDS[0], items=MASK_SOURCE_ITEMS)
    mask_folder: StringProperty(name="Mask Folder", subtype="DIR_PATH")
    iterations: IntProperty(name="Iterations", default=3000, min=1, max=100000)
    pixels_per_iter: IntProperty(name="Pixels / Iteration", default=10000, min=64, max=200000)
    gfl_start_fraction: FloatProperty(
        name="GFL Start", default=GFL_START_FRACTION, min=0.0, max=1.0, subtype="FACTOR",
        description="When global feature-guided learning starts, as a fraction of the run (the paper: 2/3, "
                    "iteration 2000 of 3000), but no later than the defaults' latest start (iteration 266) "
                    "unless Paper Constants is on. Earlier keeps small parts apart that the masks sometimes "
                    "show only as part of their object")
    paper_constants: BoolProperty(
        name="Paper Constants", default=False,
        description="Train with the paper's constants (L_neg weight 0.1, GFL from 2/3 of the run) instead of "
                    "the defaults, which keep small parts apart better (docs/quality.md)")
    message: StringProperty(name="Last Message", default="")
    group_index: IntProperty(name="Selection", default=0)


def get(scene: bpy.types.Scene) -> ClickGaussianSettings:
    return scene.clickgs


def register() -> None:
    bpy.utils.register_class(ClickGaussianSettings)
    bpy.types.Scene.clickgs = PointerProperty(type=ClickGaussianSettings)


def unregister() -> None:
    del bpy.types.Scene.clickgs
    bpy.utils.unregister_class(ClickGaussianSettings)
