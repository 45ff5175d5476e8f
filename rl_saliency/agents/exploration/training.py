"""SB3 glue for the explorer: the reward wrapper, the callback that trains and saves it, ``make_explorer``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from rl_saliency.agents.exploration.explorer import NoveltyExplorer, read_state
from rl_saliency.errors import DataError


class NoveltyRewardWrapper(VecEnvWrapper):
    """Adds ``beta * r_int / std(discounted intrinsic return)`` to the rewards and feeds the explorer's
    buffer with (features, action, next features) of every step (terminal observations included)."""

    def __init__(self, venv: VecEnv, explorer: NoveltyExplorer):
        super().__init__(venv)
        self.explorer = explorer
        self.beta, self.gamma = float(explorer.config["beta"]), float(explorer.config["gamma"])
        self._last_obs: np.ndarray | None = None
        self._last_features: torch.Tensor | None = None
        self._actions: np.ndarray | None = None
        self._returns = np.zeros(self.num_envs)
        self.reset_stats()

    def reset_stats(self) -> None:
        self.stats: dict[str, list[np.ndarray]] = {"intrinsic": [], "bonus": []}

    def reset(self) -> np.ndarray:
        obs = self.venv.reset()
        self._last_obs, self._last_features = obs, None  # features computed lazily (agent features need a policy)
        self._returns[:] = 0.0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).copy()
        self.venv.step_async(actions)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        ex = self.explorer
        with torch.inference_mode():
            if self._last_features is None:
                self._last_features = ex.features(self._last_obs)
            new_features = ex.features(obs)
            next_features = new_features.clone()  # at episode ends: the terminal obs, not the reset one
            ends = [i for i, done in enumerate(dones) if done and "terminal_observation" in infos[i]]
            if ends:
                terminal = np.stack([infos[i]["terminal_observation"] for i in ends])
                next_features[ends] = ex.features(terminal)
            # clamped at 0 (MAX ranks plans by the raw utility; as a reward, the order-2 divergence's dip below 0
            # from unequal member variances is not novelty and would punish visits)
            intrinsic = ex.utility(self._last_features, self._actions).clamp_min(0.0).cpu().numpy().astype(np.float64)
        ex.add(self._last_features, self._actions, next_features)
        self._returns = self._returns * self.gamma + intrinsic
        bonus = self.beta * ex.normalise_return(intrinsic, self._returns)
        self._returns[dones] = 0.0
        for info, r_int in zip(infos, intrinsic, strict=True):
            info["intrinsic_reward"] = float(r_int)
        self.stats["intrinsic"].append(intrinsic)
        self.stats["bonus"].append(bonus)
        self._last_obs, self._last_features = obs, new_features
        return obs, (rewards + bonus).astype(np.float32), dones, infos


class NoveltyCallback(BaseCallback):
    """Trains the ensemble at each rollout end, logs ``explorer/*``, saves and loads the explorer state."""

    def __init__(self, wrapper: NoveltyRewardWrapper, verbose: int = 0):
        super().__init__(verbose)
        self.wrapper, self.explorer = wrapper, wrapper.explorer

    def _init_callback(self) -> None:
        self.explorer.use_agent_features(self.model.policy)
        # saliency hook: the ``novelty`` method finds the explorer here (a plain attribute, not a submodule,
        # so the model's own state_dict is unchanged)
        self.model.policy.__dict__["explorer"] = self.explorer

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        self._record_training(self.explorer.finish_training())

    def _on_training_end(self) -> None:
        self._record_training(self.explorer.finish_training())

    def _record_training(self, stats: dict[str, float] | None) -> None:
        for key, value in (stats or {}).items():
            self.logger.record(f"explorer/{key}", value)

    def _on_rollout_end(self) -> None:
        # with train_async the round trains beside the agent's update; its loss and disagreement are logged when
        # the next rollout starts (in the next log row), else right here as before
        if self.explorer.config["train_async"]:
            self.explorer.start_training()
        else:
            self._record_training(self.explorer.train_ensemble())
        intrinsic = np.concatenate(self.wrapper.stats["intrinsic"]) if self.wrapper.stats["intrinsic"] else None
        if intrinsic is not None:
            bonus = np.concatenate(self.wrapper.stats["bonus"])
            self.logger.record("explorer/intrinsic_mean", float(intrinsic.mean()))
            self.logger.record("explorer/intrinsic_std", float(intrinsic.std()))
            self.logger.record("explorer/intrinsic_max", float(intrinsic.max()))
            self.logger.record("explorer/bonus_mean", float(bonus.mean()))
        self.logger.record("explorer/return_std", float(np.sqrt(self.explorer.return_rms.var)))
        self.wrapper.reset_stats()

    def save_state(self, path: str | Path) -> None:
        self.explorer.save(path)

    def load_state(self, path: str | Path) -> None:
        try:
            self.explorer.load_state_dict(read_state(path))
        except DataError as err:
            raise DataError(f"{path}: {err}") from err


def make_explorer(config: dict[str, Any] | None, venv: VecEnv, seed: int = 0) -> tuple[VecEnv, BaseCallback]:
    """Wrap ``venv`` with the novelty bonus; returns the wrapped env and the callback to pass to ``learn``.
    ``config`` is the spec's ``explorer:`` mapping (keys and defaults in ``DEFAULTS``)."""
    explorer = NoveltyExplorer(venv.observation_space, venv.action_space, config, seed=seed)
    wrapper = NoveltyRewardWrapper(venv, explorer)
    return wrapper, NoveltyCallback(wrapper)
