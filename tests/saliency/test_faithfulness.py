"""Deletion/insertion curves and robustness, with known answers on a policy that looks only at a known region."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from saliency_helpers import FakeAtari, make_policy
from stable_baselines3 import PPO
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from rl_saliency.errors import DataError, OptionError
from rl_saliency.saliency.faithfulness import (
    Curves,
    action_probability,
    curves,
    deletion_insertion,
    greedy_actions,
    random_order,
    robustness,
    salience_order,
)
from rl_saliency.saliency.methods import policy_outputs

REGION = (slice(30, 42), slice(50, 62))  # 144 of 7056 pixels: 2 %


class RegionExtractor(BaseFeaturesExtractor):
    """One feature: the mean brightness (0..1) of REGION over the stacked frames. Nothing else is seen."""

    def __init__(self, observation_space, features_dim: int = 1):
        super().__init__(observation_space, features_dim)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return observations[:, :, REGION[0], REGION[1]].mean(dim=(1, 2, 3))[:, None]


def region_policy(threshold: float = 0.75):
    """Logits (20 (f - threshold), 1, 1, 1): the bright region (f = 1) makes action 0 near certain (p = 0.95);
    filled with the frame's mean or blurred (f < 0.6), it becomes unlikely."""
    policy = PPO("CnnPolicy", FakeAtari(), n_steps=8, batch_size=8, device="cpu", seed=0,
                 policy_kwargs=dict(features_extractor_class=RegionExtractor, net_arch=[])).policy
    with torch.no_grad():
        policy.action_net.weight.copy_(torch.tensor([[20.0], [0.0], [0.0], [0.0]]))
        policy.action_net.bias.copy_(torch.tensor([-20.0 * threshold, 1.0, 1.0, 1.0]))
    return policy


def region_frames(n: int = 4) -> np.ndarray:
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 40, size=(n, 4, 84, 84), dtype=np.uint8)
    obs[:, :, REGION[0], REGION[1]] = 255
    return obs


def region_map(n: int) -> np.ndarray:
    maps = np.zeros((n, 84, 84), np.float32)
    maps[:, REGION[0], REGION[1]] = 1.0
    return maps


# ------------------------------------------------------------------------------------------------ known answers
@pytest.mark.parametrize("fill", ["mean", "blur"])
def test_map_of_the_known_region_deletes_fast_and_its_reverse_does_not(fill):
    """The policy looks only at REGION. A map marking it removes what the decision rests on in the first step:
    deletion AUC far below random. The reversed map removes the region last: AUC above random. Insertion is the
    mirror image."""
    policy, obs = region_policy(), region_frames()
    maps = region_map(len(obs))
    marked = deletion_insertion(policy, obs, maps, steps=20, fill=fill)
    reverse = deletion_insertion(policy, obs, -maps, steps=20, fill=fill)
    random = deletion_insertion(policy, obs, None, steps=20, fill=fill, seed=1)
    d_marked, d_reverse, d_random = (c["deletion"].auc.mean() for c in (marked, reverse, random))
    i_marked, i_reverse, i_random = (c["insertion"].auc.mean() for c in (marked, reverse, random))
    assert d_marked < 0.5 * d_random and d_marked < 0.35
    assert d_reverse > d_random and d_reverse > 0.85
    assert i_marked > i_random and i_marked > 0.85
    assert i_reverse < 0.5 * i_random


def test_curve_ends_are_the_clean_and_the_filled_frames():
    policy, obs = make_policy("ppo"), region_frames(3)
    orders = random_order(3, 84 * 84, seed=0)
    actions = greedy_actions(policy, obs)
    deletion = curves(policy, obs, orders, "deletion", steps=5, fill="mean")
    insertion = curves(policy, obs, orders, "insertion", steps=5, fill="mean")
    x = torch.as_tensor(obs).float()
    filled = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    a = torch.as_tensor(actions)
    clean_p, filled_p = action_probability(policy, x, a).numpy(), action_probability(policy, filled, a).numpy()
    np.testing.assert_allclose(deletion.probabilities[:, 0], clean_p, rtol=1e-6)
    np.testing.assert_allclose(deletion.probabilities[:, -1], filled_p, rtol=1e-6)
    np.testing.assert_allclose(insertion.probabilities[:, 0], filled_p, rtol=1e-6)
    np.testing.assert_allclose(insertion.probabilities[:, -1], clean_p, rtol=1e-6)
    np.testing.assert_allclose(deletion.fractions, np.linspace(0, 1, 6))


def test_auc_is_the_mean_probability_along_the_curve():
    c = Curves("deletion", np.array([0.0, 0.25, 0.5]), np.array([[1.0, 0.5, 0.0], [0.2, 0.2, 0.2]]))
    np.testing.assert_allclose(c.auc, [0.5, 0.2])  # trapezoids (0.75 + 0.25) * 0.25 / 2 / 0.5 = 0.5


