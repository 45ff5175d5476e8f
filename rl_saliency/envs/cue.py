"""Cue env: a small image task where the rewarded action depends only on a small cue patch.

Each step shows a fresh image: one cue patch (one of ``n_actions`` binary patterns) at a random grid cell,
among distractor patches (other patterns, same brightness) in other cells. Action ``i`` earns 1 when the
cue shows pattern ``i``, else 0. Observations are (4, 84, 84) uint8 frame stacks like Atari's (the four
frames are the same image), so any Atari policy applies. The optimal return is ``episode_length``; an
agent that never finds the cue earns ``episode_length / n_actions``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import VecEnv

CUE_ENV_ID = "RlSaliencyCue-v0"
FRAME = 84
PATTERN_SEED = 1234  # the patterns are part of the task definition, not of an episode's randomness


def make_patterns(n: int, size: int, on: int | None = None, seed: int = PATTERN_SEED) -> np.ndarray:
    """``n`` distinct binary (size, size) patterns with exactly ``on`` pixels on (default half)."""
    rng = np.random.default_rng(seed)
    on = size * size // 2 if on is None else on
    patterns: list[np.ndarray] = []
    while len(patterns) < n:
        flat = np.zeros(size * size, dtype=bool)
        flat[rng.choice(size * size, on, replace=False)] = True
        if all((flat != p.ravel()).sum() >= size for p in patterns):  # keep them clearly different
            patterns.append(flat.reshape(size, size))
    return np.stack(patterns)


def cue_and_distractor_patterns(n_actions: int, n_distractors: int, size: int,
                                marker: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Cue patterns (one per action) and distractor patterns, all with the same number of pixels on.

    With ``marker`` every cue has a one-pixel frame (what makes it findable) around its class pattern;
    distractors are unframed patterns of the same brightness.
    """
    if not marker:
        patterns = make_patterns(n_actions + n_distractors, size)
        return patterns[:n_actions], patterns[n_actions:]
    inner = size - 2
    cues = np.zeros((n_actions, size, size), dtype=bool)
    cues[:, 0, :] = cues[:, -1, :] = cues[:, :, 0] = cues[:, :, -1] = True
    cues[:, 1:-1, 1:-1] = make_patterns(n_actions, inner)
    on = int(cues[0].sum())
    distractors = make_patterns(n_distractors, size, on=on, seed=PATTERN_SEED + 1)
    framed = distractors[:, 0, :].all(1) & distractors[:, -1, :].all(1)  # (never happens by chance, but be sure)
    if framed.any():
        raise AssertionError("a distractor pattern happens to carry the cue frame")
    return cues, distractors


