"""CPU speed settings (agents/cpu_speed.py): float32 paths give the same numbers, bf16 stays close and saves plain."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from rl_saliency.agents import DenseFLS, SparseFLS, cpu_speed, paper_policy_kwargs
from rl_saliency.agents.cpu_speed import check_precision, default_precision, speed_up
from rl_saliency.errors import OptionError


class SeededAtari(gym.Env):
    """Breakout's spaces with random frames drawn from the env's own seeded generator (reproducible rollouts)."""

    observation_space = gym.spaces.Box(0, 255, (4, 84, 84), dtype=np.uint8)
    action_space = gym.spaces.Discrete(4)

    def _frame(self):
        return self.np_random.integers(0, 256, (4, 84, 84), dtype=np.uint8)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return self._frame(), {}

    def step(self, action):
        return self._frame(), float(action == 1), bool(self.np_random.random() < 0.05), False, {}


def make_model(extractor: bool = True, seed: int = 0, cls: type = SparseFLS) -> PPO:
    kwargs = paper_policy_kwargs(cls) if extractor else {}
    env = DummyVecEnv([SeededAtari, SeededAtari])
    env.seed(seed)
    return PPO("CnnPolicy", env, policy_kwargs=kwargs, seed=seed, device="cpu", n_steps=16, batch_size=16,
               n_epochs=2)


@pytest.fixture
def native_bf16(monkeypatch):
    """Pretend the CPU computes bf16 natively (where it does not, oneDNN emulates it: slower, the same rounding)."""
    monkeypatch.setattr(cpu_speed, "cpu_has_native_bf16", lambda: True)


def observations(n: int = 6) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(1).integers(0, 256, (n, 4, 84, 84)), dtype=torch.float32)


def test_fp32_channels_last_trunk_same_numbers_forward_and_backward():
    plain, fast = make_model(), make_model()
    assert speed_up(fast, "fp32") == {"precision": "fp32", "trunk_channels_last": True}
    assert fast.policy.features_extractor.trunk[0].weight.is_contiguous(memory_format=torch.channels_last)
    obs, actions = observations(), torch.arange(6) % 4
    results = []
    for model in (plain, fast):
        values, log_prob, entropy = model.policy.evaluate_actions(obs, actions)
        loss = log_prob.sum() + values.sum() + entropy.sum()
        model.policy.zero_grad()
        loss.backward()
        grads = [p.grad.clone() for p in model.policy.parameters()]
        results.append((values, log_prob, model.policy.features_extractor.last_attention, grads))
    for a, b in zip(results[0][:3], results[1][:3], strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    for ga, gb in zip(results[0][3], results[1][3], strict=True):
        assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-6)


def test_fp32_training_update_same_losses():
    """One rollout and one PPO minibatch update with and without the float32 speed settings: the same losses; the
    weights after the Adam step the same except where a gradient is rounding noise (Adam's first step moves
    every weight by about lr * sign(gradient), whatever its size)."""
    plain, fast = make_model(), make_model()
    speed_up(fast, "fp32")
    for model in (plain, fast):
        model.n_epochs, model.batch_size = 1, 32
        torch.manual_seed(1)  # the same sampled actions (the global generator)
        model.learn(32)
    for key in ("train/loss", "train/value_loss", "train/policy_gradient_loss", "train/entropy_loss"):
        assert plain.logger.name_to_value[key] == pytest.approx(fast.logger.name_to_value[key], rel=1e-5, abs=1e-7)
    a = torch.cat([p.flatten() for p in plain.policy.parameters()])
    b = torch.cat([p.flatten() for p in fast.policy.parameters()])
    lr = plain.lr_schedule(1.0)
    assert (a - b).abs().max() <= 2 * lr * 1.01
    assert ((a - b).abs() > 1e-6).float().mean() < 0.01


def test_bf16_close_to_fp32_weights_stay_float32_and_save_plain(native_bf16, tmp_path):
    plain, fast = make_model(), make_model()
    applied = speed_up(fast, "bf16")
    assert applied == {"precision": "bf16", "trunk_channels_last": False}
    assert speed_up(fast, "bf16")["precision"] == "bf16"  # applying twice wraps once
    extractor = fast.policy.features_extractor
    obs = observations() / 255.0  # what the policy feeds its extractor
    with torch.no_grad():
        ref = plain.policy.features_extractor(obs)
        out = extractor(obs)
    assert out.dtype == torch.float32 and extractor.last_attention.dtype == torch.float32
    assert not torch.equal(ref, out)  # bf16 did run: the numbers moved...
    assert torch.allclose(ref, out, rtol=0.05, atol=0.05 * ref.abs().max().item())  # ...by bf16 rounding only
    ref_att = plain.policy.features_extractor.last_attention
    assert torch.allclose(ref_att, extractor.last_attention, rtol=0.05, atol=0.02 * ref_att.max().item())
    assert all(p.dtype == torch.float32 for p in fast.policy.parameters())
    values, log_prob, _ = fast.policy.evaluate_actions(obs, torch.zeros(6, dtype=torch.long))
    assert values.dtype == torch.float32 and log_prob.dtype == torch.float32
    values.sum().backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in fast.policy.parameters())
    # a saved model is a plain float32 SparseFLS model: loading gives the unwrapped forward
    fast.save(tmp_path / "m.zip")
    loaded = PPO.load(tmp_path / "m.zip", device="cpu")
    assert not getattr(loaded.policy.features_extractor, "_bf16_autocast", False)
    with torch.no_grad():
        again = loaded.policy.features_extractor(obs)
    assert torch.allclose(again, ref, atol=1e-6)


def test_bf16_first_update_losses_close_to_fp32(native_bf16):
    """The losses of a first PPO update (computed before its step, on the same rollout) within bf16 rounding."""
    plain, fast = make_model(), make_model()
    speed_up(fast, "bf16")
    for model in (plain, fast):
        model.n_epochs, model.batch_size = 1, 32
        torch.manual_seed(1)
        model.learn(32)
    a, b = plain.logger.name_to_value, fast.logger.name_to_value
    for key in ("train/value_loss", "train/entropy_loss"):
        assert np.isfinite(b[key])
        assert b[key] == pytest.approx(a[key], rel=0.03), key
    assert abs(b["train/policy_gradient_loss"] - a["train/policy_gradient_loss"]) < 0.01


def test_nothing_applied_off_the_cpu_or_without_native_bf16(monkeypatch):
    model = make_model()
    monkeypatch.setattr(cpu_speed, "cpu_has_native_bf16", lambda: False)
    assert speed_up(model, "bf16") == {"precision": "fp32", "trunk_channels_last": True}

    class OnGpu:
        device = torch.device("cuda")
        policy = model.policy

    assert speed_up(OnGpu(), "bf16") == {"precision": "fp32", "trunk_channels_last": False}


def test_which_extractors_get_what(native_bf16):
    """NatureCNN: bf16 (its whole-policy channels-last is train's use_channels_last); dense FLS: bf16 but not the
    channels-last trunk (its stride-1 trunk was not measured)."""
    nature = make_model(extractor=False)
    assert speed_up(nature, "bf16") == {"precision": "bf16", "trunk_channels_last": False}
    assert nature.policy.features_extractor._bf16_autocast
    dense = make_model(cls=DenseFLS)
    assert speed_up(dense, "fp32") == {"precision": "fp32", "trunk_channels_last": False}


def test_torch_threads_beside_the_env_threads(monkeypatch):
    monkeypatch.setattr(cpu_speed.os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    assert cpu_speed.training_threads(8) == 1 and cpu_speed.training_threads(0) == 2
    monkeypatch.setattr(cpu_speed.os, "sched_getaffinity", lambda _pid: set(range(16)), raising=False)
    assert cpu_speed.training_threads(8) == 8
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(3)
        assert speed_up(make_model(), "fp32", env_threads=12)["torch_threads"] == 4
        assert torch.get_num_threads() == 4
        monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice wins
        assert "torch_threads" not in speed_up(make_model(), "fp32", env_threads=12)
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_precision_choice(monkeypatch):
    monkeypatch.setattr(cpu_speed, "cpu_has_native_bf16", lambda: True)
    monkeypatch.delenv(cpu_speed.PRECISION_ENV, raising=False)
    assert default_precision() == "bf16" and check_precision(None) == "bf16"
    assert check_precision("fp32") == "fp32" and check_precision("bf16", "cuda") == "fp32"
    monkeypatch.setenv(cpu_speed.PRECISION_ENV, "fp32")
    assert check_precision(None) == "fp32"
    monkeypatch.setattr(cpu_speed, "cpu_has_native_bf16", lambda: False)
    monkeypatch.delenv(cpu_speed.PRECISION_ENV)
    assert default_precision() == "fp32"
    with pytest.raises(OptionError, match="bf16, fp32"):
        check_precision("fp16")
    with pytest.raises(ValueError):
        speed_up(make_model(), "half")


def test_train_records_precision_and_refuses_a_bad_one(tmp_path, monkeypatch):
    from rl_saliency.train import train

    monkeypatch.setattr(cpu_speed, "cpu_has_native_bf16", lambda: True)
    monkeypatch.delenv(cpu_speed.PRECISION_ENV, raising=False)
    seen = []
    original = cpu_speed.speed_up
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # train leaves the thread count alone when it is set
    monkeypatch.setattr("rl_saliency.train.speed_up", lambda model, precision, **kw: seen.append(
        (original(model, precision, **kw), kw)))
    with pytest.raises(OptionError):
        train("fls_sparse", game="breakout", timesteps=32, out=tmp_path / "bad", n_envs=1, device="cpu",
              precision="fp16", progress=False)
    assert not (tmp_path / "bad" / "config.yaml").exists()
    tiny = dict(n_steps=32, batch_size=32, n_epochs=1)
    run = train("fls_sparse", game="breakout", timesteps=32, out=tmp_path / "run", n_envs=1, device="cpu",
                hyperparams=tiny, progress=False)
    assert yaml.safe_load((run / "config.yaml").read_text())["cpu_precision"] == "bf16"
    run = train("fls_sparse", game="breakout", timesteps=32, out=tmp_path / "run32", n_envs=1, device="cpu",
                hyperparams=tiny, progress=False, precision="fp32")
    assert yaml.safe_load((run / "config.yaml").read_text())["cpu_precision"] == "fp32"
    assert seen == [({"precision": "bf16", "trunk_channels_last": False}, {"env_threads": None}),
                    ({"precision": "fp32", "trunk_channels_last": True}, {"env_threads": None})]
