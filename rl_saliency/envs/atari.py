"""Vectorised Atari with DeepMind preprocessing, as an SB3 ``VecEnv``, on two backends.

``ale``: ale-py's C++ ``AtariVectorEnv`` (one single-env instance per env, each on its own worker thread)
behind a real SB3 VecEnv adapter (the default).
``sb3``: SB3's ``make_atari_env`` (AtariWrapper) + ``VecFrameStack`` + channels first.

Both give observations (N, 4, 84, 84) uint8: noop reset (up to 30), frame skip 4 with a max over the
last two raw frames, fire reset, 84x84 grey, stack of 4. After every life loss that does not end the game
both play SB3's reset steps (AtariWrapper = FireResetEnv over EpisodicLifeEnv, as in baselines and the FLS
reference): one NOOP step, then FIRE and action 2 where the game has FIRE, so an agent that never learned to
FIRE cannot sit in a dead Breakout game.

- Training mode: a life loss ends the episode (the game goes on); the reset steps are hidden from the
  learner (their rewards count in the game score only) and the frame stack restarts from zeros, as
  SB3's VecFrameStack does at a done; rewards are clipped to their sign.
- Evaluation mode: episodes are whole games and rewards are raw; the reset steps after a life loss are
  played inside the step that lost the life (their rewards are added to it) and the stack runs on. This is
  how SB3 / rl-zoo and the FLS reference evaluate (life-loss wrappers on, whole-game scores from Monitor).

Either way ``info["episode"]`` reports the true, unclipped score of each whole game (``r``) and its length
in emulator frames (``l``, as SB3's Monitor counts them, reset steps included) when it ends.
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
STACK = 4
DEFAULT_MAX_FRAMES = 108_000  # 30 minutes of play at 60 Hz, the usual Atari episode cap
NOOP, FIRE, FIRE_FOLLOW_UP = 0, 1, 2  # SB3's FireResetEnv presses action 1 (FIRE), then action 2


def has_fire_reset(action_meanings: Sequence[str]) -> bool:
    """Whether SB3's AtariWrapper would add FireResetEnv: the game has FIRE (action 1) and at least 3 actions."""
    return "FIRE" in action_meanings and len(action_meanings) >= 3 and action_meanings[FIRE] == "FIRE"


