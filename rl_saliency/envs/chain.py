"""The chain env of MAX (Shyam et al. 2019), a hard-exploration test with vector observations.

``n_states`` states in a line; the agent starts in state 1. Being in state 0 pays a small reward
(0.001), being in the far end ``n_states - 1`` pays 1. Episodes last ``n_states + 9`` steps, so the far
end is reachable but a random walk almost never gets there and a greedy agent settles for the small
reward. Two actions; in each state which one moves right is fixed at random (``layout_seed``), so the
agent cannot learn "always press 1". Observations are one-hot states.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv


class ChainEnv(gym.Env):
    """N states in a line, small reward at the start, a large one at the far end."""

    metadata = {"render_modes": []}

    def __init__(self, n_states: int = 20, small_reward: float = 0.001, large_reward: float = 1.0,
                 max_steps: int | None = None, randomize_actions: bool = True, layout_seed: int = 0):
        if n_states < 3:
            raise ValueError(f"a chain needs at least 3 states, got {n_states}")
        self.n_states = n_states
        self.small_reward, self.large_reward = small_reward, large_reward
        self.max_steps = max_steps if max_steps is not None else n_states + 9
        # right_action[s]: the action that moves right in state s
        self.right_action = (np.random.default_rng(layout_seed).integers(0, 2, n_states) if randomize_actions
                             else np.ones(n_states, dtype=np.int64))
        self.observation_space = gym.spaces.Box(0.0, 1.0, (n_states,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.state, self.steps = 1, 0

    @property
    def far_end(self) -> int:
        return self.n_states - 1

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.n_states, np.float32)
        obs[self.state] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.state, self.steps = 1, 0
        return self._obs(), {"state": self.state}

    def step(self, action: int):
        if not self.action_space.contains(int(action)):
            raise ValueError(f"chain actions are 0 or 1, got {action!r}")
        move = 1 if int(action) == self.right_action[self.state] else -1
        self.state = int(np.clip(self.state + move, 0, self.far_end))
        self.steps += 1
        reward = self.large_reward if self.state == self.far_end else self.small_reward if self.state == 0 else 0.0
        truncated = self.steps >= self.max_steps
        return self._obs(), reward, False, truncated, {"state": self.state}


def make_chain_vec_env(n_states: int = 20, n_envs: int = 8, seed: int = 0, **kwargs: Any) -> VecEnv:
    """``n_envs`` monitored chains (one layout, ``layout_seed`` defaults to ``seed``) in a DummyVecEnv."""
    kwargs.setdefault("layout_seed", seed)

    def make(rank: int):
        def thunk() -> gym.Env:
            return Monitor(ChainEnv(n_states, **kwargs))
        return thunk

    venv = DummyVecEnv([make(i) for i in range(n_envs)])
    venv.seed(seed)
    return venv


def reached_far_end(episode_return: float, env: ChainEnv | None = None) -> bool:
    """Whether an episode visited the far end: its return can only reach the large reward by doing so."""
    large = env.large_reward if env is not None else 1.0
    return episode_return >= large
