"""The README's main command, on a tiny budget: train, evaluate, then a saliency video of that agent."""

from __future__ import annotations

import json

import cv2

from rl_saliency.cli import main


def test_quickstart_trains_evaluates_and_renders(tmp_path):
    out = tmp_path / "quickstart"
    assert main(["quickstart", "--out", str(out), "--timesteps", "256", "--n-envs", "2", "--episodes", "1",
                 "--video-steps", "12"]) == 0
    assert (out / "model.zip").exists()
    assert json.loads((out / "eval" / "evaluation.json").read_text())["episodes"] == 1
    video = cv2.VideoCapture(str(out / "attention.mp4"))
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 12


def test_quickstart_rejects_bad_options_before_training(tmp_path, capsys):
    out = tmp_path / "q"
    for args, message in [(["--method", "nosuch"], "unknown saliency method 'nosuch'"),  # was after training
                          (["--episodes", "0"], "--episodes must be an integer >= 1, got 0"),  # was a segfault
                          (["--video-steps", "0"], "--video-steps must be an integer >= 1, got 0"),
                          (["--timesteps", "0"], "--timesteps must be an integer >= 1"),
                          (["--game", "nosuch"], "unknown game 'nosuch'")]:
        assert main(["quickstart", "--out", str(out), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
        assert not out.exists()
    # a folder holding another agent's run is not silently continued with that agent
    out.mkdir()
    (out / "config.yaml").write_text(
        "game: pong\nseed: 0\ntimesteps: 256\nn_envs: 2\nbackend: ale\ndevice: cpu\ncheckpoint_freq: 25\n"
        "spec: {name: nature}\n")
    assert main(["quickstart", "--out", str(out)]) == 2
    assert "holds a run of nature on pong, not fls_sparse on breakout" in capsys.readouterr().err
