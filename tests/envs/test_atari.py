"""Both env backends: same preprocessing, clipped training rewards, true game scores, seeding."""

from __future__ import annotations

import numpy as np
import pytest

from rl_saliency.envs import UnknownGameError, make_atari_vec_env, resolve_game

BACKENDS = ["ale", "sb3"]


def _play(venv, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    obs = venv.reset()
    history = {"obs": [obs], "rewards": [], "dones": [], "infos": []}
    for _ in range(steps):
        obs, rewards, dones, infos = venv.step(rng.integers(0, venv.action_space.n, venv.num_envs))
        history["obs"].append(obs)
        history["rewards"].append(rewards)
        history["dones"].append(dones)
        history["infos"].append(infos)
    return history


@pytest.mark.parametrize("backend", BACKENDS)
def test_observations_shape_dtype_range(backend):
    venv = make_atari_vec_env("breakout", 2, seed=0, backend=backend)
    history = _play(venv, 20)
    venv.close()
    obs = np.stack(history["obs"])
    assert venv.observation_space.shape == (4, 84, 84)
    assert obs.shape == (21, 2, 4, 84, 84) and obs.dtype == np.uint8
    assert 0 < obs.max() <= 255 and obs.min() >= 0
    # Frames are stacked oldest to newest: the stack shifts by one frame each step.
    np.testing.assert_array_equal(obs[5, :, :3], obs[4, :, 1:])


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_clips_rewards_but_reports_true_scores(backend):
    # Ms. Pac-Man pellets are worth 10: clipped rewards are 1, the episode score is the real one.
    venv = make_atari_vec_env("ms_pacman", 2, seed=1, backend=backend, training=True, max_frames=1600)
    history = _play(venv, 450)
    venv.close()
    rewards = np.stack(history["rewards"])
    assert set(np.unique(rewards)) <= {-1.0, 0.0, 1.0}
    clipped_sum = np.zeros(2)
    episodes = []
    for step_rewards, infos in zip(history["rewards"], history["infos"], strict=True):
        clipped_sum += step_rewards
        for i, info in enumerate(infos):
            if "episode" in info:
                episodes.append((info["episode"]["r"], clipped_sum[i]))
                clipped_sum[i] = 0
    assert episodes, "no game ended within the frame cap"
    assert all(score >= 10 * clipped and score > 0 for score, clipped in episodes)


@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluation_mode_raw_rewards_and_whole_games(backend):
    venv = make_atari_vec_env("ms_pacman", 2, seed=2, backend=backend, training=False, max_frames=1600)
    history = _play(venv, 450)
    venv.close()
    rewards = np.stack(history["rewards"])
    assert rewards.max() >= 10  # raw points
    raw_sum = np.zeros(2)
    for step_rewards, dones, infos in zip(history["rewards"], history["dones"], history["infos"], strict=True):
        raw_sum += step_rewards
        for i, info in enumerate(infos):
            assert dones[i] == ("episode" in info)  # every episode end is a game end
            if dones[i]:
                assert info["episode"]["r"] == pytest.approx(raw_sum[i])
                assert info["terminal_observation"].shape == (4, 84, 84)
                raw_sum[i] = 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_life_loss_ends_training_episodes_not_games(backend):
    venv = make_atari_vec_env("breakout", 2, seed=3, backend=backend, training=True)
    history = _play(venv, 600)
    venv.close()
    n_dones = int(np.stack(history["dones"]).sum())
    n_games = sum("episode" in info for infos in history["infos"] for info in infos)
    assert n_games >= 1
    assert n_dones >= 4 * n_games  # Breakout has 5 lives


@pytest.mark.parametrize("backend", BACKENDS)
def test_seeding_is_reproducible(backend):
    runs = []
    for _ in range(2):
        venv = make_atari_vec_env("breakout", 2, seed=7, backend=backend)
        runs.append(np.stack(_play(venv, 60, seed=5)["obs"]))
        venv.close()
    np.testing.assert_array_equal(runs[0], runs[1])


def _noop_game(backend: str, training: bool, seed: int, max_steps: int = 600):
    """Play NOOP in one Breakout env until its game ends; steps, the done flags, infos and returned rewards."""
    venv = make_atari_vec_env("breakout", 1, seed=seed, backend=backend, training=training)
    obs = [venv.reset()]
    dones, infos, rewards = [], [], []
    for _ in range(max_steps):
        o, r, d, info = venv.step(np.zeros(1, dtype=np.int64))
        obs.append(o)
        dones.append(bool(d[0]))
        infos.append(info[0])
        rewards.append(float(r[0]))
        if "episode" in info[0]:
            break
    venv.close()
    return np.concatenate(obs), np.array(dones), infos, np.array(rewards)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 3])
