"""``python -m engine.masks SCENE --out PNG``: the built-in masks from colour alone beside those
using the splats' geometry, on orbit views of a scene (:func:`engine.masks.preview.main`)."""

from .preview import main

raise SystemExit(main())
