"""PPO with and without the novelty explorer on the chain env: the experiment behind the test and the
benchmark (``benchmarks/explorer.py``). Experiment code: it lives here, not in the package."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from rl_saliency.agents.exploration import make_explorer
from rl_saliency.envs.chain import make_chain_vec_env

# Small, fast PPO for a 20-state chain (one-hot observations, 29-step episodes).
CHAIN_PPO: dict[str, Any] = {"n_steps": 64, "batch_size": 256, "n_epochs": 4, "learning_rate": 1e-3,
                             "gamma": 0.99, "gae_lambda": 0.95, "ent_coef": 0.03,
                             "policy_kwargs": {"net_arch": [64, 64]}}
# The buffer holds the whole run: with a short FIFO, states the agent has left behind are forgotten and
# become "novel" again, pulling it back.
CHAIN_EXPLORER: dict[str, Any] = {"beta": 1.0, "hidden": 64, "lr": 3e-3, "buffer_size": 50_000, "batch_size": 256,
                                  "train_steps": 64}


@dataclass
class ChainRun:
    explorer: bool
    seed: int
    timesteps: list[int] = field(default_factory=list)  # env steps at each episode end
    returns: list[float] = field(default_factory=list)  # extrinsic episode returns (info["episode"])
    first_far_end: int | None = None  # env steps when an episode first reached the far end
    frontier: list[tuple[int, int]] = field(default_factory=list)  # (env steps, state) each time a new furthest
    seconds: float = 0.0                                            # state is first reached

    def reached(self) -> np.ndarray:
        return np.asarray(self.returns) >= 1.0


class _EpisodeRecorder(BaseCallback):
    def __init__(self, run: ChainRun):
        super().__init__()
        self.run = run

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "state" in info and (not self.run.frontier or info["state"] > self.run.frontier[-1][1]):
                self.run.frontier.append((self.num_timesteps, int(info["state"])))
            episode = info.get("episode")
            if episode is None:
                continue
            self.run.timesteps.append(self.num_timesteps)
            self.run.returns.append(float(episode["r"]))
            if episode["r"] >= 1.0 and self.run.first_far_end is None:
                self.run.first_far_end = self.num_timesteps
        return True


def run_chain(explorer: bool, seed: int = 0, timesteps: int = 20_000, n_states: int = 20, n_envs: int = 8,
              ppo_kwargs: dict[str, Any] | None = None, explorer_config: dict[str, Any] | None = None) -> ChainRun:
    """Train PPO (optionally with the explorer) on a chain; record every episode's extrinsic return."""
    venv = make_chain_vec_env(n_states, n_envs=n_envs, seed=seed)
    callbacks: list[BaseCallback] = []
    if explorer:
        venv, callback = make_explorer({**CHAIN_EXPLORER, **(explorer_config or {})}, venv, seed=seed)
        callbacks.append(callback)
    run = ChainRun(explorer=explorer, seed=seed)
    callbacks.append(_EpisodeRecorder(run))
    kwargs = {**CHAIN_PPO, **(ppo_kwargs or {})}
    model = PPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **kwargs)
    start = time.perf_counter()
    model.learn(total_timesteps=timesteps, callback=CallbackList(callbacks))
    run.seconds = time.perf_counter() - start
    venv.close()
    return run
