"""Known answers for the perturbation scores: SARFA's formula by hand, and a policy on which the all-logit
Greydanus score and the action-specific score must disagree."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from saliency_helpers import FakeAtari
from stable_baselines3 import PPO
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from rl_saliency.saliency.methods import policy_outputs
from rl_saliency.saliency.perturbation import Perturbation, action_score, greydanus_score, sarfa_score

REGION_A = (slice(8, 20), slice(8, 20))  # moves every logit by the same amount
REGION_B = (slice(62, 74), slice(62, 74))  # moves only action 0's logit


def sarfa_by_hand(p: list[float], q: list[float], a: int) -> float:
    """Puri et al.'s saliency from probabilities before (p) and after (q) the perturbation, written out."""
    d_p = max(0.0, p[a] - q[a])
    rest_p = [x for i, x in enumerate(p) if i != a]
    rest_q = [x for i, x in enumerate(q) if i != a]
    rest_p = [x / sum(rest_p) for x in rest_p]
    rest_q = [x / sum(rest_q) for x in rest_q]
    kl = sum(qi * math.log(qi / pi) for qi, pi in zip(rest_q, rest_p, strict=True))
    k = 1.0 / (1.0 + kl)
    return 0.0 if d_p == 0 else 2 * k * d_p / (k + d_p)


def logits_of(p: list[float]) -> torch.Tensor:
    return torch.log(torch.tensor([p], dtype=torch.float64))


# ------------------------------------------------------------------------------------------------ SARFA
def test_sarfa_hand_computed_case():
    """P = (0.7, 0.2, 0.1) -> P' = (0.5, 0.3, 0.2), action 0. dP = 0.2; the other actions renormalised go from
    (2/3, 1/3) to (0.6, 0.4): KL = 0.6 ln(0.6 / (2/3)) + 0.4 ln(0.4 / (1/3)) = 0.6 ln 0.9 + 0.4 ln 1.2
    = -0.0632163 + 0.0729286 = 0.0097123; K = 1 / 1.0097123 = 0.9903811; saliency = 2 K dP / (K + dP)
    = 0.3961524 / 1.1903811 = 0.3327946."""
    kl = 0.6 * math.log(0.9) + 0.4 * math.log(1.2)
    assert kl == pytest.approx(0.0097123, abs=1e-7)
    value = sarfa_score(logits_of([0.7, 0.2, 0.1]), logits_of([0.5, 0.3, 0.2]), torch.tensor([0]))
    assert float(value) == pytest.approx(0.3327946, abs=1e-7)
    assert float(value) == pytest.approx(sarfa_by_hand([0.7, 0.2, 0.1], [0.5, 0.3, 0.2], 0), rel=1e-12)


@pytest.mark.parametrize("p, q, a, expected", [
    ([0.7, 0.2, 0.1], [0.8, 0.1, 0.1], 0, 0.0),  # the action gains probability: dP <= 0 counts as 0
    ([0.6, 0.3, 0.1], [0.6, 0.1, 0.3], 0, 0.0),  # only the other actions reshuffle: not specific, 0
    ([0.6, 0.3, 0.1], [0.2, 0.6, 0.2], 0, 2 * 0.4 / 1.4),  # others keep their ratio: KL 0, K 1 -> 2 dP / (1 + dP)
    ([0.1, 0.5, 0.25, 0.15], [0.05, 0.2, 0.4, 0.35], 1, None),  # a 4-action case against the written-out form
])
def test_sarfa_cases(p, q, a, expected):
    value = float(sarfa_score(logits_of(p), logits_of(q), torch.tensor([a])))
    assert value == pytest.approx(sarfa_by_hand(p, q, a), abs=1e-12)
    if expected is not None:
        assert value == pytest.approx(expected, abs=1e-12)


def test_action_and_greydanus_scores_by_hand():
    clean, perturbed = logits_of([0.7, 0.2, 0.1]), logits_of([0.5, 0.3, 0.2])
    assert float(action_score(clean, perturbed, torch.tensor([0]))) == pytest.approx(math.log(0.7 / 0.5))
    q_clean, q_pert = torch.tensor([[3.0, 1.0]]), torch.tensor([[2.5, 4.0]])
    assert float(action_score(q_clean, q_pert, torch.tensor([0]), q_values=True)) == pytest.approx(0.5)
    assert float(greydanus_score(q_clean, q_pert)) == pytest.approx(0.5 * (0.25 + 9.0))


# ------------------------------------------------------------------------------------------------ a policy
class TwoRegions(BaseFeaturesExtractor):
    """Two features: the mean brightness of region A and of region B (0..1)."""

    def __init__(self, observation_space, features_dim: int = 2):
        super().__init__(observation_space, features_dim)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        a = observations[:, :, REGION_A[0], REGION_A[1]].mean(dim=(1, 2, 3))
        b = observations[:, :, REGION_B[0], REGION_B[1]].mean(dim=(1, 2, 3))
        return torch.stack([a, b], dim=1)


