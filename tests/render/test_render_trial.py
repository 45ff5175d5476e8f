"""``render --atari-head``: the agent's saliency and the human gaze side by side on a real trial."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from stable_baselines3 import PPO

from rl_saliency.cli import main
from rl_saliency.render.replay import gaze_panel
from rl_saliency.render.video import HUD_ROWS


def test_gaze_panel_marks_the_samples():
    frame = np.zeros((210, 160, 3), dtype=np.uint8)
    panel = gaze_panel(frame, np.array([[80.0, 100.0], [-5.0, 300.0]]), scale=2)
    assert panel.shape == (420, 320, 3)
    assert panel[200, 160].any()  # at the on-screen sample: a dot over the density
    assert not panel[10, 10].any()  # far from it: untouched


@pytest.mark.slow  # parses the full trial's 12 MB gaze txt
def test_render_real_trial_side_by_side(real_trial, tmp_path):
    from rl_saliency.envs import make_atari_vec_env

    venv = make_atari_vec_env("ms_pacman", n_envs=1, backend="sb3")
    model = tmp_path / "ppo_pacman.zip"
    PPO("CnnPolicy", venv, n_steps=8, batch_size=8, device="cpu", seed=0).save(model)
    venv.close()
    out = tmp_path / "trial.mp4"
    code = main(["render", "--model", str(model), "--game", "ms_pacman", "--atari-head", str(real_trial),
                 "--method", "gradient", "--steps", "3", "--stride", "2", "--start", "40", "--scale", "1",
                 "--out", str(out)])
    assert code == 0
    capture = cv2.VideoCapture(str(out))
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    frames = []
    while (frame := capture.read())[0]:
        frames.append(frame[1])
    assert len(frames) == 3 and size == (2 * 160, 210 + HUD_ROWS)
    # the right half shows the gaze: green dots where the player looked
    right = frames[0][HUD_ROWS:, 160:].astype(int)
    greenish = (right[..., 1] > 180) & (right[..., 0] < 120) & (right[..., 2] < 120)  # BGR
    assert greenish.any()
