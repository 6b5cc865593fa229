"""What the benchmarks evaluate with: procedural scenes with ground truth (:mod:`.synth`),
simulated SAM-like masks (:mod:`.masksim`), the paper's metrics (:mod:`.metrics`) and a
no-learning baseline (:mod:`.baseline`). Not a benchmark command itself."""
