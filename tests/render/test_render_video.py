"""Saliency-overlay videos: the file opens with OpenCV with the requested frame count and size."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
from PIL import Image
from stable_baselines3 import PPO

from rl_saliency.cli import main
from rl_saliency.render.video import HUD_ROWS, MaxNormaliser, VideoSink, overlay, render_agent


def read_video(path) -> tuple[int, int, int, list[np.ndarray]]:
    """(frames actually decoded, width, height, frames)."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"OpenCV cannot open {path}"
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return len(frames), width, height, frames


@pytest.fixture(scope="module")
def breakout_model(tmp_path_factory):
    from rl_saliency.envs import make_atari_vec_env

    venv = make_atari_vec_env("breakout", n_envs=1, backend="sb3")
    path = tmp_path_factory.mktemp("model") / "ppo_breakout.zip"
    PPO("CnnPolicy", venv, n_steps=8, batch_size=8, seed=0, device="cpu").save(path)
    venv.close()
    return path


def test_render_agent_video_and_gif(breakout_model, tmp_path):
    out = tmp_path / "clip.mp4"
    summary = render_agent(breakout_model, game="breakout", method="gradient", steps=7, out=out, gif=True, scale=2,
                           progress=False, device="cpu")
    n, width, height, frames = read_video(out)
    assert (n, width, height) == (7, 160 * 2, (210 + HUD_ROWS) * 2)
    assert summary["frames"] == 7 and summary["fps"] > 0
    # the heat map is on the picture: some pixels are coloured, not the game's grey/black
    spread = frames[-1].astype(int).max(axis=2) - frames[-1].astype(int).min(axis=2)
    assert (spread > 60).mean() > 0.001
    with Image.open(out.with_suffix(".gif")) as gif:
        assert gif.n_frames == 7
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


def test_render_cli_global_normalisation(breakout_model, tmp_path, capsys):
    out = tmp_path / "cli.mp4"
    code = main(["render", "--model", str(breakout_model), "--game", "breakout", "--method", "gradcam", "--steps", "4",
                 "--scale", "1", "--normalise", "global", "--target", "value", "--out", str(out)])
    assert code == 0
    n, width, height, _ = read_video(out)
    assert (n, width, height) == (4, 160, 210 + HUD_ROWS)
    assert "frames/s" in capsys.readouterr().out


def test_opencv_fallback_writer(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails: OpenCV writes the file
    sink = VideoSink(tmp_path / "fallback.mp4", fps=10)
    for i in range(5):
        sink.write(np.full((64, 48, 3), 40 * i, dtype=np.uint8))
    sink.close()
    assert "OpenCV" in sink.codec
    n, width, height, _ = read_video(tmp_path / "fallback.mp4")
    assert (n, width, height) == (5, 48, 64)


def test_running_max_does_not_flicker():
    norm = MaxNormaliser()
    strong = norm(np.full((4, 4), 2.0))
    weak = norm(np.full((4, 4), 1.0))  # a later, weaker map stays weaker instead of being stretched to 1
    assert strong.max() == 1.0 and weak.max() == pytest.approx(0.5)
    assert MaxNormaliser()(np.zeros((4, 4))).max() == 0.0


def test_overlay_colours_only_salient_pixels():
    frame = np.full((210, 160, 3), 100, dtype=np.uint8)
    saliency = np.zeros((210, 160), dtype=np.float32)
    saliency[100:110, 50:60] = 1.0
    out = overlay(frame, saliency, scale=2, alpha=0.6)
    assert out.shape == (420, 320, 3)
    assert (out[0:150, 0:80] == 100).all()  # far from the salient patch: the frame unchanged
    assert np.abs(out[205, 110].astype(int) - 100).max() > 30  # inside it: tinted


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps must be an integer >= 1, got 0"),
    (["--scale", "0"], "--scale must be an integer >= 1, got 0"),  # was a cv2.error traceback
    (["--fps", "0"], "--fps must be a number > 0"),
    (["--alpha", "2"], "--alpha must be between 0 and 1"),
    (["--target", "9"], "target action out of range for an action space of 4 actions"),
    (["--target", "foo"], "unknown saliency target 'foo'"),
    (["--method", "attention"], "needs a policy with built-in attention"),
])
def test_render_rejects_bad_options_in_one_line(breakout_model, tmp_path, capsys, args, message):
    out = tmp_path / "bad.mp4"
    code = main(["render", "--model", str(breakout_model), "--game", "breakout", "--steps", "2", *args,
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists()


@pytest.fixture
def write_trial(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "gaze"))
    from gaze_synthetic import write_trial

    return write_trial


def test_render_atari_head_bad_trials_fail_clearly(breakout_model, tmp_path, capsys, write_trial):
    def render(trial, *extra):
        code = main(["render", "--model", str(breakout_model), "--game", "breakout", "--atari-head", str(trial),
                     "--method", "gradient", "--steps", "2", "--scale", "1", "--out", str(tmp_path / "t.mp4"),
                     *extra])
        return code, capsys.readouterr().err

    # a txt that is not a gaze file: named as such, not "frames without a gaze file" / "0 complete trials"
    empty = write_trial(tmp_path / "empty" / "breakout", n_frames=20)
    empty.with_name(empty.name + ".txt").write_text("")
    code, err = render(empty)
    assert code == 2 and f"{empty}.txt: not an Atari-HEAD gaze file" in err
    # the trial's folder says another game than the model's: said so, not "--game is ..."
    other = write_trial(tmp_path / "other" / "ms_pacman", n_frames=20)
    code, err = render(other)
    assert code == 2 and "is of ms_pacman" in err and "plays breakout" in err
    # --start past the trial's end: fails before the frames are decompressed
    good = write_trial(tmp_path / "good" / "breakout", n_frames=20)
    code, err = render(good, "--start", "500")
    assert code == 2 and "--start 500 is past the end of trial" in err
    code, err = render(good, "--stride", "0")
    assert code == 2 and "--stride must be an integer >= 1" in err
    # corrupt txt rows are skipped with a warning (render has no --strict to turn them off)
    garbage = write_trial(tmp_path / "garbage" / "breakout", n_frames=20, rows={5: "this,is,garbage"})
    code, err = render(garbage)
    assert code == 0 and "line 6: corrupt row" in err and "Traceback" not in err


def test_render_cli_unknown_method_is_one_line_error(tmp_path, capsys):
    assert main(["render", "--model", str(tmp_path / "m.zip"), "--game", "breakout", "--method", "nope",
                 "--out", str(tmp_path / "v.mp4")]) == 2
    assert "unknown saliency method 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "v.mp4").exists()
