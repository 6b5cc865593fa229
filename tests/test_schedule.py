"""GFL's place in runs of any length (engine.core.schedule) and the train command's settings."""

from __future__ import annotations

import argparse

import pytest

from engine.cli import train as cli_train
from engine.core.errors import TrainingError
from engine.core.schedule import gfl_interval_for, gfl_start_for, with_run_schedule


def test_gfl_start_keeps_the_papers_proportion():
    assert gfl_start_for(3000) == 2000 and gfl_interval_for(3000) == 100  # the paper's schedule
    assert gfl_start_for(400) == 266 and gfl_start_for(6000) == 4000
    assert gfl_start_for(3000, 0.0) == 0 and gfl_start_for(3000, 1.0) == 3000 and gfl_start_for(1) == 0
    assert gfl_interval_for(1) == 1 and gfl_interval_for(400) == 13
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(TrainingError, match="fraction"):
            gfl_start_for(3000, bad)
    with pytest.raises(TrainingError, match="iterations"):
        gfl_start_for(0)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli_train.add_arguments(parser)
    return parser.parse_args(["scene.ply", *argv])


def test_train_command_starts_gfl_within_short_runs():
    s = cli_train.train_settings(_args())
    assert (s.iterations, s.gfl_start, s.gfl_interval, s.pixels_per_iter) == (3000, 2000, 100, 10_000)
    s = cli_train.train_settings(_args("--iterations", "400", "--pixels", "1024"))
    assert (s.iterations, s.gfl_start, s.pixels_per_iter) == (400, 266, 1024)  # not 2000: GFL would never run
    assert cli_train.train_settings(_args("--gfl-start", "266")).gfl_start == 266
    with pytest.raises(TrainingError, match="gfl_start"):
        cli_train.train_settings(_args("--gfl-start", "-5"))


def test_engine_sessions_fill_in_gfl_for_the_run_length():
    assert with_run_schedule({"iterations": 400}) == {"iterations": 400, "gfl_start": 266, "gfl_interval": 13}
    given = {"iterations": 400, "gfl_start": 10, "gfl_interval": 5}
    assert with_run_schedule(given) == given
    assert with_run_schedule({}) == {} and with_run_schedule({"lr": 0.1}) == {"lr": 0.1}
    assert with_run_schedule({"iterations": "many"}) == {"iterations": "many"}  # TrainSettings refuses it
