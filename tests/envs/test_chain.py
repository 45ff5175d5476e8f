"""The MAX chain env: layout, rewards, episode length, vectorised monitoring."""

from __future__ import annotations

import numpy as np
import pytest

from rl_saliency.envs.chain import ChainEnv, make_chain_vec_env, reached_far_end


def _walk(env: ChainEnv, direction: int, steps: int) -> tuple[list[float], list[int], bool]:
    """Press the action that moves ``direction`` (+1 right, -1 left) in every state."""
    rewards, states, truncated = [], [], False
    for _ in range(steps):
        right = env.right_action[env.state]
        _, reward, terminated, truncated, info = env.step(right if direction > 0 else 1 - right)
        assert not terminated
        rewards.append(reward)
        states.append(info["state"])
    return rewards, states, truncated


def test_walking_right_reaches_the_far_end_and_pays_one_per_step() -> None:
    env = ChainEnv(n_states=10, layout_seed=3)
    obs, info = env.reset()
    assert obs.shape == (10,) and obs[1] == 1.0 and obs.sum() == 1.0 and info["state"] == 1
    rewards, states, truncated = _walk(env, +1, 19)  # episodes last N + 9 steps
    assert truncated
    assert states[:8] == list(range(2, 10)) and states[-1] == 9  # stays at the end (clipped)
    assert rewards[:7] == [0.0] * 7 and rewards[7:] == [1.0] * 12
    assert reached_far_end(sum(rewards), env)


def test_walking_left_gets_only_the_small_reward() -> None:
    env = ChainEnv(n_states=10)
    env.reset()
    rewards, states, truncated = _walk(env, -1, 19)
    assert truncated and set(states) == {0}
    assert sum(rewards) == pytest.approx(19 * 0.001)
    assert not reached_far_end(sum(rewards))


def test_action_meanings_are_shuffled_per_state_but_fixed_by_the_layout_seed() -> None:
    a, b, c = ChainEnv(20, layout_seed=0), ChainEnv(20, layout_seed=0), ChainEnv(20, layout_seed=1)
    assert np.array_equal(a.right_action, b.right_action)
    assert not np.array_equal(a.right_action, c.right_action)
    assert 0 < a.right_action.sum() < 20  # not "always press 1"
    assert (ChainEnv(20, randomize_actions=False).right_action == 1).all()


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least 3 states"):
        ChainEnv(n_states=2)
    env = ChainEnv()
    env.reset()
    with pytest.raises(ValueError, match="0 or 1"):
        env.step(2)


def test_vec_env_reports_monitored_episodes() -> None:
    venv = make_chain_vec_env(n_states=8, n_envs=3, seed=0)
    obs = venv.reset()
    assert obs.shape == (3, 8)
    episodes = []
    for _ in range(17):
        _, _, dones, infos = venv.step(np.zeros(3, dtype=np.int64))
        episodes += [info["episode"] for info in infos if "episode" in info]
    assert dones.all() and len(episodes) == 3 and all(e["l"] == 17 for e in episodes)
