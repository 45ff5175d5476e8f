"""Post-hoc saliency methods on the contract, for stock SB3 CnnPolicies (PPO, A2C, DQN) and Sparse FLS."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from saliency_helpers import make_policy
from stable_baselines3 import PPO
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from rl_saliency.saliency import available_methods, get_method
from rl_saliency.saliency.methods import (
    POST_HOC_METHODS,
    IntegratedGradients,
    last_conv_layer,
    policy_outputs,
)
from rl_saliency.saliency.perturbation import Perturbation, blob_masks, grid_centres, interpolate_grid

# Small settings keep the suite fast on 2 cores; the algorithms are the same as with the defaults.
FAST = {"smoothgrad": {"n_samples": 3}, "integrated_gradients": {"n_steps": 4}, "perturbation": {"stride": 12}}


def fast_method(name: str, **kwargs):
    return get_method(name, **{**FAST.get(name, {}), **kwargs})


def assert_contract(maps: np.ndarray, n: int) -> None:
    assert maps.shape == (n, 84, 84)
    assert maps.dtype == np.float32
    assert np.isfinite(maps).all()
    assert (maps >= 0).all()
    # a real map, not a constant: every observation's map has structure
    assert all(m.max() > m.min() for m in maps)


@pytest.fixture(scope="module", params=["ppo", "dqn", "fls"])
def policy(request):
    return make_policy(request.param)


def test_methods_registered():
    assert set(POST_HOC_METHODS) <= set(available_methods())


@pytest.mark.parametrize("name", POST_HOC_METHODS)
def test_contract_stock_and_fls(policy, observations, name):
    maps = fast_method(name).attribute(policy, observations)
    assert_contract(maps, len(observations))


@pytest.mark.parametrize("name", ["gradient", "gradcam"])
def test_a2c_stock_policy(observations, name):
    assert_contract(fast_method(name).attribute(make_policy("a2c"), observations), len(observations))


def test_uint8_and_float_inputs_agree(observations):
    policy = make_policy("ppo")
    as_uint8 = get_method("gradient").attribute(policy, observations)
    as_float = get_method("gradient").attribute(policy, torch.as_tensor(observations, dtype=torch.float32))
    np.testing.assert_allclose(as_uint8, as_float, rtol=1e-5, atol=1e-12)


def test_default_target_is_the_greedy_action(observations):
    policy = make_policy("ppo")
    with torch.no_grad():
        logits, _ = policy_outputs(policy, torch.as_tensor(observations).float())
    actions = logits.argmax(1).numpy()
    default = get_method("gradient").attribute(policy, observations)
    explicit = get_method("gradient").attribute(policy, observations, target=actions)
    np.testing.assert_array_equal(default, explicit)
    other = get_method("gradient").attribute(policy, observations, target=(actions + 1) % 4)
    assert not np.allclose(default, other)
    value = get_method("gradient", target="value").attribute(policy, observations)
    assert not np.allclose(default, value)


def test_gradient_matches_finite_difference(observations):
    """The gradient w.r.t. the raw 0..255 input (through SB3's /255) equals a central finite difference."""
    policy = make_policy("ppo")
    obs = torch.as_tensor(observations[:1]).float()
    signed = get_method("gradient", target="value")._run(policy, obs, None)
    c, y, x = 3, 72, 30  # a pixel on the bright bar
    eps = 0.5
    up, down = obs.clone(), obs.clone()
    up[0, c, y, x] += eps
    down[0, c, y, x] -= eps
    with torch.no_grad():
        numeric = (policy_outputs(policy, up)[1] - policy_outputs(policy, down)[1]).item() / (2 * eps)
    assert abs(numeric) > 0
    assert signed[0, c, y, x].item() == pytest.approx(numeric, rel=0.02)


def test_integrated_gradients_completeness(observations):
    """Attributions sum to score(input) - score(black frame) (Sundararajan et al.'s completeness axiom)."""
    policy = make_policy("ppo")
    ig = IntegratedGradients(n_steps=64, target="value", batch_size=64)
    obs = torch.as_tensor(observations[:1]).float()
    attributions = ig._run(policy, obs, None)
    with torch.no_grad():
        _, v_in = policy_outputs(policy, obs)
        _, v_black = policy_outputs(policy, torch.zeros_like(obs))
    assert attributions.sum().item() == pytest.approx((v_in - v_black).item(), rel=0.05, abs=1e-4)


def test_bad_targets_raise(observations):
    policy = make_policy("ppo")
    with pytest.raises(ValueError, match="target"):
        get_method("gradient", target="banana").attribute(policy, observations)
    with pytest.raises(ValueError, match="out of range"):
        get_method("gradient").attribute(policy, observations, target=7)
    with pytest.raises(ValueError, match="shape"):
        get_method("gradient").attribute(policy, observations[:, :3])


def test_gradcam_reads_the_last_trunk_activation():
    name, conv, activation = last_conv_layer(make_policy("ppo").features_extractor)
    assert name == "cnn.4" and isinstance(conv, nn.Conv2d) and isinstance(activation, nn.ReLU)
    # FLS: the trunk's conv, not the attention branch's
    name, _, _ = last_conv_layer(make_policy("fls").features_extractor)
    assert name.startswith("trunk.")


# --------------------------------------------------------------------------------------- perturbation grid
@pytest.mark.parametrize("stride", [1, 3, 5, 7, 12, 20, 83, 84])
def test_grid_reaches_last_row_and_column(stride):
    centres = grid_centres(84, stride)
    assert centres[0] == 0 and centres[-1] == 83
    assert np.all(np.diff(centres) <= stride) and np.all(np.diff(centres) > 0)


def test_blob_masks_and_interpolation():
    rows, cols, masks = blob_masks(84, 5, 5.0)
    assert len(masks) == len(rows) * len(cols) == 18 * 18
    assert masks.max() == pytest.approx(1.0)
    last = masks[-1]  # the blob centred on the bottom-right pixel
    assert last[83, 83] == pytest.approx(1.0)
    grid = np.zeros((len(rows), len(cols)), dtype=np.float32)
    grid[-1, -1] = 1.0
    up = interpolate_grid(grid, rows, cols, 84)
    assert up[83, 83] == pytest.approx(1.0) and up[:70, :70].max() == 0.0


class CornerExtractor(BaseFeaturesExtractor):
    """Looks only at the bottom-right 3x3 pixels of every frame."""

    def __init__(self, observation_space, features_dim: int = 8):
        super().__init__(observation_space, features_dim)
        self.linear = nn.Linear(4 * 3 * 3, features_dim)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(observations[:, :, -3:, -3:].flatten(1)))