class AleVecEnv(VecEnv):
    """SB3 VecEnv over ``ale_py.vector_env.AtariVectorEnv``, one single-env instance per env.

    One instance per env, because after a life loss that env alone must play SB3's reset steps (NOOP, FIRE,
    2) while the others wait; the C++ vector env can only step all its envs together. ale-py's own
    ``episodic_life`` resets the whole game at a life loss, so life losses come from ``life_loss_info``; rewards
    are clipped here from raw rewards so that true game scores can be reported.
    """

    def __init__(self, game: Game, n_envs: int, training: bool = True, max_frames: int = DEFAULT_MAX_FRAMES,
                 noop_max: int = 30, **ale_kwargs: Any):
        from ale_py.vector_env import AtariVectorEnv

        self.game = game
        self.training = training
        self.envs = [AtariVectorEnv(
            game.ale_rom, 1, frameskip=FRAME_SKIP, stack_num=STACK, img_height=84, img_width=84, grayscale=True,
            maxpool=True, noop_max=noop_max, use_fire_reset=True, episodic_life=False, life_loss_info=True,
            reward_clipping=False, repeat_action_probability=0.0, max_num_frames_per_episode=max_frames,
            autoreset_mode="SameStep", num_threads=1, **ale_kwargs) for _ in range(n_envs)]
        meanings = [action.name for action in self.envs[0].ale.get_action_set()]
        self.reset_actions = [NOOP, FIRE, FIRE_FOLLOW_UP] if has_fire_reset(meanings) else [NOOP]
        observation_space = gym.spaces.Box(0, 255, (STACK, 84, 84), dtype=np.uint8)
        super().__init__(n_envs, observation_space, self.envs[0].single_action_space)
        self._actions: np.ndarray | None = None
        self._scores = np.zeros(n_envs, dtype=np.float64)
        self._frames = np.zeros(n_envs, dtype=np.int64)  # episode frame number of each game so far
        self._total_frames = np.zeros(n_envs, dtype=np.int64)  # emulator frame counter (not reset with a game)
        self._lives = np.zeros(n_envs, dtype=np.int64)
        self._blank = np.zeros(n_envs, dtype=np.int64)  # oldest stack slots still to show as zeros (training)
        self._t0 = time.time()
        self._seed: int | None = None

    def seed(self, seed: int | None = None) -> Sequence[None | int]:
        self._seed = seed
        return [None if seed is None else seed + i for i in range(self.num_envs)]

    def reset(self) -> VecEnvObs:
        obs = np.zeros((self.num_envs, *self.observation_space.shape), dtype=np.uint8)
        for i, env in enumerate(self.envs):
            obs[i], info = env.reset(seed=None if self._seed is None else self._seed + i)
            self._remember(i, info)
        self._seed = None  # later resets continue the same random stream
        self._scores[:] = 0.0
        self._blank[:] = 0
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def _remember(self, i: int, info: dict[str, np.ndarray]) -> None:
        self._frames[i] = int(info["episode_frame_number"][0])
        self._total_frames[i] = int(info["frame_number"][0])
        self._lives[i] = int(info["lives"][0])

    def _outcome(self, i: int, result: tuple) -> dict[str, Any]:
        """Book one step of env ``i``: its raw reward into the game score; did the game end, a life go?"""
        obs, reward, terminated, truncated, info = result
        frames, total = int(info["episode_frame_number"][0]), int(info["frame_number"][0])
        # A game end resets the emulator inside the step (SameStep autoreset): its episode frame counter no
        # longer follows the emulator's frame counter.
        game_over = bool(terminated[0] or truncated[0]) and frames != self._frames[i] + total - self._total_frames[i]
        lives = int(info["lives"][0])
        out = {"obs": obs[0], "reward": float(reward[0]), "game_over": game_over,
               "life_lost": bool(terminated[0]) and not game_over and lives < self._lives[i],
               "truncated": bool(truncated[0]) and not terminated[0]}
        self._scores[i] += out["reward"]
        if game_over:
            out["final_obs"] = info["final_obs"][0]
            # frames of the game that ended: as counted before this step, plus (at most) this step's skip
            out["episode"] = {"r": float(self._scores[i]), "l": int(self._frames[i] + FRAME_SKIP),
                              "t": round(time.time() - self._t0, 6)}
            self._scores[i] = 0.0
        self._remember(i, info)
        return out

    def _play_reset_steps(self, i: int) -> dict[str, Any]:
        """SB3's reset after a life loss, for env ``i`` alone: EpisodicLifeEnv's NOOP step, then FireResetEnv's
        FIRE and 2 (a life lost on those is followed by another NOOP, as there). Stops if the game ends."""
        actions, reward, k = list(self.reset_actions), 0.0, 0
        out: dict[str, Any] = {}
        while k < len(actions):
            self.envs[i].send(np.array([actions[k]]))
            out = self._outcome(i, self.envs[i].recv())
            reward += out["reward"]
            if out["game_over"]:
                break
            if out["life_lost"] and actions[k] != NOOP:
                actions.insert(k + 1, NOOP)
            k += 1
        out["reward"] = reward
        return out

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        for env, action in zip(self.envs, self._actions, strict=True):
            env.send(np.array([action]))
        results = [env.recv() for env in self.envs]  # the instances step in parallel, each on its thread
        obs = np.empty((self.num_envs, *self.observation_space.shape), dtype=np.uint8)
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        dones = np.zeros(self.num_envs, dtype=bool)
        infos: list[dict[str, Any]] = []
        for i, result in enumerate(results):
            out = self._outcome(i, result)
            obs[i], rewards[i] = out["obs"], out["reward"]
            info: dict[str, Any] = {}
            self._blank[i] = max(self._blank[i] - 1, 0)
            if out["life_lost"]:
                if self.training:
                    dones[i] = True
                    info["terminal_observation"] = out["obs"]
                    info["TimeLimit.truncated"] = False
                after = self._play_reset_steps(i)
                obs[i] = after["obs"]
                if not self.training:
                    rewards[i] += after["reward"]  # a whole-game step: its reward includes the reset steps'
                if after["game_over"]:  # the game ended during the reset steps: report it now
                    out = after
                elif self.training:
                    self._blank[i] = STACK - 1  # SB3's VecFrameStack restarts the stack at a done
            if out["game_over"]:
                dones[i] = True
                info["terminal_observation"] = out["final_obs"]
                info["TimeLimit.truncated"] = out["truncated"]
                info["episode"] = out["episode"]
                self._blank[i] = 0  # the C++ env zero-fills its stack at a game reset itself
            obs[i, : self._blank[i]] = 0
            info["lives"] = int(self._lives[i])
            infos.append(info)
        if self.training:
            rewards = np.sign(rewards)
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        for env in self.envs:
            env.close()

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


