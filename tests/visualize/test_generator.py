"""The generator prior (DGN-AM): it learns to invert the agent's features, resumes exactly, stays in 0..255, and
activation maximisation over its code raises the target inside the code bounds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import FakeAtari
from stable_baselines3 import PPO

from rl_saliency.errors import DataError, OptionError
from rl_saliency.visualize import get_visualizer
from rl_saliency.visualize.generator import (
    GeneratorConfig,
    GeneratorPrior,
    encode_all,
    train_generator,
)

CONFIG = dict(steps=40, batch_size=16, lr=2e-3, checkpoint_every=20, seed=0)


def rectangles(n: int, seed: int = 0) -> np.ndarray:
    """Frames like a game's: a few bright rectangles on a dark background, moving a little across the stack."""
    rng = np.random.default_rng(seed)
    obs = np.zeros((n, 4, 84, 84), dtype=np.uint8)
    for i in range(n):
        for _ in range(3):
            r, c, h, w = rng.integers(0, 70), rng.integers(0, 70), rng.integers(4, 14), rng.integers(4, 14)
            level = rng.integers(120, 256)
            for f in range(4):
                obs[i, f, r:r + h, c + f:c + f + w] = level
    return obs


@pytest.fixture(scope="module")
def policy():
    policy = PPO("CnnPolicy", FakeAtari(4), n_steps=8, batch_size=8, seed=0, device="cpu").policy
    policy.set_training_mode(False)
    return policy


@pytest.fixture(scope="module")
def trained(policy, tmp_path_factory):
    folder = tmp_path_factory.mktemp("generator")
    obs = rectangles(64)
    prior = train_generator(policy, obs, folder, GeneratorConfig(**CONFIG))
    return prior, folder, obs


def reconstruction_error(prior: GeneratorPrior, policy, frames: np.ndarray) -> float:
    with torch.no_grad():
        recon = prior.decode(encode_all(policy, frames)).numpy()
    return float(((recon - frames) ** 2).mean())


def test_reconstruction_error_falls_and_samples_stay_in_range(trained, policy, tmp_path) -> None:
    prior, folder, obs = trained
    history = prior.history
    assert list(history["step"]) == list(range(1, 41))
    assert history["pixel_loss"][-10:].mean() < 0.7 * history["pixel_loss"][:10].mean()
    assert history["feature_loss"][-10:].mean() < 0.75 * history["feature_loss"][:10].mean()
    # on all the training observations at once (not a random batch): after 40 steps G(E(x)) is closer to x than
    # after 1 step
    first = train_generator(policy, obs, tmp_path, GeneratorConfig(**{**CONFIG, "steps": 1}))
    assert reconstruction_error(prior, policy, obs) < 0.7 * reconstruction_error(first, policy, obs)
    # samples from any code, even far outside the real ones, are frames in 0..255
    codes = torch.randn(8, prior.generator.code_dim) * 1e3
    with torch.no_grad():
        samples = prior.decode(codes)
    assert samples.shape == (8, 4, 84, 84) and samples.min() >= 0 and samples.max() <= 255
    # a = mean + 3 std of the real codes, never negative
    codes = encode_all(policy, obs)
    assert torch.allclose(prior.code_max, (codes.mean(0) + 3 * codes.std(0)).clamp_min(0), atol=1e-5)
    assert (folder / "generator.pt").exists() and len(pd.read_csv(folder / "history.csv")) == 40


def test_resume_gives_the_same_generator(trained, policy, tmp_path) -> None:
    prior, _, obs = trained
    half = train_generator(policy, obs, tmp_path, GeneratorConfig(**{**CONFIG, "steps": 20}))
    assert half.step == 20
    resumed = train_generator(policy, obs, tmp_path, GeneratorConfig(**CONFIG))
    assert resumed.step == 40 and list(resumed.history["step"]) == list(range(1, 41))
    for a, b in zip(resumed.generator.state_dict().values(), prior.generator.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    loaded = GeneratorPrior.load(tmp_path)
    assert loaded.step == 40 and torch.allclose(loaded.code_max, prior.code_max)
    with pytest.raises(DataError, match="other settings"):
        train_generator(policy, obs, tmp_path, GeneratorConfig(**{**CONFIG, "feature_weight": 2.0}))
    with pytest.raises(DataError, match="another agent, other observations"):
        train_generator(policy, rectangles(64, seed=5), tmp_path, GeneratorConfig(**CONFIG))


def test_maximising_over_the_code_raises_the_action_inside_the_bounds(trained, policy) -> None:
    prior = trained[0]
    vis = get_visualizer("generator", prior=prior, steps=30, lr=0.1).visualize(policy, [0, 3])
    assert vis.frames.shape == (2, 4, 84, 84) and vis.frames.min() >= 0 and vis.frames.max() <= 255
    table = vis.table
    assert (table["score_after"] > table["score_before"]).all()
    codes = torch.as_tensor(vis.extra["codes"])
    assert (codes >= 0).all() and (codes <= prior.code_max + 1e-5).all()
    units = get_visualizer("generator", prior=prior, steps=20, units=True).visualize(policy, ["features:5"])
    assert units.rows[0]["score_after"] > units.rows[0]["score_before"]
    start = get_visualizer("generator", prior=prior, steps=5, init="observation").visualize(
        policy, [1], rectangles(1, seed=3))
    assert start.start.shape == (1, 4, 84, 84)


def test_bad_input(trained, policy, tmp_path) -> None:
    with pytest.raises(OptionError, match="needs a trained GeneratorPrior"):
        get_visualizer("generator", prior=None)
    with pytest.raises(DataError, match="no generator checkpoint"):
        GeneratorPrior.load(tmp_path)
    (tmp_path / "generator.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="unreadable"):
        GeneratorPrior.load(tmp_path)
    with pytest.raises(DataError, match="at least 2 observations"):
        train_generator(policy, rectangles(1), tmp_path / "x", GeneratorConfig(**CONFIG))
    with pytest.raises(OptionError, match="out of range"):
        get_visualizer("generator", prior=trained[0]).visualize(policy, [9])
