"""``rl-saliency visualize`` end to end on a small PPO zip for Breakout: sheets, GIFs, CSVs, resumable generator,
and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import FakeAtari
from PIL import Image
from stable_baselines3 import PPO

from rl_saliency.cli import main
from rl_saliency.visualize.pipeline import action_meanings


@pytest.fixture(scope="module")
def zips(tmp_path_factory):
    import gymnasium as gym

    folder = tmp_path_factory.mktemp("zips")
    PPO("CnnPolicy", FakeAtari(4), n_steps=8, batch_size=8, seed=0, device="cpu").save(folder / "breakout.zip")
    PPO("CnnPolicy", FakeAtari(6), n_steps=8, batch_size=8, seed=0, device="cpu").save(folder / "six.zip")
    PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=8, batch_size=8, device="cpu").save(folder / "cartpole.zip")
    return folder


def visualize(zips, out, *args: str, model: str = "breakout.zip") -> int:
    return main(["visualize", "--model", str(zips / model), "--game", "breakout", "--out", str(out), "--no-progress",
                 "--device", "cpu", *args])


def test_action_names_come_from_the_game() -> None:
    assert action_meanings("breakout") == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert action_meanings("ms_pacman")[:3] == ["NOOP", "UP", "RIGHT"] and len(action_meanings("ms_pacman")) == 9


def test_actions_sheet_gifs_and_scores(zips, tmp_path, capsys) -> None:
    out = tmp_path / "vis"
    assert visualize(zips, out, "--what", "action", "--actions", "0", "3", "--steps", "3") == 0
    scores = pd.read_csv(out / "scores_action.csv")
    assert list(scores["label"]) == ["0 NOOP", "3 LEFT"]
    assert {"score_before", "score_after", "prob_before", "prob_after"} <= set(scores.columns)
    sheet = Image.open(out / "sheet_action.png")
    assert sheet.width > 4 * 84 * 2 and sheet.height > 2 * 84 * 2
    gifs = sorted((out / "gifs").glob("*.gif"))
    assert [g.name for g in gifs] == ["action_00_0_noop.gif", "action_01_3_left.gif"]
    assert Image.open(gifs[0]).n_frames == 4
    assert np.load(out / "frames_action.npy").shape == (2, 4, 84, 84)
    record = json.loads((out / "run_action.json").read_text())
    assert record["rows"] == 2 and record["action_names"] == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert "2 rows" in capsys.readouterr().out


def test_units_from_an_observation(zips, tmp_path) -> None:
    out = tmp_path / "units"
    assert visualize(zips, out, "--what", "unit", "--units", "features:0", "conv2:1@3,3", "--steps", "2",
                     "--init", "observation") == 0
    scores = pd.read_csv(out / "scores_unit.csv")
    assert list(scores["target"]) == ["features:0", "conv2:1@3,3"]
    assert np.load(out / "observations.npy").shape == (1, 4, 84, 84)


def test_fooling_outputs_and_observation_reuse(zips, tmp_path, capsys) -> None:
    out = tmp_path / "fool"
    args = ["--what", "fooling", "--n-obs", "2", "--max-bound", "8", "--attack-steps", "3"]
    assert visualize(zips, out, *args) == 0
    table = pd.read_csv(out / "fooling.csv")
    assert len(table) == 2 and {"bound", "flipped", "linf", "label_before", "label_after"} <= set(table.columns)
    summary = json.loads((out / "fooling_summary.json").read_text())
    assert set(summary) >= {"flipped_at_1", "flipped_at_2", "flipped_at_4", "flipped_at_8"}
    for name in ("sheet_fooling.png", "robustness.png", "observations.npy"):
        assert (out / name).exists()
    assert "flipped within 1 grey levels" in capsys.readouterr().out
    before = (out / "observations.npy").stat().st_mtime_ns
    assert visualize(zips, out, *args) == 0
    assert (out / "observations.npy").stat().st_mtime_ns == before  # the same observations, not played again


def test_generator_trains_resumes_and_compares(zips, tmp_path) -> None:
    out = tmp_path / "gen"
    args = ["--what", "generator", "--gen-obs", "4", "--gen-batch", "4", "--checkpoint-every", "2", "--steps", "2",
            "--code-steps", "2", "--actions", "1"]
    assert visualize(zips, out, *args, "--gen-steps", "3") == 0
    assert len(pd.read_csv(out / "generator" / "history.csv")) == 3
    for name in ("sheet_generator.png", "sheet_pixel.png", "sheet_pixel_vs_generator.png",
                 "scores_pixel_vs_generator.csv"):
        assert (out / name).exists()
    assert visualize(zips, out, *args, "--gen-steps", "5") == 0  # continues from its checkpoint
    history = pd.read_csv(out / "generator" / "history.csv")
    assert list(history["step"]) == [1, 2, 3, 4, 5]
    table = pd.read_csv(out / "scores_pixel_vs_generator.csv")
    assert sorted(table["space"]) == ["generator", "pixel"]


@pytest.mark.parametrize("args, message", [
    (["--what", "action", "--actions", "4"],
     "action 4 is out of range: the policy has 4 actions (0 NOOP, 1 FIRE, 2 RIGHT, 3 LEFT)"),
    (["--what", "unit", "--units", "conv9:1"], "unit 'conv9:1' does not exist"),
    (["--what", "unit"], "--what unit needs --units; this policy's units: conv1:0-31"),
    (["--what", "fooling", "--target", "9"], "action 9 is out of range"),
    (["--what", "generator", "--units", "features:900"], "features:0-511"),
])
def test_bad_input_is_one_line(zips, tmp_path, capsys, args, message) -> None:
    assert visualize(zips, tmp_path / "bad", *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad").exists()  # nothing played, trained or written


@pytest.mark.parametrize("model, message", [
    ("cartpole.zip", "not Atari frames"), ("six.zip", "scores 6 actions but breakout has 4")])
def test_wrong_models_are_one_line(zips, tmp_path, capsys, model, message) -> None:
    assert visualize(zips, tmp_path / "bad", "--what", "action", model=model) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_list_units(zips, tmp_path, capsys) -> None:
    assert visualize(zips, tmp_path / "units", "--list-units") == 0
    out = capsys.readouterr().out
    assert "conv3:0-63" in out and "features:0-511" in out
