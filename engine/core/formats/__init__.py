"""Gaussian-splat scene files: .ply (Inria layout), SuperSplat .compressed.ply, antimatter15 .splat."""
