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
    s = cli_train.train_settings(_args("--preset", "paper"))
    assert (s.iterations, s.gfl_start, s.gfl_interval, s.pixels_per_iter) == (3000, 2000, 100, 10_000)
    s = cli_train.train_settings(_args("--iterations", "400", "--pixels", "1024"))
    assert (s.iterations, s.gfl_start, s.pixels_per_iter) == (400, 266, 1024)  # not 2000: GFL would never run
    assert cli_train.train_settings(_args("--iterations", "90")).gfl_start == 60
    assert cli_train.train_settings(_args("--gfl-start", "266")).gfl_start == 266
    with pytest.raises(TrainingError, match="gfl_start"):
        cli_train.train_settings(_args("--gfl-start", "-5"))


def test_engine_sessions_fill_in_gfl_for_the_run_length():
    assert with_run_schedule({"iterations": 400}) == {"iterations": 400, "gfl_start": 266, "gfl_interval": 13}
    assert with_run_schedule({"iterations": 90}) == {"iterations": 90, "gfl_start": 60, "gfl_interval": 3}
    given = {"iterations": 400, "gfl_start": 10, "gfl_interval": 5}
    assert with_run_schedule(given) == given
    assert with_run_schedule({}) == {} and with_run_schedule({"lr": 0.1}) == {"lr": 0.1}
    assert with_run_schedule({"iterations": "many"}) == {"iterations": "many"}  # TrainSettings refuses it


def test_presets_product_and_paper():
    from engine.core import schedule
    from engine.train import TrainSettings

    paper = TrainSettings.paper()
    assert (paper.w_neg, paper.gfl_start, paper.iterations) == (0.1, 2000, 3000)  # the paper's constants
    assert TrainSettings.paper(iterations=400).gfl_start == 266
    assert TrainSettings.paper(iterations=400, gfl_start=10).gfl_start == 10  # a given field wins
    product = TrainSettings()
    assert product == TrainSettings.preset("product")
    assert (product.w_neg, product.gfl_start) == (schedule.W_NEG, gfl_start_for(3000, latest=schedule.GFL_START_LATEST))
    # the product's start is capped at an iteration, not a fraction of the run
    assert gfl_start_for(3000, latest=266) == 266 and gfl_start_for(400, latest=266) == 266
    assert gfl_start_for(90, latest=266) == 60 and gfl_start_for(3000, latest=None) == 2000
    assert schedule.preset_fields("paper", 400) == {"w_neg": 0.1, "gfl_start": 266, "gfl_interval": 13}
    with pytest.raises(TrainingError, match="unknown training preset 'papr'"):
        TrainSettings.preset("papr")
    # the wire: {"preset": "paper", ...} becomes TrainSettings fields
    assert with_run_schedule({"preset": "paper", "iterations": 400}) == {
        "iterations": 400, "w_neg": 0.1, "gfl_start": 266, "gfl_interval": 13}
    assert with_run_schedule({"preset": "paper"})["gfl_start"] == 2000
    with pytest.raises(TrainingError, match="preset"):
        with_run_schedule({"preset": 3})


def test_train_command_preset():
    from engine.core import schedule

    s = cli_train.train_settings(_args("--preset", "paper"))
    assert (s.w_neg, s.gfl_start) == (0.1, 2000)
    s = cli_train.train_settings(_args("--preset", "paper", "--iterations", "400", "--gfl-start", "7"))
    assert (s.w_neg, s.gfl_start) == (0.1, 7)
    s = cli_train.train_settings(_args())
    assert (s.w_neg, s.gfl_start) == (schedule.W_NEG, gfl_start_for(3000, latest=schedule.GFL_START_LATEST))
    with pytest.raises(SystemExit):
        _args("--preset", "other")