def test_max_fraction_stops_early():
    policy, obs = region_policy(), region_frames(2)
    c = curves(policy, obs, salience_order(-region_map(2)), "deletion", steps=4, fill="mean", max_fraction=0.5)
    assert c.fractions[-1] == 0.5
    assert (c.probabilities > 0.9).all()  # the region (last in this order) is never reached
    assert c.probabilities.min() == pytest.approx(c.probabilities.max(), rel=1e-6)


def test_ties_are_broken_at_random():
    """A constant map gives a random order (not raster order, which would delete the top rows first)."""
    order = salience_order(np.zeros((2, 84, 84)), seed=0)
    assert sorted(order[0]) == list(range(84 * 84))
    assert not np.array_equal(order[0], np.arange(84 * 84)) and not np.array_equal(order[0], order[1])
    ranked = salience_order(np.arange(84 * 84, dtype=float).reshape(1, 84, 84))
    assert ranked[0, 0] == 84 * 84 - 1 and ranked[0, -1] == 0


def test_dqn_probabilities_are_the_softmax_of_q_values():
    policy, obs = make_policy("dqn"), region_frames(2)
    x = torch.as_tensor(obs).float()
    with torch.no_grad():
        q = policy_outputs(policy, x)[0]
    expected = torch.softmax(q.double(), 1)[:, 0]
    np.testing.assert_allclose(action_probability(policy, x, torch.zeros(2)).numpy(), expected.numpy(), rtol=1e-6)


# ------------------------------------------------------------------------------------------------ robustness
def test_robustness_of_a_stable_and_of_an_unstable_map():
    """A map that follows the (slightly noisy) frame correlates ~1 with the clean one; a map drawn at random
    each call correlates ~0."""
    policy, obs = region_policy(), region_frames(3)
    rng = np.random.default_rng(0)

    def intensity(_policy, x):
        return np.asarray(x, np.float32).max(axis=1)

    def noise(_policy, x):
        return rng.random((len(x), 84, 84)).astype(np.float32)

    stable = robustness(intensity, policy, obs, noise=0.01, n_samples=2)
    unstable = robustness(noise, policy, obs, noise=0.01)
    assert stable.used == 3 and stable.skipped == 0 and len(stable.correlations) == 6
    assert stable.mean > 0.9
    assert abs(unstable.mean) < 0.1


def test_robustness_keeps_only_noise_that_leaves_the_action():
    """With the region exactly at the decision threshold, noise flips the action about half the time: those
    copies are redrawn, and with a single try some observations are skipped."""
    policy = region_policy(threshold=200 / 255)
    with torch.no_grad():  # logits (20 (f - 200 / 255) + 1, 1, 0, 0): a region of 200 makes actions 0 and 1 tie
        policy.action_net.bias.copy_(torch.tensor([-20.0 * 200 / 255 + 1.0, 1.0, 0.0, 0.0]))
    obs = region_frames(12)
    obs[:, :, REGION[0], REGION[1]] = 200
    seen: list[np.ndarray] = []

    def record(_policy, x):
        seen.append(np.asarray(x))
        return np.asarray(x, np.float32).max(axis=1)

    result = robustness(record, policy, obs, noise=0.01, max_tries=1)
    assert 0 < result.skipped < 12 and result.used == 12 - result.skipped
    clean_actions = greedy_actions(policy, obs)
    noisy = seen[-1]
    assert len(noisy) == result.used
    assert set(greedy_actions(policy, noisy)) <= set(clean_actions)


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("call, error, message", [
    (lambda p, o, m: deletion_insertion(p, o[:, :2], m), DataError, r"shape \(N, 4, 84, 84\)"),
    (lambda p, o, m: deletion_insertion(p, o, m[:1]), DataError, r"maps must have shape \(2, 84, 84\)"),
    (lambda p, o, m: deletion_insertion(p, o, m, steps=1), OptionError, "steps must be an integer >= 2"),
    (lambda p, o, m: deletion_insertion(p, o, m, steps=10_000), OptionError, "steps must be at most 7056"),
    (lambda p, o, m: deletion_insertion(p, o, m, max_fraction=0), OptionError, r"max_fraction must be a fraction"),
    (lambda p, o, m: deletion_insertion(p, o, m, max_fraction=1.5), OptionError, r"max_fraction must be a fraction"),
    (lambda p, o, m: deletion_insertion(p, o, m, fill="noise"), OptionError, "fill must be one of"),
    (lambda p, o, m: robustness(lambda *_: m, p, o, maps=m, noise=0.0), OptionError, "noise must be a fraction"),
    (lambda p, o, m: robustness(lambda *_: m, p, o, maps=m, noise=0.9), OptionError, "noise must be a fraction"),
])
def test_bad_input_is_one_clear_error(call, error, message):
    policy, obs = region_policy(), region_frames(2)
    with pytest.raises(error, match=message):
        call(policy, obs, region_map(2))