class CueEnv(gym.Env):
    """Find the cue among distractors, act on its pattern.

    :param n_actions: actions, one cue pattern each
    :param n_distractors: distractor patches per image
    :param n_distractor_patterns: how many different distractor patterns exist
    :param cell_size: patches are placed one per cell of the (84 / cell_size)^2 grid
    :param patch_size: side of a patch in pixels (<= cell_size), centred in its cell
    :param marker: cues carry a one-pixel frame (what makes them findable); distractors do not
    :param jitter: place patches at a random offset inside their cell (much harder for stride-4 convs)
    :param episode_length: steps per episode (each step a fresh image)
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, n_actions: int = 4, n_distractors: int = 8, n_distractor_patterns: int = 8,
                 cell_size: int = 12, patch_size: int = 8, episode_length: int = 1, marker: bool = True,
                 jitter: bool = False, render_mode: str | None = None):
        if FRAME % cell_size or not 2 <= patch_size <= cell_size:
            raise ValueError(f"CueEnv: cell_size must divide {FRAME} and 2 <= patch_size <= cell_size; got "
                             f"cell_size={cell_size}, patch_size={patch_size}")
        self.grid = FRAME // cell_size
        if n_distractors + 1 > self.grid * self.grid:
            raise ValueError(f"CueEnv: {n_distractors} distractors + 1 cue do not fit a {self.grid}x{self.grid} grid")
        self.n_actions = n_actions
        self.n_distractors = n_distractors
        self.cell_size = cell_size
        self.patch_size = patch_size
        self.episode_length = episode_length
        self.jitter = jitter
        self.render_mode = render_mode
        self.cue_patterns, self.distractor_patterns = cue_and_distractor_patterns(
            n_actions, n_distractor_patterns, patch_size, marker=marker)
        self.observation_space = spaces.Box(0, 255, (4, FRAME, FRAME), dtype=np.uint8)
        self.action_space = spaces.Discrete(n_actions)
        self.optimal_return = float(episode_length)
        self._t = 0
        self._image = np.zeros((FRAME, FRAME), dtype=np.uint8)
        self._cue_class = 0
        self._cue_box = (0, 0)

    def _draw(self) -> None:
        """A fresh image: the cue and the distractors in distinct random cells, jittered inside them."""
        rng = self.np_random
        image = np.zeros((FRAME, FRAME), dtype=np.uint8)
        cells = rng.choice(self.grid * self.grid, self.n_distractors + 1, replace=False)
        self._cue_class = int(rng.integers(self.n_actions))
        for i, cell in enumerate(cells):
            pattern = (self.cue_patterns[self._cue_class] if i == 0
                       else self.distractor_patterns[rng.integers(len(self.distractor_patterns))])
            slack = self.cell_size - self.patch_size
            dy, dx = rng.integers(slack + 1, size=2) if self.jitter else (slack // 2, slack // 2)
            row = (cell // self.grid) * self.cell_size + int(dy)
            col = (cell % self.grid) * self.cell_size + int(dx)
            image[row:row + self.patch_size, col:col + self.patch_size] = pattern * np.uint8(255)
            if i == 0:
                self._cue_box = (int(row), int(col))
        self._image = image

    def _obs(self) -> np.ndarray:
        return np.repeat(self._image[None], 4, axis=0)

    def cue_info(self) -> dict[str, Any]:
        """Where the current image's cue is (box, centre, grid cell) and its class."""
        row, col = self._cue_box
        centre = (row + self.patch_size / 2, col + self.patch_size / 2)
        return {"cue_class": self._cue_class, "cue_box": (row, col, self.patch_size), "cue_centre": centre,
                "cue_cell": int(centre[0] // self.cell_size) * self.grid + int(centre[1] // self.cell_size)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # noqa: ANN201
        super().reset(seed=seed)
        self._t = 0
        self._draw()
        return self._obs(), self.cue_info()

    def step(self, action: int):  # noqa: ANN201
        if not self.action_space.contains(int(action)):
            raise ValueError(f"CueEnv: action {action} is not in {self.action_space}")
        reward = float(int(action) == self._cue_class)
        info = {"correct": bool(reward), "cue_class": self._cue_class}
        self._t += 1
        terminated = self._t >= self.episode_length
        if not terminated:
            self._draw()
        return self._obs(), reward, terminated, False, info

    def render(self) -> np.ndarray:
        """RGB image with the cue outlined in red."""
        rgb = np.repeat(self._image[..., None], 3, axis=2).copy()
        row, col = self._cue_box
        p = self.patch_size
        rgb[max(row - 1, 0), col:col + p] = rgb[min(row + p, FRAME - 1), col:col + p] = (255, 0, 0)
        rgb[row:row + p, max(col - 1, 0)] = rgb[row:row + p, min(col + p, FRAME - 1)] = (255, 0, 0)
        return rgb


if CUE_ENV_ID not in gym.registry:
    gym.register(id=CUE_ENV_ID, entry_point="rl_saliency.envs.cue:CueEnv")


def make_cue_vec_env(n_envs: int = 8, seed: int = 0, **env_kwargs: Any) -> VecEnv:
    """A DummyVecEnv of Monitor-wrapped ``CueEnv`` (true returns in ``info["episode"]``)."""
    return make_vec_env(CueEnv, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs)


def evaluate_on_cue(model: BaseAlgorithm | BasePolicy, episodes: int = 200, seed: int = 10_000,
                    deterministic: bool = True, batch: int = 50, **env_kwargs: Any) -> dict[str, float]:
    """Play ``episodes`` episodes; return mean return, its fraction of the optimum, and (for policies whose
    actions are ``[game action, glimpses...]`` on the env's grid) how often a glimpse lands on the cue."""
    policy = model.policy if isinstance(model, BaseAlgorithm) else model
    returns, hits, steps = [], 0, 0
    for start in range(0, episodes, batch):
        envs = [CueEnv(**env_kwargs) for _ in range(min(batch, episodes - start))]
        pairs = [env.reset(seed=seed + start + i) for i, env in enumerate(envs)]
        obs = np.stack([o for o, _ in pairs])
        cue_cells = np.array([info["cue_cell"] for _, info in pairs])
        total = np.zeros(len(envs))
        for _ in range(envs[0].episode_length):  # all episodes have the same length
            actions, _ = policy.predict(obs, deterministic=deterministic)
            actions = np.asarray(actions).reshape(len(envs), -1)
            if actions.shape[1] > 1:
                hits += int((actions[:, 1:] == cue_cells[:, None]).any(axis=1).sum())
            steps += len(envs)
            next_obs, next_cells = [], []
            for i, env in enumerate(envs):
                o, r, *_ = env.step(int(actions[i, 0]))
                total[i] += r
                next_obs.append(o)
                next_cells.append(env.cue_info()["cue_cell"])
            obs, cue_cells = np.stack(next_obs), np.array(next_cells)
        returns.extend(total.tolist())
    optimal = CueEnv(**env_kwargs).optimal_return
    mean_return = float(np.mean(returns))
    return {"mean_return": mean_return, "optimal_return": optimal, "fraction_of_optimal": mean_return / optimal,
            "cue_glimpse_rate": hits / steps, "episodes": float(episodes)}
