"""Test helpers: tiny SB3 policies (stock CnnPolicy for PPO, A2C, DQN; Sparse FLS) on a fake image env."""

from __future__ import annotations

from fake_atari import FakeAtari  # noqa: F401 - the tests import it from here too
from stable_baselines3 import A2C, DQN, PPO


def make_policy(kind: str, seed: int = 0):
    env = FakeAtari()
    if kind == "ppo":
        return PPO("CnnPolicy", env, n_steps=8, batch_size=8, seed=seed, device="cpu").policy
    if kind == "a2c":
        return A2C("CnnPolicy", env, n_steps=8, seed=seed, device="cpu").policy
    if kind == "dqn":
        return DQN("CnnPolicy", env, buffer_size=16, learning_starts=0, seed=seed, device="cpu").policy
    if kind == "fls":
        from rl_saliency.agents.extractors import SparseFLS, paper_policy_kwargs

        return PPO("CnnPolicy", env, n_steps=8, batch_size=8, seed=seed, device="cpu",
                   policy_kwargs=paper_policy_kwargs(SparseFLS)).policy
    raise ValueError(kind)