def two_region_policy():
    """Logits = (4 a + 4 b + 1, 4 a, 4 a, 4 a): region A adds the same amount to every logit, which a softmax
    ignores, so A cannot change what the policy does; region B raises only the chosen action 0."""
    policy = PPO("CnnPolicy", FakeAtari(), n_steps=8, batch_size=8, device="cpu", seed=0,
                 policy_kwargs=dict(features_extractor_class=TwoRegions, net_arch=[])).policy
    with torch.no_grad():
        policy.action_net.weight.copy_(torch.tensor([[4.0, 4.0], [4.0, 0.0], [4.0, 0.0], [4.0, 0.0]]))
        policy.action_net.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    return policy


def two_region_frames() -> np.ndarray:
    obs = np.zeros((1, 4, 84, 84), np.uint8)
    obs[:, :, REGION_A[0], REGION_A[1]] = 255
    obs[:, :, REGION_B[0], REGION_B[1]] = 255
    return obs


def test_all_logit_and_action_specific_scores_differ_where_they_must():
    """Blurring region A lowers all four logits by the same amount: the squared change of all logits (Greydanus)
    is large there, but the policy (a softmax) does not change at all, so the chosen action's log-probability and
    SARFA give 0. Region B moves only the chosen action's logit: every score marks it, the action-specific ones
    as their peak."""
    policy, obs = two_region_policy(), two_region_frames()
    with torch.no_grad():
        assert (policy_outputs(policy, torch.as_tensor(obs).float())[0].argmax(1) == 0).all()
    centre_a, centre_b = (14, 14), (68, 68)
    options = dict(stride=6, fill="mean")  # the mean fill darkens a whole bright block, not only its edges
    greydanus = Perturbation(**options).attribute(policy, obs)
    action = Perturbation(score="action", **options).attribute(policy, obs)
    sarfa = Perturbation(score="sarfa", **options).attribute(policy, obs)
    for maps in (action, sarfa):  # B is what the decision rests on
        assert (maps[:, centre_b[0], centre_b[1]] > 0.5 * maps.max(axis=(1, 2))).all()
    # all logits: A counts more than B (four logits move by the same amount there, one at B)
    assert (greydanus[:, centre_a[0], centre_a[1]] > greydanus[:, centre_b[0], centre_b[1]]).all()
    assert (greydanus[:, centre_b[0], centre_b[1]] > 0.05 * greydanus.max(axis=(1, 2))).all()
    # the action: A does not matter at all (float rounding only)
    assert (action[:, centre_a[0], centre_a[1]] < 1e-5 * action[:, centre_b[0], centre_b[1]]).all()
    assert (sarfa[:, centre_a[0], centre_a[1]] < 1e-5 * sarfa[:, centre_b[0], centre_b[1]]).all()


def test_signed_action_score_says_which_way():
    """Blurring region B takes support away from action 0: the signed action map is positive there."""
    policy, obs = two_region_policy(), two_region_frames()
    signed = Perturbation(stride=6, score="action").signed_attribute(policy, obs)
    assert (signed[:, 68, 68] > 0).all()
    # scored on another action (1), removing B helps it: negative
    other = Perturbation(stride=6, score="action", target=1).signed_attribute(policy, obs)
    assert (other[:, 68, 68] < 0).all()


def test_sarfa_map_follows_the_formula_on_the_policy_outputs():
    """Each grid score equals the formula applied to the policy's outputs on that perturbed frame, built here."""
    policy, obs = two_region_policy(), two_region_frames()[:1]
    method = Perturbation(stride=12, score="sarfa", fill="mean")
    rows, cols, grid = method.score_grid(policy, obs)
    x = torch.as_tensor(obs).double()
    fill = x.mean(dim=(2, 3), keepdim=True)
    yy, xx = torch.meshgrid(torch.arange(84.0), torch.arange(84.0), indexing="ij")
    for r, c in ((5, 5), (1, 1), (3, 6)):
        mask = torch.exp(-((yy - rows[r]) ** 2 + (xx - cols[c]) ** 2) / (2 * 5.0**2)).double()
        with torch.no_grad():
            clean = policy_outputs(policy, x.float())[0].double()
            perturbed = policy_outputs(policy, (x * (1 - mask) + fill * mask).float())[0].double()
        p = torch.softmax(clean, 1)[0].tolist()
        q = torch.softmax(perturbed, 1)[0].tolist()
        assert grid[0, r, c] == pytest.approx(sarfa_by_hand(p, q, 0), rel=1e-4, abs=1e-7)
