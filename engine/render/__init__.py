"""Rendering with torch: gsplat on CUDA, the tile rasterizer on CPU (:mod:`.raster_cpu`), the
device-side Gaussians and spherical harmonics. Entry point: :func:`.renderer.render`."""
