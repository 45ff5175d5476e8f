"""The cue env: where the cue is, what it says, rewards, seeding, and the evaluator."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rl_saliency.envs.cue import CUE_ENV_ID, CueEnv, evaluate_on_cue, make_cue_vec_env


def patches_in(image: np.ndarray, cell: int = 12) -> list[tuple[int, int]]:
    """Cells (row, col) of the grid whose pixels are not all dark."""
    grid = image.shape[0] // cell
    return [(r, c) for r in range(grid) for c in range(grid) if image[r * cell:(r + 1) * cell,
                                                                      c * cell:(c + 1) * cell].any()]


def test_observation_holds_cue_among_distractors() -> None:
    env = CueEnv(n_distractors=8)
    obs, info = env.reset(seed=3)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    assert all((obs[i] == obs[0]).all() for i in range(4))  # a static image stacked like Atari frames
    assert len(patches_in(obs[0])) == 9  # the cue and 8 distractors, one per cell
    row, col, size = info["cue_box"]
    patch = obs[0, row:row + size, col:col + size] > 0
    assert (patch == env.cue_patterns[info["cue_class"]]).all()
    assert info["cue_cell"] == (row // 12) * 7 + col // 12
    # brightness gives nothing away, and only cues carry the frame
    assert len({int(p.sum()) for p in np.concatenate([env.cue_patterns, env.distractor_patterns])}) == 1
    assert not any(p[0].all() and p[-1].all() and p[:, 0].all() and p[:, -1].all() for p in env.distractor_patterns)


def test_reward_is_one_exactly_for_the_cue_class_and_episodes_end() -> None:
    env = CueEnv(episode_length=3)
    rewards = []
    _, info = env.reset(seed=0)
    cls = info["cue_class"]
    for t in range(3):
        wrong = (cls + 1) % env.n_actions
        _, reward, terminated, truncated, step_info = env.step(cls if t != 1 else wrong)
        rewards.append(reward)
        assert terminated == (t == 2) and not truncated
        cls = env.cue_info()["cue_class"]
    assert rewards == [1.0, 0.0, 1.0]
    assert env.optimal_return == 3.0
    with pytest.raises(ValueError, match="action 7"):
        env.step(7)


def test_seeding_is_reproducible_and_locations_vary() -> None:
    a, _ = CueEnv().reset(seed=11)
    b, _ = CueEnv().reset(seed=11)
    assert (a == b).all()
    cells = {CueEnv().reset(seed=s)[1]["cue_cell"] for s in range(40)}
    assert len(cells) > 15  # the cue moves around the grid


def test_jitter_moves_patches_inside_their_cell() -> None:
    boxes = {CueEnv(jitter=True).reset(seed=s)[1]["cue_box"][0] % 12 for s in range(30)}
    assert len(boxes) > 1 and max(boxes) <= 4


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="cell_size"):
        CueEnv(cell_size=10)
    with pytest.raises(ValueError, match="distractors"):
        CueEnv(n_distractors=60)


def test_registered_id_and_vec_env() -> None:
    env = gym.make(CUE_ENV_ID, n_actions=3)
    assert env.action_space.n == 3
    venv = make_cue_vec_env(n_envs=2, seed=0)
    assert venv.reset().shape == (2, 4, 84, 84)
    _, rewards, dones, infos = venv.step(np.array([0, 1]))
    assert dones.all() and "episode" in infos[0]


class _Oracle:
    """Reads the cue's frame from the pixels: glimpses its cell first, then acts on its pattern."""

    def __init__(self, env: CueEnv, glimpse: bool = True):
        self.env, self.glimpse = env, glimpse

    def predict(self, obs: np.ndarray, deterministic: bool = True):  # noqa: ANN201
        actions = []
        for image in obs[:, 0] > 0:
            for cell in range(49):
                r, c = (cell // 7) * 12 + 2, (cell % 7) * 12 + 2
                patch = image[r:r + 8, c:c + 8]
                if patch[0].all() and patch[-1].all() and patch[:, 0].all() and patch[:, -1].all():
                    cls = int(np.argmax([(patch == p).all() for p in self.env.cue_patterns]))
                    break
            glimpses = [cell, (cell + 1) % 49] if self.glimpse else [(cell + 1) % 49, (cell + 2) % 49]
            actions.append([cls, *glimpses])
        return np.array(actions), None


def test_evaluator_scores_an_oracle_and_a_blind_policy() -> None:
    env = CueEnv()
    oracle = evaluate_on_cue(_Oracle(env), episodes=40)
    assert oracle["fraction_of_optimal"] == 1.0 and oracle["cue_glimpse_rate"] == 1.0
    blind = evaluate_on_cue(_Oracle(env, glimpse=False), episodes=40)
    assert blind["cue_glimpse_rate"] == 0.0
