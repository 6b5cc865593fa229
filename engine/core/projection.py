"""The splatting model's constants, shared by everything that must give the renderer's pixel:
the CPU rasterizer (:mod:`engine.render.raster_cpu`) and the click query (:mod:`engine.core.click`,
which answers in numpy what the rendered pixel shows). gsplat on CUDA uses the same values
except its 0.999 alpha clamp."""

ALPHA_MAX = 0.99  # 3DGS (Inria) alpha clamp; gsplat's CUDA kernels use 0.999
ALPHA_MIN = 1.0 / 255.0  # a Gaussian fainter than this at a pixel is skipped
T_MIN = 1e-4  # a pixel stops before the Gaussian that would bring transmittance to this
EPS2D = 0.3  # px^2 low-pass dilation of the 2D covariance (3DGS / gsplat)
EXTENT_SIGMA = 3.33  # gsplat's box half-size in standard deviations
