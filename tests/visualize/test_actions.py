"""Action and unit visualisation in pixel space, on constructed policies with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import PATCH_A, PATCH_B, FakeAtari, patch_policy
from stable_baselines3 import PPO

from rl_saliency.errors import OptionError
from rl_saliency.visualize import get_visualizer
from rl_saliency.visualize.actions import gaussian_blur
from rl_saliency.visualize.targets import unit_layers


def brightest_window(image: np.ndarray, size: int = 12) -> tuple[int, int]:
    """Top-left corner of the ``size`` x ``size`` window with the largest mean (of a (4, 84, 84) stack)."""
    mean = image.mean(axis=0)
    sums = np.lib.stride_tricks.sliding_window_view(mean, (size, size)).sum(axis=(2, 3))
    return tuple(int(v) for v in np.unravel_index(sums.argmax(), sums.shape))


def patch_mean(frames: np.ndarray, patch: tuple[slice, slice]) -> float:
    return float(frames[:, patch[0], patch[1]].mean())


@pytest.fixture(scope="module")
def ppo_patch():
    return patch_policy("ppo")


def test_action_2_visualisation_is_brightest_on_the_patch_that_fires_it(ppo_patch) -> None:
    vis = get_visualizer("action", steps=80, seed=1).visualize(ppo_patch)
    assert vis.frames.shape == (4, 4, 84, 84) and vis.frames.dtype == np.float32
    assert vis.frames.min() >= 0 and vis.frames.max() <= 255
    two, one = vis.frames[2], vis.frames[1]
    assert brightest_window(two) == (PATCH_A[0].start, PATCH_A[1].start)
    assert brightest_window(one) == (PATCH_B[0].start, PATCH_B[1].start)
    assert patch_mean(two, PATCH_A) > 200 and patch_mean(two, PATCH_B) < 30  # the other action's patch stays dark
    table = vis.table
    assert list(table["target"]) == [0, 1, 2, 3]
    assert table.loc[2, "score_after"] > table.loc[2, "score_before"] and table.loc[2, "greedy_after"] == 2
    # actions whose score ignores the frame only feel the L2 penalty: black
    assert vis.frames[0].mean() < 1 and vis.frames[3].mean() < 1


def test_from_an_observation_and_the_log_prob_objective(ppo_patch) -> None:
    obs = np.full((1, 4, 84, 84), 90, dtype=np.uint8)  # patch A above the ReLU threshold (76.5)
    vis = get_visualizer("action", steps=40, init="observation", objective="log_prob",
                         action_names=["NOOP", "FIRE", "RIGHT", "LEFT"]).visualize(ppo_patch, [2], obs)
    assert (vis.start == 90).all() and vis.labels == ["2 RIGHT"]
    assert patch_mean(vis.frames[0], PATCH_A) > 150
    # log-probability: action 1's patch B (lit at 90 > 76.5) competes, so it darkens
    assert patch_mean(vis.frames[0], PATCH_B) < 85
    # from an observation the L2 term pulls back to the observation, not to black: between the patches only the
    # blur's tails reach (a grey level or so)
    between = np.abs(vis.frames[0][:, 40:54, :] - 90)
    assert between.mean() < 0.5 and between.max() < 3
    row = vis.rows[0]
    assert row["objective"] == "log_prob" and row["score_after"] > row["score_before"]
    assert row["prob_after"] > 0.9 > row["prob_before"]


def test_dqn_q_values() -> None:
    policy = patch_policy("dqn")
    vis = get_visualizer("action", steps=60, objective="q").visualize(policy, [2])
    assert brightest_window(vis.frames[0]) == (PATCH_A[0].start, PATCH_A[1].start)
    with pytest.raises(OptionError, match="'q' needs a DQN policy"):
        get_visualizer("action", objective="q").visualize(patch_policy("ppo"), [2])


def test_features_unit_is_brightest_on_its_patch(ppo_patch) -> None:
    vis = get_visualizer("unit", steps=60).visualize(ppo_patch, ["features:1"])
    assert brightest_window(vis.frames[0]) == (PATCH_B[0].start, PATCH_B[1].start)
    assert vis.rows[0]["score_after"] > vis.rows[0]["score_before"]


def test_conv_unit_changes_only_its_receptive_field() -> None:
    """conv1 channel 3 at position (5, 7): an 8x8 window at stride 4, rows 20..27 and columns 28..35. Without
    jitter and blur, every other pixel only feels the L2 penalty: it only ever darkens, towards black."""
    policy = PPO("CnnPolicy", FakeAtari(4), n_steps=8, batch_size=8, seed=0, device="cpu").policy
    vis = get_visualizer("unit", steps=80, jitter=0, blur_every=0).visualize(policy, ["conv1:3@5,7"])
    frame, start = vis.frames[0], vis.start[0]
    inside = np.zeros((4, 84, 84), dtype=bool)
    inside[:, 20:28, 28:36] = True
    assert (frame[~inside] <= start[~inside] + 1e-3).all() and frame[~inside].mean() < 2
    weights = policy.features_extractor.cnn[0].weight[3].detach().numpy()  # (4, 8, 8)
    window = frame[:, 20:28, 28:36]
    assert (window[weights > 0] > 250).mean() > 0.9 and (window[weights < 0] < 5).mean() > 0.9
    assert vis.rows[0]["score_after"] > vis.rows[0]["score_before"]


def test_attention_cell_of_an_fls_map() -> None:
    """Cell (0, 0) of a Sparse FLS 7x7 map sees rows and columns 0..51 only (trunk 36 px at stride 8, two 3x3 FLS
    convs add two cells); after the ascent it is the map's largest cell."""
    from rl_saliency.agents.extractors import SparseFLS, paper_policy_kwargs

    policy = PPO("CnnPolicy", FakeAtari(4), n_steps=8, batch_size=8, seed=0, device="cpu",
                 policy_kwargs=paper_policy_kwargs(SparseFLS)).policy
    assert "attention" in unit_layers(policy)
    vis = get_visualizer("unit", steps=80, jitter=0, blur_every=0).visualize(policy, ["attention:0,0"])
    frame, start = vis.frames[0], vis.start[0]
    outside = np.ones((4, 84, 84), dtype=bool)
    outside[:, :52, :52] = False
    assert (frame[outside] <= start[outside] + 1e-3).all() and frame[outside].mean() < 2
    assert frame[~outside].mean() > 10 * frame[outside].mean()
    with torch.no_grad():
        policy.extract_features(torch.as_tensor(vis.frames), policy.features_extractor)
    attention = policy.features_extractor.last_attention[0]
    assert attention.argmax() == 0 and vis.rows[0]["score_after"] > vis.rows[0]["score_before"]


