"""Perturbation family: the fast path gives the reference form's maps, options work, bad options are one-line errors."""

from __future__ import annotations

import contextlib
import copy
import threading

import numpy as np
import pytest
import stable_baselines3.common.policies as sb3_policies
import torch
from saliency_helpers import FakeAtari, make_policy
from stable_baselines3 import PPO
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from rl_saliency.agents.extractors import RSPPO, paper_policy_kwargs
from rl_saliency.errors import OptionError
from rl_saliency.saliency import get_method
from rl_saliency.saliency.perturbation import (
    FirstConvShortcut,
    Perturbation,
    mask_profiles,
    reference_maps,
    reference_score_grid,
    upsample_grids,
)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Atari-like frames: dark noise with bright objects (the blur changes them, so the maps have structure)."""
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 30, size=(2, 4, 84, 84), dtype=np.uint8)
    for i in range(2):
        obs[i, :, 70:74, 20 + 10 * i:36 + 10 * i] = 200
        obs[i, :, 30 + 5 * i:33 + 5 * i, 40:43] = 255
        obs[i, :, 10:20, 60:70] = 120
    return obs


@contextlib.contextmanager
def float64_policy(policy):
    """A float64 copy of ``policy`` whose preprocessing keeps float64 (SB3 casts images to float32)."""
    original = sb3_policies.preprocess_obs
    sb3_policies.preprocess_obs = lambda obs, *args, **kwargs: obs.double() / 255.0
    try:
        yield copy.deepcopy(policy).double()
    finally:
        sb3_policies.preprocess_obs = original


def separate_extractors_policy():
    return PPO("CnnPolicy", FakeAtari(), n_steps=8, batch_size=8, device="cpu", seed=0,
               policy_kwargs=dict(share_features_extractor=False)).policy


class SliceExtractor(BaseFeaturesExtractor):
    """Reads the observation by slicing, without a convolution: the shortcut must not apply."""

    def __init__(self, observation_space, features_dim: int = 8):
        super().__init__(observation_space, features_dim)
        self.linear = nn.Linear(4 * 12 * 12, features_dim)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(observations[:, :, 36:48, 36:48].flatten(1)))


def slice_policy():
    return PPO("CnnPolicy", FakeAtari(), n_steps=8, batch_size=8, device="cpu", seed=0,
               policy_kwargs=dict(features_extractor_class=SliceExtractor, net_arch=[])).policy


POLICIES = {"ppo": lambda: make_policy("ppo"), "fls": lambda: make_policy("fls"), "dqn": lambda: make_policy("dqn"),
            "ppo_separate": separate_extractors_policy}


# ------------------------------------------------------------------------------------ the fast path is exact
@pytest.mark.parametrize("kind", list(POLICIES))
def test_fast_path_equals_the_reference_in_float64(frames, kind):
    """In float64 the shortcut (first conv from separable masks), the direct path and the earlier form agree to
    1e-9: the same computation, only reordered."""
    with float64_policy(POLICIES[kind]()) as policy:
        obs = torch.as_tensor(frames).double()
        fast = Perturbation(stride=12)
        maps = fast.signed_attribute(policy, obs)
        assert fast.used_shortcut
        direct = Perturbation(stride=12, fast=False).signed_attribute(policy, obs)
        oracle = reference_maps(policy, obs, stride=12)
    scale = oracle.max()
    assert scale > 0
    np.testing.assert_allclose(maps, oracle, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(direct, oracle, rtol=0, atol=1e-9 * scale)


@pytest.mark.parametrize("kind", ["ppo", "fls", "dqn"])
def test_float32_maps_within_1e5_of_the_exact_ones(frames, kind):
    """The default float32 maps at stride 5 are within 1e-5 (of the largest value) of the float64 reference, as
    are the earlier float32 implementation's (float32 rounding of logits that differ little: both are that far
    from exact, so they differ from each other by up to the sum)."""
    policy, obs = POLICIES[kind](), frames[1:]
    maps = Perturbation().attribute(policy, obs)
    before = reference_maps(policy, obs)
    with float64_policy(policy) as policy64:
        truth = reference_maps(policy64, torch.as_tensor(obs).double())
    scale = truth.max()
    error, error_before = np.abs(maps - truth).max() / scale, np.abs(before - truth).max() / scale
    assert error < 1e-5 and error_before < 1e-5
    assert np.abs(maps - before).max() / scale < 2e-5


def test_shortcut_only_where_it_holds(frames):
    """A policy that slices its input has no first conv on the observation: the direct path runs, same maps."""
    policy = slice_policy()
    assert FirstConvShortcut.for_policy(policy, torch.zeros(1, 4, 84, 84)) is None
    method = Perturbation(stride=12)
    maps = method.attribute(policy, frames)
    assert method.used_shortcut is False
    np.testing.assert_allclose(maps, reference_maps(policy, frames, stride=12), rtol=1e-4, atol=1e-6 * maps.max())
    assert maps[:, 36:48, 36:48].mean() > 10 * maps[:, :20, :20].mean()
    rsppo = PPO("CnnPolicy", FakeAtari(), n_steps=8, batch_size=8, device="cpu", seed=0,
                policy_kwargs=paper_policy_kwargs(RSPPO)).policy
    assert FirstConvShortcut.for_policy(rsppo, torch.zeros(1, 4, 84, 84)) is None  # pads before its first conv


def test_shortcut_leaves_the_policy_as_it_was(frames):
    policy = make_policy("ppo")
    before = policy.features_extractor.cnn[0](torch.ones(1, 4, 84, 84))
    Perturbation(stride=20).attribute(policy, frames)
    assert "forward" not in vars(policy.features_extractor.cnn[0])
    assert torch.equal(policy.features_extractor.cnn[0](torch.ones(1, 4, 84, 84)), before)


@pytest.mark.parametrize("options", [dict(mask="square", size=9), dict(fill="mean"),
                                     dict(mask="square", size=6, fill="mean", score="action"),
                                     dict(score="sarfa"), dict(score="greydanus", target="value")])
def test_every_option_takes_the_fast_path_with_the_same_result(frames, options):
    with float64_policy(make_policy("ppo")) as policy:
        obs = torch.as_tensor(frames).double()
        fast = Perturbation(stride=12, **options)
        maps = fast.signed_attribute(policy, obs)
        direct = Perturbation(stride=12, fast=False, **options).signed_attribute(policy, obs)
    assert fast.used_shortcut
    assert np.abs(maps).max() > 0
    np.testing.assert_allclose(maps, direct, rtol=0, atol=1e-9 * np.abs(direct).max())


def test_batch_size_does_not_change_the_maps(frames):
    policy = make_policy("ppo")
    small = Perturbation(stride=10, batch_size=1).attribute(policy, frames)  # one grid row per pass
    large = Perturbation(stride=10, batch_size=10_000).attribute(policy, frames)
    np.testing.assert_allclose(small, large, rtol=1e-4, atol=1e-6 * large.max())


@pytest.mark.parametrize("kind", ["ppo", "fls", "slice"])
def test_worker_threads_give_the_same_maps_bit_for_bit(frames, kind):
    """Observations shared out among worker threads (one policy, each thread's own first-conv outputs) give exactly
    the maps of one thread, on the shortcut and on the direct path; torch's thread count is restored."""
    policy = slice_policy() if kind == "slice" else make_policy(kind)
    obs = np.concatenate([frames, frames[::-1, :, ::-1], frames[:, :, :, ::-1]])  # 6 different observations
    one = Perturbation(stride=10, workers=1)
    serial = one.attribute(policy, obs)
    threads = torch.get_num_threads()
    parallel = Perturbation(stride=10, workers=3)
    maps = parallel.attribute(policy, obs)
    assert parallel.used_shortcut == one.used_shortcut == (kind != "slice")
    assert torch.get_num_threads() == threads
    np.testing.assert_array_equal(maps, serial)
    assert not any("forward" in vars(m) for m in policy.modules())


def test_a_worker_error_reaches_the_caller_and_the_policy_is_restored(frames, monkeypatch):
    policy = make_policy("ppo")
    calls = []

    def failing(self, clean, out, target, q_values):
        calls.append(threading.current_thread().name)
        raise RuntimeError("score failed")

    monkeypatch.setattr(Perturbation, "_scores", failing)
    with pytest.raises(RuntimeError, match="score failed"):
        Perturbation(stride=20, workers=2).attribute(policy, frames)
    assert calls and all(name.startswith("perturbation-") for name in calls)
    assert not any("forward" in vars(m) for m in policy.modules())


def test_a_thread_without_precomputed_outputs_gets_the_real_convolution(frames):
    """While the shortcut is installed for one thread's perturbed copies, the policy still works in another."""
    policy = make_policy("ppo")
    shortcut = FirstConvShortcut.for_policy(policy, torch.zeros(1, 4, 84, 84))
    x = torch.as_tensor(frames).float() / 255.0
    conv = shortcut.convs[0]
    expected = conv(x)
    got = []
    with shortcut.patched():
        thread = threading.Thread(target=lambda: got.append(conv(x)))
        thread.start()
        thread.join()
    assert torch.equal(got[0], expected)


# ------------------------------------------------------------------------------------ masks and upsampling
def test_square_and_gaussian_profiles():
    centres, square = mask_profiles(84, 10, "square", 6)
    assert centres[-1] == 83
    assert square[1].sum() == 6 and square[1, 7:13].all()  # centre 10: pixels 7..12
    assert square[-1].sum() == 4 and square[-1, 80:].all()  # centre 83: pixels 80..83, clipped at the edge
    _, gauss = mask_profiles(84, 5, "gaussian", 5.0)
    assert gauss[0, 0] == 1.0 and gauss[0, 5] == pytest.approx(np.exp(-0.5))


def test_vectorised_upsampling_matches_per_map_interp():
    rng = np.random.default_rng(0)
    rows = cols = np.array([0, 5, 10, 40, 83])
    grids = rng.random((3, 5, 5)).astype(np.float32)
    pixels = np.arange(84)
    for grid, up in zip(grids, upsample_grids(grids, rows, cols, 84), strict=True):
        along = np.stack([np.interp(pixels, rows, grid[:, j]) for j in range(5)], axis=1)
        expected = np.stack([np.interp(pixels, cols, along[i]) for i in range(84)])
        np.testing.assert_allclose(up, expected, rtol=1e-6, atol=1e-7)


def test_reference_grid_is_the_greydanus_formula(frames):
    """The oracle itself: a score at one grid point equals 0.5 ||L(I) - L(I')||^2 with I' built by hand."""
    from scipy.ndimage import gaussian_filter

    from rl_saliency.saliency.methods import policy_outputs

    policy = make_policy("ppo")
    rows, cols, grid = reference_score_grid(policy, frames[:1], stride=20)
    obs = torch.as_tensor(frames[:1]).float()
    yy, xx = np.mgrid[0:84, 0:84]
    mask = torch.as_tensor(np.exp(-((yy - rows[2]) ** 2 + (xx - cols[3]) ** 2) / 50.0)).float()
    blurred = torch.as_tensor(gaussian_filter(frames[:1].astype(np.float32), sigma=(0, 0, 3, 3)))
    with torch.no_grad():
        clean, _ = policy_outputs(policy, obs)
        perturbed, _ = policy_outputs(policy, obs * (1 - mask) + blurred * mask)
    assert grid[0, 2, 3] == pytest.approx(0.5 * float((clean - perturbed).pow(2).sum()), rel=1e-3)


# ------------------------------------------------------------------------------------ registry and errors
def test_family_is_registered_on_the_contract(frames):
    policy = make_policy("ppo")
    for name, score in (("perturbation", "greydanus"), ("perturbation_action", "action"), ("sarfa", "sarfa")):
        method = get_method(name, stride=20)
        assert method.score == score and method.name == name
        maps = method.attribute(policy, frames)
        assert maps.shape == (2, 84, 84) and maps.dtype == np.float32 and (maps >= 0).all()


@pytest.mark.parametrize("options, message", [
    (dict(score="gradient"), "score must be one of"), (dict(mask="circle"), "mask must be one of"),
    (dict(fill="noise"), "fill must be one of"), (dict(stride=0), "stride must be"),
    (dict(stride=2.5), "stride must be"), (dict(sigma=-1), "sigma must be a positive"),
    (dict(mask="square", size=0), "size must be a positive"), (dict(batch_size=0), "batch_size must be"),
    (dict(workers=0), "workers must be"), (dict(workers=1.5), "workers must be"),
    (dict(score="sarfa", target="value"), "explains an action"),
])
def test_bad_options_are_option_errors(options, message):
    with pytest.raises(OptionError, match=message):
        Perturbation(**options)


def test_wrong_observation_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(N, 4, 84, 84\)"):
        Perturbation(stride=20).attribute(make_policy("ppo"), np.zeros((2, 84, 84, 4), np.uint8))
