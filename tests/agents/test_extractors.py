"""FLS, DAQN and RS-PPO features extractors: shapes, parameter counts, attention readout, save/load, CLI."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from rl_saliency import cli
from rl_saliency.agents import DAQN, RSPPO, DenseFLS, SparseFLS, SparseFLSPool, load_spec
from rl_saliency.agents.extractors import (
    FLSModule,
    attention_to_frame,
    dense_trunk,
    nature_trunk,
    paper_policy_kwargs,
    receptive_field_projection,
)
from rl_saliency.models import load_model
from rl_saliency.saliency import get_method

OBS_SPACE = gym.spaces.Box(0, 255, (4, 84, 84), dtype=np.uint8)

# (id, class, kwargs, native map side)
EXTRACTORS = [
    ("fls_sparse", SparseFLS, {}, 7),
    ("fls_sparse_pool", SparseFLSPool, {}, 7),
    ("fls_dense", DenseFLS, {}, 84),
    ("daqn", DAQN, {}, 7),
    ("rsppo", RSPPO, {}, 7),
    ("rsppo_nopad", RSPPO, {"pad_input": False}, 7),
]
IDS = [e[0] for e in EXTRACTORS]


class RandomAtari(gym.Env):
    """Breakout's spaces (stacked grey frames, 4 actions) with random frames: builds policies without ALE."""

    observation_space = OBS_SPACE
    action_space = gym.spaces.Discrete(4)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def make_model(cls, kwargs, seed: int = 0) -> PPO:
    return PPO("CnnPolicy", DummyVecEnv([RandomAtari]), policy_kwargs=paper_policy_kwargs(cls, **kwargs), seed=seed,
               device="cpu", n_steps=8, batch_size=8)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


@pytest.fixture(scope="module")
def observations() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(3, 4, 84, 84), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name,cls,kwargs,side", EXTRACTORS, ids=IDS)
def test_shapes_and_readout(name, cls, kwargs, side, observations):
    torch.manual_seed(0)
    extractor = cls(OBS_SPACE, **kwargs)
    assert extractor.features_dim == 512
    with torch.no_grad():
        features = extractor(torch.as_tensor(observations).float() / 255)
    assert features.shape == (3, 512)
    assert extractor.last_attention.shape == (3, side, side)
    assert not extractor.last_attention.requires_grad
    projected = extractor.project_attention()
    assert projected.shape == (3, 84, 84)
    assert torch.isfinite(projected).all() and (projected >= 0).all() and projected.sum() > 0
    frames = extractor.frame_attention()
    assert frames.shape == (3, 210, 160) and frames.dtype == np.float32 and (frames >= 0).all()
    np.testing.assert_allclose(frames, attention_to_frame(projected), rtol=1e-6)


# --------------------------------------------------------------------------------------------- parameter counts
NATURE_TRUNK = conv(4, 32, 8) + conv(32, 64, 4) + conv(64, 64, 3)
DENSE_TRUNK = conv(4, 32, 7) + conv(32, 64, 5) + conv(64, 64, 3)
FLS = conv(64, 256, 3) + conv(256, 1, 3)
HEADS = linear(512, 4) + linear(512, 1)  # actor logits for 4 actions, critic value


@pytest.mark.parametrize("cls,kwargs,expected", [
    (None, {}, 1_686_693),                        # NatureCNN (the paper's table 2)
    (SparseFLS, {}, 1_836_710),                   # Sparse FLS (the paper's table 2)
    (SparseFLS, {}, NATURE_TRUNK + FLS + linear(3136, 512) + HEADS),
    (SparseFLSPool, {}, NATURE_TRUNK + FLS + linear(64, 512) + HEADS),
    (DenseFLS, {}, DENSE_TRUNK + FLS + linear(64, 512) + HEADS),
    (DAQN, {}, NATURE_TRUNK + conv(64, 256, 1) + conv(256, 1, 1) + linear(64, 512) + HEADS),
    (RSPPO, {}, NATURE_TRUNK + conv(64, 512, 1) + conv(512, 2, 1) + linear(3136, 512) + HEADS),
    (RSPPO, {"pad_input": False}, NATURE_TRUNK + conv(64, 512, 1) + conv(512, 2, 1) + linear(3136, 512) + HEADS),
    (SparseFLS, {"kernel_size": 1}, NATURE_TRUNK + conv(64, 256, 1) + conv(256, 1, 1) + linear(3136, 512) + HEADS),
], ids=["nature", "fls_sparse_paper", "fls_sparse", "fls_sparse_pool", "fls_dense", "daqn", "rsppo",
        "rsppo_nopad", "fls_sparse_1x1"])
