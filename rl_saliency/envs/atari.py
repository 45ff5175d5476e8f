"""Vectorised Atari with DeepMind preprocessing, as an SB3 ``VecEnv``, on two backends.

``ale``: ale-py's threaded C++ ``AtariVectorEnv`` behind a real SB3 VecEnv adapter (the default).
``sb3``: SB3's ``make_atari_env`` (AtariWrapper) + ``VecFrameStack`` + channels first.

Both give observations (N, 4, 84, 84) uint8: noop reset (up to 30), frame skip 4 with a max over the
last two raw frames, fire reset, 84x84 grey, stack of 4. In training mode a life loss ends the episode
(the game goes on) and rewards are clipped to their sign; in evaluation mode episodes are whole games
and rewards are raw. Either way ``info["episode"]`` reports the true, unclipped score of each whole
game (``r``) and its length in emulator frames (``l``, as SB3's Monitor counts them) when it ends.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecFrameStack,
    VecTransposeImage,
)
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from rl_saliency.envs.registry import Game, resolve_game

BACKENDS = ("ale", "sb3")
FRAME_SKIP = 4
DEFAULT_MAX_FRAMES = 108_000  # 30 minutes of play at 60 Hz, the usual Atari episode cap


class AleVecEnv(VecEnv):
    """SB3 VecEnv over ``ale_py.vector_env.AtariVectorEnv``.

    ale-py's own ``episodic_life`` resets the whole game at a life loss, so life losses are taken from
    ``life_loss_info`` instead (episode ends, game continues), and rewards are clipped here from raw
    rewards so that true game scores can be reported.
    """

    def __init__(self, game: Game, n_envs: int, training: bool = True, max_frames: int = DEFAULT_MAX_FRAMES,
                 noop_max: int = 30, num_threads: int = 0, **ale_kwargs: Any):
        from ale_py.vector_env import AtariVectorEnv

        self.game = game
        self.training = training
        self.ale = AtariVectorEnv(
            game.ale_rom, n_envs, frameskip=FRAME_SKIP, stack_num=4, img_height=84, img_width=84, grayscale=True,
            maxpool=True, noop_max=noop_max, use_fire_reset=True, episodic_life=False, life_loss_info=training,
            reward_clipping=False, repeat_action_probability=0.0, max_num_frames_per_episode=max_frames,
            autoreset_mode="SameStep", num_threads=num_threads, **ale_kwargs)
        observation_space = gym.spaces.Box(0, 255, (4, 84, 84), dtype=np.uint8)
        super().__init__(n_envs, observation_space, self.ale.single_action_space)
        self._actions: np.ndarray | None = None
        self._scores = np.zeros(n_envs, dtype=np.float64)
        self._frames = np.zeros(n_envs, dtype=np.int64)
        self._starts = np.full(n_envs, time.time())
        self._t0 = time.time()
        self._seed: int | None = None

    def seed(self, seed: int | None = None) -> Sequence[None | int]:
        self._seed = seed
        return [None if seed is None else seed + i for i in range(self.num_envs)]

    def reset(self) -> VecEnvObs:
        obs, info = self.ale.reset(seed=self._seed)
        self._seed = None  # later resets continue the same random stream
        self._scores[:] = 0.0
        self._frames[:] = info["episode_frame_number"]
        self._starts[:] = time.time()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        obs, reward, terminated, truncated, info = self.ale.step(self._actions)
        reward = np.asarray(reward, dtype=np.float64)
        self._scores += reward
        frame_numbers = np.asarray(info["episode_frame_number"])
        dones = np.logical_or(terminated, truncated)
        # A real game end resets the emulator (SameStep autoreset), so its frame counter goes back.
        game_over = dones & (frame_numbers <= self._frames)
        infos: list[dict[str, Any]] = [{"lives": int(info["lives"][i])} for i in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = info["final_obs"][i]
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            if game_over[i]:
                infos[i]["episode"] = {"r": float(self._scores[i]), "l": int(self._frames[i] + FRAME_SKIP),
                                       "t": round(time.time() - self._t0, 6)}
                self._scores[i] = 0.0
        self._frames = frame_numbers.astype(np.int64)
        rewards = np.sign(reward) if self.training else reward
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.ale.close()

    # The C++ env has no per-env Python objects: attribute access answers for the adapter itself.
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self, attr_name, None) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        raise NotImplementedError(f"AleVecEnv has no per-env method {method_name!r}; use backend='sb3'")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        # evaluate_policy asks whether a Monitor is present: this adapter reports whole-game scores itself.
        from stable_baselines3.common.monitor import Monitor

        return [wrapper_class is Monitor for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]


def make_atari_vec_env(game: str | Game, n_envs: int = 8, seed: int | None = 0, backend: str = "ale",
                       training: bool = True, max_frames: int = DEFAULT_MAX_FRAMES, vec_env_cls: str = "dummy",
                       render_mode: str | None = None, num_threads: int = 0) -> VecEnv:
    """A VecEnv of ``n_envs`` copies of ``game`` with DeepMind preprocessing (see module docstring).

    ``backend``: ``ale`` (threaded C++, default) or ``sb3`` (``vec_env_cls`` ``dummy`` or ``subproc``;
    the one to use when RGB frames are needed, with ``render_mode="rgb_array"``).
    """
    game = game if isinstance(game, Game) else resolve_game(game)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "ale":
        if render_mode is not None:
            raise ValueError("the ale backend renders no RGB frames; use backend='sb3' with render_mode")
        venv: VecEnv = AleVecEnv(game, n_envs, training=training, max_frames=max_frames, num_threads=num_threads)
    else:
        venv = _make_sb3(game, n_envs, seed, training, max_frames, vec_env_cls, render_mode)
    if seed is not None:
        venv.seed(seed)
    return venv


def _gym_make_atari(gym_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` that registers ale-py's ids first: subprocess workers start without them."""
    import ale_py

    gym.register_envs(ale_py)
    return gym.make(gym_id, **kwargs)


def _make_sb3(game: Game, n_envs: int, seed: int | None, training: bool, max_frames: int, vec_env_cls: str,
              render_mode: str | None) -> VecEnv:
    from stable_baselines3.common.env_util import make_atari_env

    classes = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}
    if vec_env_cls not in classes:
        raise ValueError(f"vec_env_cls must be one of {', '.join(classes)}, got {vec_env_cls!r}")
    env_kwargs: dict[str, Any] = {"max_episode_steps": max_frames}
    if render_mode:
        env_kwargs["render_mode"] = render_mode
    venv = make_atari_env(functools.partial(_gym_make_atari, game.gym_id), n_envs=n_envs, seed=seed,
                          vec_env_cls=classes[vec_env_cls], env_kwargs=env_kwargs,
                          wrapper_kwargs={"terminal_on_life_loss": training, "clip_reward": training})
    return VecTransposeImage(VecFrameStack(venv, n_stack=4))