def test_blur_keeps_the_mean_and_smooths() -> None:
    x = torch.zeros(1, 4, 84, 84)
    x[0, :, 40, 40] = 255.0
    blurred = gaussian_blur(x, 1.0)
    assert torch.isclose(blurred.sum(), x.sum(), rtol=1e-4) and blurred.max() < 255 / 4


# ------------------------------------------------------------------------------------------------ bad input

def test_action_out_of_range_names_the_valid_ones(ppo_patch) -> None:
    names = ["NOOP", "FIRE", "RIGHT", "LEFT"]
    with pytest.raises(OptionError, match=r"action 4 is out of range: the policy has 4 actions \(0 NOOP, 1 FIRE, "
                                          r"2 RIGHT, 3 LEFT\)"):
        get_visualizer("action", action_names=names).visualize(ppo_patch, [4])
    with pytest.raises(OptionError, match="out of range"):
        get_visualizer("action").visualize(ppo_patch, ["x"])


@pytest.mark.parametrize("unit, message", [
    ("conv9:0", "no layer 'conv9'"), ("conv1:32", "conv1:0-31"), ("features:512", "features:0-511"),
    ("attention:1,1", "no layer 'attention'"), ("pixels:3", "name one as"), ("conv1:3@20,0", "@r,c")])
def test_unit_that_does_not_exist_names_the_valid_ones(unit, message) -> None:
    policy = PPO("CnnPolicy", FakeAtari(4), n_steps=8, batch_size=8, seed=0, device="cpu").policy
    with pytest.raises(OptionError, match="does not exist") as err:
        get_visualizer("unit").visualize(policy, [unit])
    assert message in str(err.value) and "features:0-511" in str(err.value) and "\n" not in str(err.value)


def test_policy_without_image_observations_is_refused() -> None:
    import gymnasium as gym

    policy = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=8, batch_size=8, device="cpu").policy
    for name in ("action", "fooling"):
        with pytest.raises(OptionError, match=r"needs a policy with image observations \(4, 84, 84\)"):
            get_visualizer(name).visualize(policy, None, np.zeros((1, 4), np.float32))


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps must be an integer >= 1"), ({"lr": -1}, "lr must be a number > 0"),
    ({"init": "zeros"}, "init must be one of"), ({"jitter": 50}, "jitter must be at most 20")])
def test_bad_settings_are_named(kwargs, message) -> None:
    with pytest.raises(OptionError, match=message):
        get_visualizer("action", **kwargs)


def test_unknown_technique() -> None:
    with pytest.raises(OptionError, match="available: action, fooling, generator, unit"):
        get_visualizer("deepdream")


def test_saccader_policy() -> None:
    """Hard attention: the game action's logits reach the frame only through the glimpsed cells; actions, units of
    its what/where trunks and fooling all work on the same call."""
    from rl_saliency.agents.saccader import GlimpseActionWrapper, SaccaderPolicy
    from rl_saliency.envs.cue import make_cue_vec_env

    env = GlimpseActionWrapper(make_cue_vec_env(2, seed=0), n_glimpses=6, grid=7)
    policy = PPO(SaccaderPolicy, env, n_steps=8, batch_size=8, seed=0, device="cpu",
                 policy_kwargs=dict(channels=16, hidden_dim=32)).policy
    vis = get_visualizer("action", steps=5).visualize(policy)
    assert vis.frames.shape == (4, 4, 84, 84) and 0 <= vis.frames.min() and vis.frames.max() <= 255
    assert "conv1" in unit_layers(policy) and "attention" not in unit_layers(policy)
    obs = np.random.default_rng(0).integers(0, 256, (2, 4, 84, 84)).astype(np.uint8)
    fooled = get_visualizer("fooling", max_bound=32, steps=5).visualize(policy, observations=obs)
    assert fooled.table["flipped"].all() and (fooled.table["linf"] <= fooled.table["bound"]).all()