def test_noop_policy_loses_every_breakout_life_in_training(backend, seed):
    # SB3's AtariWrapper presses FIRE (then 2) after every life loss, so an agent that never learned FIRE
    # still loses its 5 lives within ~340 steps (115 when the still paddle never meets the ball). Without it
    # the ale backend sat in a dead game at 4 lives until the frame cap (27,000 steps).
    obs, dones, infos, rewards = _noop_game(backend, training=True, seed=seed)
    assert "episode" in infos[-1], f"the NOOP game did not end within {len(infos)} steps"
    steps = len(infos)
    assert steps < 400
    assert dones.sum() == 5 and dones[-1]  # four life losses (episode ends for the learner) and the game over
    episode = infos[-1]["episode"]
    assert episode["r"] >= rewards.sum() >= 0  # the true score; the learner got clipped rewards
    # the game's length counts every emulator frame: the agent's steps and SB3's three hidden reset steps per
    # life loss (NOOP, FIRE, 2), plus at most ~40 frames of noop and fire reset at the start
    hidden = 3 * 4
    assert 4 * (steps + hidden) <= episode["l"] <= 4 * (steps + hidden) + 40
    # the learner's episode ends at each life loss: the terminal observation continues the stack it saw,
    # and the next episode starts from a stack of zeros, as SB3's VecFrameStack restarts it at a done
    for t in np.flatnonzero(dones[:-1]):
        np.testing.assert_array_equal(infos[t]["terminal_observation"][:3], obs[t][1:])
        assert not obs[t + 1][:3].any() and obs[t + 1][3].any()
        assert not obs[t + 2][:2].any() and obs[t + 2][3].any()
        np.testing.assert_array_equal(obs[t + 2][2], obs[t + 1][3])


@pytest.mark.parametrize("backend", BACKENDS)
def test_noop_policy_plays_whole_breakout_games_in_evaluation(backend):
    # Evaluation plays whole games, with the same FIRE after each life loss (as SB3 / rl-zoo and the FLS
    # reference evaluate): the only episode end is the game over, and its score is the sum of the raw rewards.
    obs, dones, infos, rewards = _noop_game(backend, training=False, seed=1)
    assert "episode" in infos[-1], f"the NOOP game did not end within {len(infos)} steps"
    assert len(infos) < 400
    assert dones.sum() == 1 and dones[-1]
    assert infos[-1]["episode"]["r"] == pytest.approx(rewards.sum())
    assert 4 * (len(infos) + 3 * 4) <= infos[-1]["episode"]["l"] <= 4 * (len(infos) + 3 * 4) + 40


@pytest.mark.parametrize("backend", BACKENDS)
def test_whole_breakout_games_score_right_with_random_play(backend):
    venv = make_atari_vec_env("breakout", 2, seed=3, backend=backend, training=False)
    history = _play(venv, 500)
    venv.close()
    raw_sum, games = np.zeros(2), 0
    for step_rewards, dones, infos in zip(history["rewards"], history["dones"], history["infos"], strict=True):
        raw_sum += step_rewards
        for i, info in enumerate(infos):
            assert dones[i] == ("episode" in info)
            if dones[i]:
                assert info["episode"]["r"] == pytest.approx(raw_sum[i])
                raw_sum[i] = 0
                games += 1
    assert games >= 1


def test_fire_reset_only_where_the_game_has_fire():
    # Ms. Pac-Man has no FIRE: after a life loss it gets only SB3's NOOP step, never FIRE.
    from rl_saliency.envs.atari import AleVecEnv, has_fire_reset

    assert has_fire_reset(["NOOP", "FIRE", "RIGHT", "LEFT"])
    assert not has_fire_reset(["NOOP", "UP", "RIGHT", "LEFT", "DOWN"])
    breakout, pacman = AleVecEnv(resolve_game("breakout"), 1), AleVecEnv(resolve_game("ms_pacman"), 1)
    assert breakout.reset_actions == [0, 1, 2] and pacman.reset_actions == [0]
    breakout.close()
    pacman.close()


def test_registry_resolves_names_and_ids():
    assert resolve_game("breakout").gym_id == "BreakoutNoFrameskip-v4"
    assert resolve_game("MsPacmanNoFrameskip-v4").name == "ms_pacman"
    assert resolve_game("ALE/SpaceInvaders-v5").name == "space_invaders"
    assert resolve_game("ms_pacman").atari_head == "ms_pacman"


def test_unknown_game_lists_close_matches():
    with pytest.raises(UnknownGameError, match="breakout"):
        resolve_game("breakot")


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend"):
        make_atari_vec_env("breakout", 1, backend="gpu")


def test_subprocess_backend_matches_dummy():
    obs = {}
    for vec_env_cls in ("dummy", "subproc"):
        venv = make_atari_vec_env("breakout", 2, seed=4, backend="sb3", vec_env_cls=vec_env_cls)
        obs[vec_env_cls] = np.stack(_play(venv, 30, seed=1)["obs"])
        venv.close()
    np.testing.assert_array_equal(obs["dummy"], obs["subproc"])