class WholeGameAfterLifeLoss(gym.Wrapper):
    """Over SB3's AtariWrapper with ``terminal_on_life_loss``: whole-game episodes for evaluation.

    A life loss that does not end the game is not passed on as an episode end: the wrapped env's reset (SB3's
    NOOP, FIRE, 2) is played at once and its raw rewards, read from the Monitor below, are added to the step.
    """

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if not terminated or truncated or self.env.get_wrapper_attr("was_real_done"):
            return obs, reward, terminated, truncated, info
        game_rewards = self.env.get_wrapper_attr("rewards")  # Monitor's raw rewards of the game so far
        games_before, n_before = len(self.env.get_wrapper_attr("episode_returns")), len(game_rewards)
        obs, _ = self.env.reset()
        returns = self.env.get_wrapper_attr("episode_returns")
        if len(returns) > games_before:  # the game ended during the reset steps (SB3 would drop its record)
            lengths, times = self.env.get_wrapper_attr("episode_lengths"), self.env.get_wrapper_attr("episode_times")
            info["episode"] = {"r": returns[-1], "l": lengths[-1], "t": round(times[-1], 6)}
            return obs, reward + returns[-1] - sum(game_rewards[:n_before]), True, False, info
        return obs, reward + sum(game_rewards[n_before:]), False, False, info


def _whole_game_atari_wrapper(env: gym.Env, **wrapper_kwargs: Any) -> gym.Env:
    from stable_baselines3.common.atari_wrappers import AtariWrapper

    return WholeGameAfterLifeLoss(AtariWrapper(env, **wrapper_kwargs))


def make_atari_vec_env(game: str | Game, n_envs: int = 8, seed: int | None = 0, backend: str = "ale",
                       training: bool = True, max_frames: int = DEFAULT_MAX_FRAMES, vec_env_cls: str = "dummy",
                       render_mode: str | None = None) -> VecEnv:
    """A VecEnv of ``n_envs`` copies of ``game`` with DeepMind preprocessing (see module docstring).

    ``backend``: ``ale`` (C++, default) or ``sb3`` (``vec_env_cls`` ``dummy`` or ``subproc``; the one to use
    when RGB frames are needed, with ``render_mode="rgb_array"``).
    """
    game = game if isinstance(game, Game) else resolve_game(game)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "ale":
        if render_mode is not None:
            raise ValueError("the ale backend renders no RGB frames; use backend='sb3' with render_mode")
        venv: VecEnv = AleVecEnv(game, n_envs, training=training, max_frames=max_frames)
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
    from stable_baselines3.common.atari_wrappers import AtariWrapper
    from stable_baselines3.common.env_util import make_vec_env

    classes = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}
    if vec_env_cls not in classes:
        raise ValueError(f"vec_env_cls must be one of {', '.join(classes)}, got {vec_env_cls!r}")
    env_kwargs: dict[str, Any] = {"max_episode_steps": max_frames}
    if render_mode:
        env_kwargs["render_mode"] = render_mode
    # make_atari_env's own recipe (Monitor under AtariWrapper), with whole games on top for evaluation
    venv = make_vec_env(functools.partial(_gym_make_atari, game.gym_id), n_envs=n_envs, seed=seed,
                        vec_env_cls=classes[vec_env_cls], env_kwargs=env_kwargs,
                        wrapper_class=AtariWrapper if training else _whole_game_atari_wrapper,
                        wrapper_kwargs={"terminal_on_life_loss": True, "clip_reward": training})
    return VecTransposeImage(VecFrameStack(venv, n_stack=STACK))
