"""The FLS paper's PPO settings (baselines ppo2) as agent specs beside rl-zoo's recipe (the default)."""

from __future__ import annotations

import pytest
from fake_atari import FakeAtari
from stable_baselines3.common.vec_env import DummyVecEnv

from rl_saliency.agents import load_spec

TWINS = ["nature", "fls_sparse", "fls_sparse_pool", "fls_dense", "daqn", "rsppo"]
# what the paper's ppo2 run changes against rl-zoo's recipe (everything else must be the same)
PAPER = {"clip_range": 0.1, "clip_range_vf": 0.1, "vf_coef": 0.25, "gamma": 0.99, "gae_lambda": 0.95,
         "max_grad_norm": 0.5}


@pytest.mark.parametrize("name", TWINS)
def test_paper_spec_is_the_rl_zoo_spec_with_ppo2_settings(name):
    zoo, paper = load_spec(name), load_spec(f"{name}_paper")
    assert paper.name == f"{name}_paper"
    assert (paper.features_extractor, paper.features_extractor_kwargs, paper.policy_kwargs, paper.n_envs) == (
        zoo.features_extractor, zoo.features_extractor_kwargs, zoo.policy_kwargs, zoo.n_envs)
    assert zoo.n_timesteps == 10_000_000 and paper.n_timesteps == 50_000_000  # 5e7 agent steps = 2e8 frames
    assert zoo.hyperparams["clip_range"] == "lin_0.1" and "clip_range_vf" not in zoo.hyperparams
    assert zoo.hyperparams["vf_coef"] == 0.5
    assert {key: value for key, value in paper.hyperparams.items() if key not in PAPER} == {
        key: value for key, value in zoo.hyperparams.items() if key not in PAPER}
    assert {key: paper.hyperparams[key] for key in PAPER} == PAPER


@pytest.mark.parametrize("name", ["nature", "fls_sparse"])
def test_paper_spec_builds_ppo_with_constant_clipping(name):
    model = load_spec(f"{name}_paper").build_model(DummyVecEnv([FakeAtari]), device="cpu", batch_size=128)
    for progress in (1.0, 0.5, 0.01):  # SB3 passes the remaining progress, 1 -> 0
        assert model.clip_range(progress) == pytest.approx(0.1)
        assert model.clip_range_vf(progress) == pytest.approx(0.1)
        assert model.lr_schedule(progress) == pytest.approx(2.5e-4 * progress)  # as rl-zoo and ppo2: decaying
    assert model.vf_coef == 0.25 and model.ent_coef == 0.01 and model.max_grad_norm == 0.5
    assert model.policy.optimizer.defaults["eps"] == 1e-5  # Adam's epsilon, as baselines' ppo2
    zoo = load_spec(name).build_model(DummyVecEnv([FakeAtari]), device="cpu", batch_size=128)
    assert zoo.clip_range(0.5) == pytest.approx(0.05) and zoo.clip_range_vf is None
