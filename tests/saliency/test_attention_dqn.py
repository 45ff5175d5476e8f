"""The attention readout works for DQN too (its extractor lives inside the Q-network)."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3 import DQN

from rl_saliency.agents import SparseFLS
from rl_saliency.envs import make_atari_vec_env
from rl_saliency.saliency import get_method


def test_attention_on_dqn_with_fls_extractor():
    venv = make_atari_vec_env("breakout", 1, seed=0)
    model = DQN("CnnPolicy", venv, buffer_size=64, device="cpu",
                policy_kwargs={"features_extractor_class": SparseFLS})
    obs = venv.reset()
    for _ in range(8):
        obs = np.concatenate([obs, venv.step(np.array([1]))[0]])
    venv.close()
    maps = get_method("attention").attribute(model.policy, obs[-4:])
    assert maps.shape == (4, 84, 84) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and (maps >= 0).all() and maps.std() > 0
    extractor = model.policy.q_net.features_extractor
    np.testing.assert_allclose(maps, extractor.project_attention(extractor.last_attention).numpy(), rtol=1e-6)


def test_attention_on_stock_dqn_names_the_problem():
    venv = make_atari_vec_env("breakout", 1, seed=0)
    model = DQN("CnnPolicy", venv, buffer_size=64, device="cpu")
    obs = venv.reset()
    venv.close()
    with pytest.raises(ValueError, match="built-in attention"):
        get_method("attention").attribute(model.policy, obs)
