"""Click-Gaussian engine, in layers:

- ``core``: the scene, its file formats, cameras, trained features, the click query,
  transforms, quaternions, projection constants, the training schedule, errors, the atomic
  file write. numpy and the standard library (plyfile for .ply); no torch.
- ``link``: the wire to the engine process: protocol, client, launcher. No torch.
  ``core`` + ``link`` are everything the Blender extension imports and all its zip bundles
  (``scripts/build_extension.py`` refuses a torch import there; ``tests/test_import_boundaries.py``
  walks both packages).
- ``render`` (torch: gsplat on CUDA, the CPU tile rasterizer), ``masks`` (sources behind one
  registry), ``train``: the engine process's work.
- ``serve``: the server the extension talks to and its session; ``cli``: ``python -m engine
  COMMAND``; ``bench``: ``python -m engine.bench NAME`` and what the benchmarks evaluate with.

Inside the package imports are relative, so it works both as the top-level ``engine`` package
and as ``click_gaussian_blender.engine`` (the extension's link to it, or its bundled copy).
"""

__version__ = "0.1.0"
