"""Click-Gaussian engine.

Torch-free at import time: the Blender extension imports the numpy-only modules
(``scene``, ``ply``, ``cameras``, ``click``, ``protocol``, ``client``) from the copy of this
package it ships, inside Blender's Python where there is no torch. Modules that need torch
import it themselves. Inside the package, imports are relative so it works both as the
top-level ``engine`` package and bundled as ``click_gaussian_blender.engine``.
"""

__version__ = "0.1.0"
