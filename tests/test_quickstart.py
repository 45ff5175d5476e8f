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