@pytest.mark.parametrize("stride", [5, 10])
def test_perturbation_sees_the_last_rows_and_columns(stride):
    """A policy that only looks at the bottom-right corner gets its saliency there: the grid covers the edge."""
    from saliency_helpers import FakeAtari

    policy = PPO("CnnPolicy", FakeAtari(), n_steps=8, batch_size=8, device="cpu", seed=0,
                 policy_kwargs=dict(features_extractor_class=CornerExtractor, net_arch=[])).policy
    obs = np.random.default_rng(1).integers(0, 256, size=(2, 4, 84, 84), dtype=np.uint8)
    maps = Perturbation(stride=stride).attribute(policy, obs)
    for m in maps:
        assert m[83, 83] > 0
        peak = np.unravel_index(m.argmax(), m.shape)
        assert peak[0] >= 84 - stride and peak[1] >= 84 - stride
        assert m[:40, :40].max() < 1e-3 * m.max()


def test_perturbation_is_batched_and_matches_one_by_one(observations):
    policy = make_policy("ppo")
    batched = Perturbation(stride=12, batch_size=1000).attribute(policy, observations[:2])
    small = Perturbation(stride=12, batch_size=7).attribute(policy, observations[:2])
    np.testing.assert_allclose(batched, small, rtol=1e-4, atol=1e-10)