def test_ppo_parameter_counts(cls, kwargs, expected):
    env = DummyVecEnv([RandomAtari])
    policy_kwargs = {} if cls is None else paper_policy_kwargs(cls, **kwargs)
    model = PPO("CnnPolicy", env, policy_kwargs=policy_kwargs, device="cpu")
    assert n_params(model.policy) == expected


@pytest.mark.parametrize("spec_name,cls", [("fls_sparse", SparseFLS), ("fls_sparse_pool", SparseFLSPool),
                                           ("fls_dense", DenseFLS), ("daqn", DAQN), ("rsppo", RSPPO)])
def test_specs_build_the_paper_models(spec_name, cls):
    spec = load_spec(spec_name)
    nature = load_spec("nature")
    assert spec.hyperparams == nature.hyperparams and spec.n_envs == nature.n_envs  # same PPO recipe
    model = spec.build_model(DummyVecEnv([RandomAtari]), device="cpu", batch_size=128)  # 1 env: 128 per rollout
    assert type(model.policy.features_extractor) is cls
    direct = PPO("CnnPolicy", DummyVecEnv([RandomAtari]), policy_kwargs=paper_policy_kwargs(cls), device="cpu")
    assert n_params(model.policy) == n_params(direct.policy)
    if spec_name == "rsppo":
        assert model.policy.features_extractor.pad_input is True


# ---------------------------------------------------------------------------------------------- attention readout
@pytest.mark.parametrize("name,cls,kwargs,side", EXTRACTORS, ids=IDS)
def test_attention_method_reads_the_same_forward_pass(name, cls, kwargs, side, observations):
    model = make_model(cls, kwargs)
    maps = get_method("attention").attribute(model.policy, observations)
    assert maps.shape == (3, 84, 84) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and (maps >= 0).all() and maps.max() > 0
    # acting stores the map of the very pass that chose the actions; it is the one the method returns
    extractor = model.policy.features_extractor
    extractor.last_attention = None
    model.policy.predict(observations, deterministic=True)
    np.testing.assert_allclose(extractor.project_attention().numpy(), maps, rtol=1e-5, atol=1e-7)
    # different frames give different maps (the map is a function of the input, not a constant)
    assert not np.allclose(maps[0], maps[1])


@pytest.mark.parametrize("name,cls,kwargs,side", EXTRACTORS, ids=IDS)
def test_zero_map_changes_features(name, cls, kwargs, side, observations):
    torch.manual_seed(0)
    extractor = cls(OBS_SPACE, **kwargs)
    x = torch.as_tensor(observations).float() / 255
    with torch.no_grad():
        features = extractor(x)
        handle = extractor.attention.register_forward_hook(lambda module, inputs, output: torch.zeros_like(output))
        try:
            gated = extractor(x)
        finally:
            handle.remove()
    assert not torch.allclose(features, gated)
    # with a zero map nothing of the input reaches the features: they collapse to ReLU(bias)
    bias = torch.relu(extractor.linear[0].bias).expand_as(gated)
    torch.testing.assert_close(gated, bias)


@pytest.mark.parametrize("name,cls,kwargs,side", EXTRACTORS, ids=IDS)
def test_save_load_round_trip(name, cls, kwargs, side, observations, tmp_path):
    model = make_model(cls, kwargs, seed=3)
    path = tmp_path / f"{name}.zip"
    model.save(path)
    loaded = PPO.load(path, device="cpu")
    assert type(loaded.policy.features_extractor) is cls
    actions, _ = model.predict(observations, deterministic=True)
    loaded_actions, _ = loaded.predict(observations, deterministic=True)
    np.testing.assert_array_equal(actions, loaded_actions)
    method = get_method("attention")
    np.testing.assert_array_equal(method.attribute(model.policy, observations),
                                  method.attribute(loaded.policy, observations))


