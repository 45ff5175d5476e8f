"""Test helpers: tiny SB3 policies (stock CnnPolicy for PPO, A2C, DQN; Sparse FLS) on a fake image env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from stable_baselines3 import A2C, DQN, PPO


class FakeAtari(gym.Env):
    """Random stacked grey frames, 4 actions: enough to build an SB3 Atari policy without an emulator."""

    observation_space = gym.spaces.Box(0, 255, (4, 84, 84), dtype=np.uint8)
    action_space = gym.spaces.Discrete(4)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


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
