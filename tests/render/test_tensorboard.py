"""Attention in TensorBoard: image summaries of the right shape and number through SB3's logger, the explorer's
intrinsic-reward histogram, training unchanged by the logging, and bad settings as one line."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from rl_saliency.cli import main
from rl_saliency.errors import OptionError, SpecError
from rl_saliency.render.tensorboard import SaliencyTensorBoardCallback, check_config, overlay_strip
from rl_saliency.saliency import register

pytest.importorskip("tensorboard")

TINY = ["--n-envs", "2", "--set", "n_steps=32", "--set", "batch_size=32", "--set", "n_epochs=1", "--no-progress",
        "--device", "cpu"]


@register("test_global_rng")
class GlobalRandomMaps:
    """Maps drawn from torch's and numpy's global random state (which PPO samples actions and minibatches from)."""

    name = "test_global_rng"

    def attribute(self, policy, observations, **_):
        n = len(observations)
        return (torch.rand(n, 84, 84).numpy() + np.random.rand(n, 84, 84)).astype(np.float32)


def read_events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"images": 0, "histograms": 0, "scalars": 0})
    events.Reload()
    return events


def decode(event) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(event.encoded_image_string, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_overlay_strip_puts_each_map_on_its_frame():
    obs = np.zeros((3, 4, 84, 84), np.uint8)
    maps = np.zeros((3, 84, 84), np.float32)
    maps[0, 10:20, 60:70] = 5.0  # each map scaled by its own maximum: small and large peaks look alike
    maps[1, 50:60, 5:15] = 0.01
    strip = overlay_strip(obs, maps, scale=2)
    assert strip.shape == (168, 3 * 168 + 2 * 2, 3) and strip.dtype == np.uint8
    assert strip[30, 130, 0] > 50 and strip[30, 20].sum() == 0  # red where the map peaks, the black frame elsewhere
    assert strip[110, 170 + 20, 0] > 50  # the second panel starts after 168 + 2 px of separator
    assert strip[:, 168:170].min() == 255 and strip[:, 340:].max() == 0  # separator; third map all zero


def test_settings_are_checked():
    assert check_config({"every": 3})["n_obs"] == 8
    for bad, message in (({"evry": 3}, "unknown keys ['evry']"), ({"every": 0}, "every must be an integer >= 1"),
                         ({"method": "gradiant"}, "unknown saliency method 'gradiant'"),
                         ({"n_obs": 2.5}, "n_obs must be an integer")):
        with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
            check_config(bad)


def test_bad_spec_section_is_one_line_before_anything_is_written(tmp_path, capsys):
    spec = tmp_path / "fls_tb.yaml"
    spec.write_text(yaml.safe_dump({**yaml.safe_load(Path("agents/fls_sparse.yaml").read_text()),
                                    "tensorboard": {"evry": 2}}))
    assert main(["train", "--agent", str(spec), "--game", "breakout", "--timesteps", "64",
                 "--out", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tensorboard: unknown keys ['evry']" in err
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_train_tensorboard_logs_attention_images_and_scalars(tmp_path):
    spec = tmp_path / "fls_tb.yaml"
    spec.write_text(yaml.safe_dump({**yaml.safe_load(Path("agents/fls_sparse.yaml").read_text()),
                                    "tensorboard": {"every": 1, "n_obs": 3}}))
    run, tb = tmp_path / "fls_run", tmp_path / "tb"
    assert main(["train", "--agent", str(spec), "--game", "breakout", "--timesteps", "256", "--out", str(run),
                 "--tensorboard", str(tb), *TINY]) == 0
    events = read_events(tb / "fls_run")
    images = events.Images("saliency/attention")
    # 4 rollouts of 64 steps (32 per env); the 3 observations are taken 42 steps apart (spread over 4 rollouts), the
    # last in the third rollout: images from then on, at every update
    assert [e.step for e in images] == [192, 256]
    for event in images:
        assert (event.height, event.width) == (168, 3 * 168 + 2 * 2)
        pixels = decode(event)
        assert pixels.shape == (168, 508, 3) and pixels.std() > 5  # a frame with a heat map, not a blank image
    assert {"train/loss", "train/entropy_loss", "time/fps"} <= set(events.Tags()["scalars"])
    fixed = np.load(tb / "fls_run" / "observations.npy")
    assert fixed.shape == (3, 4, 84, 84) and not np.array_equal(fixed[0], fixed[2])
    assert yaml.safe_load((run / "config.yaml").read_text())["tensorboard"] == str(tb)
    metrics = pd.read_csv(run / "metrics.csv")  # images and histograms stay out of metrics.csv
    assert len(metrics) == 4 and not any(c.startswith("saliency/") for c in metrics.columns)


def _explorer_ppo(tb: Path | None):
    from stable_baselines3 import PPO

    from rl_saliency.agents.exploration import make_explorer
    from rl_saliency.envs import make_atari_vec_env

    venv = make_atari_vec_env("breakout", n_envs=2, seed=0, backend="sb3")
    venv, explorer_callback = make_explorer({"buffer_size": 256, "batch_size": 32, "train_steps": 2}, venv, seed=0)
    model = PPO("CnnPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu",
                tensorboard_log=str(tb) if tb else None)
    return model, explorer_callback


def test_plain_sb3_with_explorer_logs_histogram_and_leaves_training_unchanged(tmp_path):
    """In plain SB3 (``tensorboard_log``): a method that draws from the global random state and the novelty map
    every update, the intrinsic rewards as a histogram; the weights end exactly as without the callback."""
    model, explorer_callback = _explorer_ppo(tmp_path / "tb")
    observations = np.random.default_rng(0).integers(0, 255, size=(2, 4, 84, 84), dtype=np.uint8)
    callback = SaliencyTensorBoardCallback(every=1, method="test_global_rng", observations=observations)
    model.learn(128, callback=[callback, explorer_callback], tb_log_name="run")
    events = read_events(tmp_path / "tb" / "run_1")
    assert [e.step for e in events.Images("saliency/test_global_rng")] == [64, 128]
    assert [(e.height, e.width) for e in events.Images("saliency/novelty")] == [(168, 2 * 168 + 2)] * 2
    histograms = events.Histograms("explorer/intrinsic_reward")
    assert len(histograms) == 2 and histograms[0].histogram_value.num == 64  # 32 steps x 2 envs per rollout
    assert "explorer/intrinsic_mean" in events.Tags()["scalars"]
    assert callback.images_logged == 2

    plain, plain_explorer = _explorer_ppo(None)
    plain.learn(128, callback=[plain_explorer])
    for (name, a), b in zip(model.policy.state_dict().items(), plain.policy.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_resumed_run_reuses_the_fixed_observations(tmp_path):
    from stable_baselines3 import PPO

    from rl_saliency.agents import SparseFLS
    from rl_saliency.envs import make_atari_vec_env

    saved = np.random.default_rng(1).integers(0, 255, size=(4, 4, 84, 84), dtype=np.uint8)
    np.save(tmp_path / "observations.npy", saved)
    venv = make_atari_vec_env("breakout", n_envs=1, backend="sb3")
    model = PPO("CnnPolicy", venv, n_steps=8, batch_size=8, device="cpu",
                policy_kwargs={"features_extractor_class": SparseFLS})
    callback = SaliencyTensorBoardCallback(obs_dir=tmp_path)
    callback.init_callback(model)
    venv.close()
    assert callback.method_name == "attention" and np.array_equal(callback.observations, saved)
    assert callback.saliency_strip(callback.method).shape == (168, 4 * 168 + 3 * 2, 3)
    with pytest.raises(OptionError, match="built-in attention"):  # NatureCNN has no attention to show
        SaliencyTensorBoardCallback(method="attention").init_callback(PPO("CnnPolicy", make_atari_vec_env(
            "breakout", n_envs=1, backend="sb3"), n_steps=8, batch_size=8, device="cpu"))