# ------------------------------------------------------------------------------------ receptive-field projection
def _input_support(trunk_out_fn, out_index: tuple[int, int], pad: int = 0) -> np.ndarray:
    """Input pixels (84x84) that can influence one output cell: where its gradient is non-zero."""
    torch.manual_seed(0)
    x = torch.rand(1, 4, 84, 84, requires_grad=True)
    out = trunk_out_fn(torch.nn.functional.pad(x, (pad,) * 4) if pad else x)
    out[0, :, out_index[0], out_index[1]].sum().backward()
    return (x.grad.abs().sum(dim=(0, 1)) > 0).numpy()


@pytest.mark.parametrize("name,cls,kwargs,cell", [
    ("fls_sparse", SparseFLS, {}, (2, 5)),
    ("fls_dense", DenseFLS, {}, (40, 3)),
    ("rsppo", RSPPO, {}, (0, 6)),
    ("rsppo_nopad", RSPPO, {"pad_input": False}, (0, 6)),
])
def test_projection_covers_the_receptive_field(name, cls, kwargs, cell):
    torch.manual_seed(0)
    extractor = cls(OBS_SPACE, **kwargs)
    # a linear stand-in for the trunk (ReLUs can zero gradients), same convolutions
    convs = torch.nn.Sequential(*[m for m in extractor.trunk if isinstance(m, torch.nn.Conv2d)])
    for conv_layer in convs:
        torch.nn.init.constant_(conv_layer.weight, 1.0)
    support = _input_support(convs, cell, pad=1 if kwargs.get("pad_input", cls is RSPPO) else 0)
    with torch.no_grad():
        extractor(torch.zeros(1, 4, 84, 84))
    side = extractor.last_attention.shape[-1]
    one_hot = torch.zeros(1, side, side)
    one_hot[0, cell[0], cell[1]] = 1.0
    projected = extractor.project_attention(one_hot)[0].numpy() > 0
    np.testing.assert_array_equal(projected, support)


def test_sparse_projection_geometry():
    extractor = SparseFLS(OBS_SPACE)
    ones = extractor.project_attention(torch.ones(2, 7, 7))
    assert ones.shape == (2, 84, 84)
    # each input pixel sums the cells whose 36x36 field covers it: 1 at the corners, up to 5x5 inside
    assert ones[0, 0, 0] == 1 and ones[0, 83, 83] == 1 and ones.max() == 25
    # linear in the map, no per-run rescaling
    torch.testing.assert_close(extractor.project_attention(3 * torch.ones(1, 7, 7)), 3 * ones[:1])
    # negative raw values are clamped (the contract is >= 0)
    assert (extractor.project_attention(-torch.ones(1, 7, 7)) == 0).all()
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        extractor.project_attention(torch.ones(1, 1, 7, 7))
    with pytest.raises(RuntimeError, match="forward pass"):
        extractor.project_attention()


@pytest.mark.parametrize("kernel,stride,padding,side", [(13, 1, 6, 84), (36, 8, 0, 7), (8, 4, 0, 20)])
def test_projection_is_the_all_ones_transposed_convolution(kernel, stride, padding, side):
    maps = torch.rand(2, 1, side, side)
    expected = torch.nn.functional.conv_transpose2d(maps, torch.ones(1, 1, kernel, kernel), stride=stride,
                                                    padding=padding)
    torch.testing.assert_close(receptive_field_projection(maps, kernel, stride, padding), expected, rtol=1e-5,
                               atol=1e-4)


def test_scale_by_run_max():
    from rl_saliency.render.video import scale_by_run_max

    maps = np.array([[[0.0, 2.0]], [[4.0, 1.0]]], dtype=np.float32)
    np.testing.assert_allclose(scale_by_run_max(maps), maps / 4)
    np.testing.assert_array_equal(scale_by_run_max(np.zeros((2, 3, 3))), 0)


# --------------------------------------------------------------------------------------------------- ablations
def test_fls_ablations():
    x = torch.rand(2, 64, 7, 7)
    normalised = FLSModule(normalise=True)(x)
    torch.testing.assert_close(normalised.sum(dim=(2, 3)), torch.ones(2, 1))
    plain, sp2 = FLSModule(), FLSModule(softplus2=True)
    for module in (plain, sp2):
        torch.nn.init.zeros_(module.conv2.weight)
        torch.nn.init.zeros_(module.conv2.bias)
    # a zero logit weighs ln 2 under softplus, exactly 1 under SoftPlus2
    torch.testing.assert_close(plain(x), torch.full((2, 1, 7, 7), float(np.log(2))))
    torch.testing.assert_close(sp2(x), torch.ones(2, 1, 7, 7))
    assert FLSModule(kernel_size=1).conv1.kernel_size == (1, 1)
    with pytest.raises(ValueError, match="odd"):
        FLSModule(kernel_size=2)


