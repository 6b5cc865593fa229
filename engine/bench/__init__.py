"""Benchmarks: ``python -m engine.bench NAME [...]`` prints plain ``name: value unit`` lines.

Each benchmark is a module ``engine/bench/<name>.py`` with ``main(argv) -> int``.
Tests run them with small sizes (never timing-dependent assertions)."""
