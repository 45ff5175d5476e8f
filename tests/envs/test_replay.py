"""Replaying raw frames gives exactly the observations SB3's AtariWrapper + frame stack give the agent."""

from __future__ import annotations

from collections import deque

import ale_py
import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.atari_wrappers import AtariWrapper, WarpFrame

from rl_saliency.envs.replay import ReplayReport, covered_frames, replay_observations, warp_frame

gym.register_envs(ale_py)
GAME = "MsPacmanNoFrameskip-v4"
STEPS = 24


@pytest.fixture(scope="module")
def recorded():
    """Raw frames of one play (index 1 = reset frame; step k covers raw frames 4k-2 .. 4k+1) and the
    stacked observation SB3 gives after each step, with the same seed and actions."""
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 9, size=STEPS)
    raw_env = gym.make(GAME)
    frame, _ = raw_env.reset(seed=0)
    frames = [(1, frame)]
    for a in actions:
        for _ in range(4):
            frame, *_ = raw_env.step(int(a))
            frames.append((len(frames) + 1, frame))
    raw_env.close()
    env = AtariWrapper(gym.make(GAME), noop_max=0, terminal_on_life_loss=False, clip_reward=False)
    obs, _ = env.reset(seed=0)
    stack = deque([np.zeros((84, 84), np.uint8)] * 3 + [obs[..., 0]], maxlen=4)
    sb3 = {}
    for k, a in enumerate(actions, start=1):
        obs, *_ = env.step(int(a))
        stack.append(obs[..., 0])
        sb3[4 * k + 1] = np.stack(stack)  # the step ends on raw frame 4k+1
    env.close()
    return frames, sb3


def test_covered_frames():
    assert covered_frames(20) == [20, 19, 16, 15, 12, 11, 8, 7]


def test_warp_frame_matches_sb3(recorded):
    frames, _ = recorded
    warped = WarpFrame(gym.make(GAME)).observation(frames[5][1])
    np.testing.assert_array_equal(warp_frame(frames[5][1]), warped[..., 0])


def test_replay_equals_sb3_observations(recorded):
    frames, sb3 = recorded
    wanted = [i for i in sb3 if i >= 4 * 4 + 1]  # from step 4 on, the stack holds no reset padding
    report = ReplayReport()
    replayed = dict(replay_observations(iter(frames), indices=wanted, report=report))
    assert sorted(replayed) == wanted and not report.gaps
    for i in wanted:
        assert replayed[i].shape == (4, 84, 84) and replayed[i].dtype == np.uint8
        np.testing.assert_array_equal(replayed[i], sb3[i], err_msg=f"observation at raw frame {i}")
    # the play is not static: the test compares changing observations
    assert not np.array_equal(replayed[wanted[0]], replayed[wanted[-1]])


def test_default_indices_and_stride(recorded):
    frames, sb3 = recorded
    every = [i for i, _ in replay_observations(iter(frames))]
    assert every[0] == 1 + 13 and every == list(range(14, len(frames) + 1))
    strided = dict(replay_observations(iter(frames), stride=4))
    assert sorted(strided) == list(range(14, len(frames) + 1, 4))
    np.testing.assert_array_equal(strided[18], replayed_at(frames, 18))


def replayed_at(frames, i):
    return dict(replay_observations(iter(frames), indices=[i]))[i]


def test_missing_frames_are_reported_gaps(recorded):
    frames, sb3 = recorded
    holey = [(i, f) for i, f in frames if i != 40]  # frame 40 feeds observations 40 and 41 and 44, 45, ...
    report = ReplayReport()
    out = dict(replay_observations(iter(holey), indices=range(30, 60), report=report))
    expected_gaps = sorted(i for i in range(30, 60) if 40 in covered_frames(i))
    assert report.gaps == expected_gaps
    assert sorted(out) == sorted(set(range(30, 60)) - set(expected_gaps))
    np.testing.assert_array_equal(out[57], sb3[57])  # observations that do not touch frame 40 are intact
    report = ReplayReport()
    list(replay_observations(iter(frames[:20]), indices=[18, 30], report=report))
    assert report.gaps == [30] and report.emitted == 1  # past the last frame


def test_frames_out_of_order_raise(recorded):
    frames, _ = recorded
    with pytest.raises(ValueError, match="ascending"):
        list(replay_observations(iter([frames[3], frames[2]])))


def test_grey_pool_equals_the_ale_backend(recorded):
    """ale-py's AtariVectorEnv (the ale backend) turns frames grey before the max: pool="grey" replays it."""
    from ale_py.vector_env import AtariVectorEnv

    frames, sb3 = recorded
    actions = np.random.default_rng(0).integers(0, 9, size=STEPS)
    env = AtariVectorEnv("ms_pacman", 1, frameskip=4, stack_num=4, img_height=84, img_width=84, grayscale=True,
                         maxpool=True, noop_max=0, use_fire_reset=False, episodic_life=False,
                         repeat_action_probability=0.0)
    env.reset(seed=0)
    ale = {}
    for k, a in enumerate(actions, start=1):
        obs, *_ = env.step(np.array([a]))
        ale[4 * k + 1] = obs[0]
    env.close()
    wanted = [i for i in ale if i >= 17]
    grey = dict(replay_observations(iter(frames), indices=wanted, pool="grey"))
    for i in wanted:
        np.testing.assert_array_equal(grey[i], ale[i], err_msg=f"observation at raw frame {i}")
    # the two poolings really differ (so choosing the backend's one matters)
    assert any(not np.array_equal(grey[i], sb3[i]) for i in wanted)
    with pytest.raises(ValueError, match="pool"):
        list(replay_observations(iter(frames), pool="max"))