def test_no_relu_before_fls():
    assert isinstance(nature_trunk(4)[-1], torch.nn.ReLU)
    assert isinstance(nature_trunk(4, relu_last=False)[-1], torch.nn.Conv2d)
    assert isinstance(dense_trunk(4, relu_last=False)[-1], torch.nn.Conv2d)
    torch.manual_seed(0)
    extractor = SparseFLS(OBS_SPACE, relu_before_fls=False)
    features = extractor.trunk(torch.rand(2, 4, 84, 84))
    assert (features < 0).any()  # pre-activation features reach the FLS module and the product
    assert SparseFLSPool(OBS_SPACE, relu_before_fls=False).pool


def test_rsppo_l2_normalisation_has_tensorflows_floor():
    # The reference normalised with tf.nn.l2_normalize: x / sqrt(max(sum x^2, 1e-12)), a floor of 1e-6 on the
    # norm. torch's F.normalize(eps=1e-12) floors the norm at 1e-12 and so blows a nearly dead position (norm
    # 1e-9) up to unit length; with TF's floor it stays at 1e-3.
    extractor = RSPPO(OBS_SPACE)
    seen = {}
    extractor.attention.register_forward_hook(lambda module, args, out: seen.update(x=args[0].detach()))
    trunk_out = torch.zeros(2, 64, 7, 7, dtype=torch.float64)
    trunk_out[0, :, 0, 0] = 1e-9 / 8  # norm 1e-9 over 64 channels
    trunk_out[0, :, 1, 1] = torch.linspace(-3, 5, 64, dtype=torch.float64)  # an ordinary vector
    trunk_out[1, 5, 2, 3] = 4e-7  # norm 4e-7, below the floor
    extractor.trunk = torch.nn.Identity()
    extractor.pad_input = False
    extractor.attention.double()
    extractor.linear.double()
    extractor(trunk_out)
    x = seen["x"]
    expected = trunk_out / trunk_out.pow(2).sum(1, keepdim=True).clamp_min(1e-12).sqrt()  # TF's formula
    torch.testing.assert_close(x, expected, rtol=1e-12, atol=0)
    norms = x.norm(dim=1)
    assert norms[0, 0, 0].item() == pytest.approx(1e-3, rel=1e-9)  # F.normalize(eps=1e-12) gives 1.0
    assert norms[0, 1, 1].item() == pytest.approx(1.0, rel=1e-12)
    assert norms[1, 2, 3].item() == pytest.approx(0.4, rel=1e-9)
    assert norms[1, 0, 0].item() == 0.0  # an all-zero position stays zero, not NaN


def test_channels_last_space_is_rejected():
    with pytest.raises(ValueError, match="VecTransposeImage"):
        SparseFLS(gym.spaces.Box(0, 255, (84, 84, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="image observations"):
        DAQN(gym.spaces.Box(0, 1, (8,), dtype=np.float32))


# ------------------------------------------------------------------------------------------ CLI training runs
CLI_SPECS = [("fls_sparse", SparseFLS), ("fls_sparse_pool", SparseFLSPool),
             pytest.param("fls_dense", DenseFLS, marks=pytest.mark.slow), ("daqn", DAQN), ("rsppo", RSPPO)]


@pytest.mark.parametrize("spec_name,cls", CLI_SPECS)
def test_cli_trains_each_extractor(spec_name, cls, tmp_path):
    out = tmp_path / spec_name
    small = ["--set", "n_steps=16", "--set", "batch_size=32", "--set", "n_epochs=1"]
    code = cli.main(["train", "--agent", spec_name, "--game", "breakout", "--timesteps", "32", "--n-envs", "2",
                     "--seed", "1", "--device", "cpu", "--checkpoint-freq", "1000", "--no-progress", "--out",
                     str(out), *small])
    assert code == 0
    model = load_model(out / "model.zip", device="cpu")
    assert model.num_timesteps == 32
    assert type(model.policy.features_extractor) is cls
    obs = np.random.default_rng(1).integers(0, 256, size=(2, 4, 84, 84), dtype=np.uint8)
    maps = get_method("attention").attribute(model.policy, obs)
    assert maps.shape == (2, 84, 84) and np.isfinite(maps).all() and (maps >= 0).all()
