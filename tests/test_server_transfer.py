"""The transfer benchmark runs end to end at a small size (its numbers are not asserted)."""

from __future__ import annotations

import re

from engine.bench import transfer


def test_transfer_benchmark_small(capsys) -> None:
    assert transfer.main(["--n", "20000", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "transfer rows: 20000 x 24 float16" in out
    for command in ("features_only", "get_features"):
        m = re.search(rf"^{command} median: ([0-9.]+) ms$", out, re.M)
        assert m and float(m.group(1)) > 0
    assert re.search(r"^get_features payload: 1\.1 MiB$", out, re.M)  # features + labels
    assert re.search(r"^ping round trip median: [0-9.]+ ms$", out, re.M)


def test_transfer_benchmark_rejects_bad_sizes(capsys) -> None:
    assert transfer.main(["--n", "0"]) == 2
    assert "error:" in capsys.readouterr().err
