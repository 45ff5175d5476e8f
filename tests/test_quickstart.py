"""The README's main command: the zoo's trained agent, its saliency against the shipped human-gaze excerpt,
and a video of its attention beside the player's gaze; ``--train`` trains a new agent first."""

from __future__ import annotations

import json

import cv2
import pandas as pd
import pytest

from rl_saliency.cli import main


@pytest.mark.slow
def test_quickstart_on_defaults_shows_the_zoo_agent_against_human_gaze(tmp_path):
    out = tmp_path / "quickstart"
    assert main(["quickstart", "--out", str(out), "--episodes", "1", "--video-steps", "12"]) == 0
    evaluation = json.loads((out / "eval" / "evaluation.json").read_text())
    assert evaluation["episodes"] == 1 and evaluation["game"] == "ms_pacman"
    per_game = pd.read_csv(out / "gaze" / "per_game.csv")
    assert {"attention", "gradient", "centre_bias", "uniform", "intensity"} <= set(per_game["method"])
    video = cv2.VideoCapture(str(out / "attention_vs_human.mp4"))
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    assert (out / "attention_vs_human.gif").stat().st_size > 0


def test_quickstart_trains_a_new_agent_with_train(tmp_path):
    out = tmp_path / "quickstart"
    assert main(["quickstart", "--train", "--game", "breakout", "--out", str(out), "--timesteps", "256",
                 "--n-envs", "2", "--episodes", "1", "--video-steps", "12", "--no-gif"]) == 0
    assert (out / "agent" / "model.zip").exists()
    assert json.loads((out / "eval" / "evaluation.json").read_text())["episodes"] == 1
    video = cv2.VideoCapture(str(out / "attention.mp4"))  # no human gaze of Breakout shipped: the agent plays
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 12


def test_quickstart_rejects_bad_options_before_any_work(tmp_path, capsys):
    out = tmp_path / "q"
    for args, message in [(["--methods", "nosuch"], "unknown saliency method 'nosuch'"),
                          (["--episodes", "0"], "--episodes must be an integer >= 1, got 0"),  # was a segfault
                          (["--video-steps", "0"], "--video-steps must be an integer >= 1, got 0"),
                          (["--train", "--timesteps", "0"], "--timesteps must be an integer >= 1"),
                          (["--train", "--game", "nosuch"], "unknown game 'nosuch'"),
                          (["--model", "zoo:nosuch"], "unknown zoo agent 'nosuch'"),
                          (["--atari-head", str(tmp_path / "none")], "does not exist")]:
        assert main(["quickstart", "--out", str(out), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
        assert not out.exists()
    # a folder holding another agent's run is not silently continued with that agent
    (out / "agent").mkdir(parents=True)
    (out / "agent" / "config.yaml").write_text(
        "game: pong\nseed: 0\ntimesteps: 256\nn_envs: 2\nbackend: ale\ndevice: cpu\ncheckpoint_freq: 25\n"
        "spec: {name: nature}\n")
    assert main(["quickstart", "--train", "--out", str(out)]) == 2
    assert "holds a run of nature on pong, not fls_sparse on ms_pacman" in capsys.readouterr().err
