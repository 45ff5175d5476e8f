"""A fake Atari env for the tests: random stacked grey frames, enough to build an SB3 Atari policy without an
emulator (tests/ is on sys.path through its conftest.py, so every test folder can import it)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class FakeAtari(gym.Env):
    """Random (4, 84, 84) uint8 observations, ``n`` actions, no reward, never done."""

    observation_space = gym.spaces.Box(0, 255, (4, 84, 84), dtype=np.uint8)

    def __init__(self, n: int = 4):
        self.action_space = gym.spaces.Discrete(n)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}
