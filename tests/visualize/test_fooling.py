"""Fooling frames on a constructed policy whose smallest fooling change is known from its weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import PATCH_A, PATCH_B, FakeAtari, patch_mask, patch_policy
from stable_baselines3 import PPO

from rl_saliency.errors import OptionError
from rl_saliency.visualize import get_visualizer
from rl_saliency.visualize.fooling import signed_gradient_attack


@pytest.fixture(scope="module")
def policy():
    return patch_policy("ppo")


def relu_threshold(policy) -> float:
    """The patch brightness (grey levels) below which a feature is off: -bias * 255 (76.5 here)."""
    return -float(policy.features_extractor.linear.bias[0].detach()) * 255.0


def frames(a_levels: list[int], b_level: int = 60) -> np.ndarray:
    """Noise frames with patch A at each given grey level and patch B at ``b_level``."""
    obs = np.random.default_rng(0).integers(0, 256, (len(a_levels), 4, 84, 84)).astype(np.uint8)
    for i, level in enumerate(a_levels):
        obs[i][:, PATCH_A[0], PATCH_A[1]] = level
        obs[i][:, PATCH_B[0], PATCH_B[1]] = b_level
    return obs


def test_untargeted_bound_is_the_one_the_network_implies(policy) -> None:
    """Action 2's logit is 10 ReLU(mean(A)/255 - 0.3), the others 0 (ties go to action 0): the decision changes
    exactly when patch A drops to the threshold, so the smallest integer L-inf bound is ceil(A - 76.5)."""
    levels = [77, 78, 80, 84, 100]
    obs = frames(levels)
    vis = get_visualizer("fooling", max_bound=64).visualize(policy, observations=obs)
    derived = [math.ceil(level - relu_threshold(policy)) for level in levels]
    assert derived == [1, 2, 4, 8, 24]
    table = vis.table
    assert list(table["bound"]) == derived and table["flipped"].all()
    assert (table["action_before"] == 2).all() and (table["action_after"] != 2).all()
    assert (table["linf"] <= table["bound"]).all()
    summary = vis.extra["summary"]
    assert [summary[f"flipped_at_{b}"] for b in (1, 2, 4, 8)] == [0.2, 0.4, 0.6, 0.8]
    # the policy ignores every pixel outside patch A (for action 2's margin): those never change
    outside = ~patch_mask(PATCH_A).bool().numpy()
    assert (vis.frames[:, outside] == obs[:, outside]).all()
    assert (vis.frames == np.rint(vis.frames)).all()  # integer grey levels, as an emulator would show
    # one grey level less does not flip (the line search found the smallest bound)
    x0 = torch.as_tensor(obs, dtype=torch.float32)
    _, ok = signed_gradient_attack(policy, x0, torch.full((5,), 2), torch.full((5,), -1),
                                   torch.as_tensor(derived, dtype=torch.float32) - 1, steps=20)
    assert not ok.any()


def test_targeted_change_moves_both_patches_and_nothing_else(policy) -> None:
    """Towards action 1 (patch B's): B up and A down by eps each; B + eps > A - eps needs eps > (101 - 80) / 2."""
    obs = frames([101], b_level=80)
    vis = get_visualizer("fooling", target=1, max_bound=32).visualize(policy, observations=obs)
    row = vis.rows[0]
    assert row["flipped"] and row["action_after"] == 1 and row["bound"] == 11
    read = (patch_mask(PATCH_A) + patch_mask(PATCH_B)).bool().numpy()
    assert (vis.frames[0][~read] == obs[0][~read]).all()
    change = vis.frames[0].astype(np.float32) - obs[0]
    assert (change[:, PATCH_A[0], PATCH_A[1]] < 0).all() and (change[:, PATCH_B[0], PATCH_B[1]] > 0).all()


def test_already_the_target_and_out_of_reach(policy) -> None:
    obs = frames([100, 100])
    vis = get_visualizer("fooling", max_bound=8).visualize(policy, [2, "any"], obs)
    first, second = vis.rows
    assert first["already_target"] and first["bound"] == 0 and not first["flipped"]
    assert not second["flipped"] and np.isnan(second["bound"]) and second["linf"] == 0  # needs 24 > 8
    assert (vis.frames[1] == obs[1]).all()
    assert vis.extra["summary"]["searched"] == 1 and vis.extra["summary"]["flipped_at_8"] == 0.0
    assert "unchanged within 8" in vis.labels[1]


def test_dqn_and_a_random_nature_cnn_are_fooled_within_a_finite_bound() -> None:
    dqn = patch_policy("dqn")
    vis = get_visualizer("fooling").visualize(dqn, observations=frames([84]))
    assert vis.rows[0]["bound"] == 8
    nature = PPO("CnnPolicy", FakeAtari(4), n_steps=8, batch_size=8, seed=0, device="cpu").policy
    obs = np.random.default_rng(1).integers(0, 256, (3, 4, 84, 84)).astype(np.uint8)
    vis = get_visualizer("fooling", max_bound=255, steps=10).visualize(nature, observations=obs)
    bounds = vis.table["bound"]
    assert vis.table["flipped"].all() and (bounds >= 1).all() and (bounds <= 255).all()
    assert (vis.table["linf"] <= bounds).all()


def test_bad_input(policy) -> None:
    with pytest.raises(OptionError, match="out of range: the policy has 4 actions"):
        get_visualizer("fooling", target=7).visualize(policy, observations=frames([100]))
    with pytest.raises(OptionError, match="need real observations"):
        get_visualizer("fooling").visualize(policy)
    with pytest.raises(OptionError, match="one fooling target per observation"):
        get_visualizer("fooling").visualize(policy, [1, 2], frames([100]))
    with pytest.raises(OptionError, match=r"shape \(N, 4, 84, 84\)"):
        get_visualizer("fooling").visualize(policy, observations=np.zeros((2, 84, 84), np.uint8))
    with pytest.raises(OptionError, match="max_bound must be at most 255"):
        get_visualizer("fooling", max_bound=300)
