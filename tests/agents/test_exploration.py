"""The novelty explorer: divergences, ensemble, reward wrapper, callback state, saliency hook, chain."""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.vec_env import DummyVecEnv

from rl_saliency.agents.exploration import (
    GaussianEnsemble,
    NoveltyExplorer,
    check_config,
    jensen_renyi_divergence,
    jensen_shannon_mc,
    make_explorer,
)
from rl_saliency.errors import SpecError

# ---------------------------------------------------------------------------------------------------
# Divergences
# ---------------------------------------------------------------------------------------------------


def _members(k: int = 5, batch: int = 3, d: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(k, batch, d, generator=g, dtype=torch.float64)
    var = torch.rand(k, batch, d, generator=g, dtype=torch.float64) * 0.5 + 0.5
    return mean, var


def test_divergences_are_zero_for_identical_members() -> None:
    mean, var = _members(k=1, d=512)
    mean, var = mean.expand(5, -1, -1), var.expand(5, -1, -1) * 1e-3  # tiny variances, many dimensions
    assert torch.allclose(jensen_renyi_divergence(mean, var), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    # float32: the log-determinants (~ -3500 here) cancel per dimension, leaving rounding noise only
    assert torch.allclose(jensen_renyi_divergence(mean.float(), var.float()), torch.zeros(3), atol=1e-5)
    mean, var = _members(k=1, d=4)
    mc = jensen_shannon_mc(mean.expand(5, -1, -1), var.expand(5, -1, -1), n_samples=64)
    assert torch.allclose(mc, torch.zeros(3, dtype=torch.float64), atol=1e-9)


def test_divergences_are_symmetric_in_the_members() -> None:
    mean, var = _members()
    perm = torch.tensor([3, 0, 4, 2, 1])
    jrd = jensen_renyi_divergence(mean, var)
    assert torch.allclose(jrd, jensen_renyi_divergence(mean[perm], var[perm]), atol=1e-10)
    assert (jrd > 0).all()
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    mc = jensen_shannon_mc(mean, var, n_samples=4000, generator=g1)
    mc_perm = jensen_shannon_mc(mean[perm], var[perm], n_samples=4000, generator=g2)
    assert torch.allclose(mc, mc_perm, atol=0.03)  # same quantity, different samples


def test_closed_form_matches_monte_carlo_where_they_agree() -> None:
    k, d = 5, 3
    var = torch.ones(k, 1, d, dtype=torch.float64)
    direction = torch.randn(k, 1, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # well separated members: both tend to log K
    far = 100.0 * direction
    assert jensen_renyi_divergence(far, var).item() == pytest.approx(math.log(k), abs=1e-6)
    mc_far = jensen_shannon_mc(far, var, n_samples=2000, generator=torch.Generator().manual_seed(0))
    assert mc_far.item() == pytest.approx(math.log(k), abs=0.02)
    # nearly identical members: both are delta^2 / 8 sigma^2 to second order
    near = 0.05 * direction
    jrd, mc = jensen_renyi_divergence(near, var).item(), jensen_shannon_mc(
        near, var, n_samples=200_000, generator=torch.Generator().manual_seed(0)).item()
    assert jrd > 0
    assert mc == pytest.approx(jrd, rel=0.1)


def test_divergence_grows_with_the_separation_of_the_means() -> None:
    direction, var = _members(d=6)
    var = torch.ones_like(var)
    values = [jensen_renyi_divergence(s * direction, var) for s in (0.0, 0.1, 0.5, 1.0, 2.0, 5.0)]
    for lower, higher in zip(values[:-1], values[1:], strict=True):
        assert (higher > lower).all()
    mc = [jensen_shannon_mc(s * direction, var, 3000, torch.Generator().manual_seed(0)) for s in (0.2, 1.0, 5.0)]
    assert (mc[0] < mc[1]).all() and (mc[1] < mc[2]).all()


def _jensen_renyi_direct(mean: np.ndarray, var: np.ndarray) -> float:
    """The joint Jensen-Renyi divergence of K diagonal Gaussians (K, d), evaluated as written, with 60-digit
    arithmetic: H2(mixture) = -log[(1/K^2) sum_ij N(mu_i; mu_j, S_i + S_j)] with each Gaussian density a product
    over the d dimensions, minus mean_i H2(P_i) = 1/2 log|S_i| + d/2 log(4 pi). No folding, no log-sum-exp."""
    import mpmath

    mp = mpmath.mp
    mp.dps = 60
    k, d = mean.shape
    mu = [[mp.mpf(float(x)) for x in row] for row in mean]
    s = [[mp.mpf(float(x)) for x in row] for row in var]
    mixture = mp.mpf(0)
    for i in range(k):
        for j in range(k):
            density = mp.mpf(1)
            for t in range(d):
                v = s[i][t] + s[j][t]
                density *= mp.exp(-(mu[i][t] - mu[j][t]) ** 2 / (2 * v)) / mp.sqrt(2 * mp.pi * v)
            mixture += density
    h_mixture = -mp.log(mixture / k**2)
    h_members = mp.fsum(mp.log(mp.fprod(row)) / 2 for row in s) / k + mp.mpf(d) / 2 * mp.log(4 * mp.pi)
    return float(h_mixture - h_members)


@pytest.mark.parametrize("d,spread,var_low", [
    (3, 1.0, 0.01),      # low dimension, wide variances
    (3, 1e-4, 0.9999),   # nearly identical members: a divergence of ~1e-8 keeps its digits
    (512, 0.04, 0.9),    # 512-d, the explorer's shrunk variances, not saturated (0.33 nats; log 5 = 1.61)
    (512, 0.003, 0.9),   # 512-d, small disagreement (0.02 nats)
    (512, 1.0, 0.9),     # 512-d, members far apart: the densities underflow float64, the value tends to log K
], ids=["d3", "d3-near", "d512", "d512-near", "d512-far"])
def test_joint_divergence_equals_the_formula_evaluated_directly(d, spread, var_low) -> None:
    g = torch.Generator().manual_seed(d)
    k = 5
    mean = spread * torch.randn(k, 1, d, generator=g, dtype=torch.float64)
    var = var_low + (1 - var_low) * torch.rand(k, 1, d, generator=g, dtype=torch.float64)
    got = jensen_renyi_divergence(mean, var)
    assert not jensen_renyi_divergence.__defaults__[0]  # joint unless asked for per-dimension
    expected = _jensen_renyi_direct(mean[:, 0].numpy(), var[:, 0].numpy())
    assert got[0].item() == pytest.approx(expected, rel=1e-9, abs=1e-14)
    # float32 members (what the ensemble gives): computed in float64 inside, so only the output is rounded
    got32 = jensen_renyi_divergence(mean.float(), var.float())
    assert got32.dtype == torch.float32
    expected32 = _jensen_renyi_direct(mean[:, 0].float().double().numpy(), var[:, 0].float().double().numpy())
    assert got32[0].item() == pytest.approx(expected32, rel=1e-6, abs=1e-9)


def test_joint_divergence_is_finite_at_512_dimensions_in_float32() -> None:
    g = torch.Generator().manual_seed(1)
    for scale, var_low in ((1e3, 1e-4), (1e-6, 1.0), (0.0, 0.9)):
        mean = (scale * torch.randn(5, 64, 512, generator=g)).float()
        var = (var_low + (1 - var_low) * torch.rand(5, 64, 512, generator=g)).float()
        value = jensen_renyi_divergence(mean, var)
        assert torch.isfinite(value).all() and value.shape == (64,)
        assert (value <= math.log(5) + 1e-6).all()
    mean.requires_grad_(True)
    jensen_renyi_divergence(mean, var).sum().backward()  # the novelty saliency differentiates it
    assert torch.isfinite(mean.grad).all()


def test_explorer_uses_the_joint_divergence_by_default_at_512_dimensions() -> None:
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    small = {"hidden": 16, "buffer_size": 8}
    explorer = NoveltyExplorer(space, gym.spaces.Discrete(4), small)
    assert explorer.encoder.features_dim == 512 and explorer.per_dimension is False
    assert explorer.var_decay == pytest.approx(0.1 * 64 / 512)  # auto: MAX's shrinkage scaled to 512 dims
    per_dim = NoveltyExplorer(space, gym.spaces.Discrete(4), {**small, "per_dimension": True})
    assert per_dim.per_dimension is True and per_dim.var_decay == 0.1
    assert NoveltyExplorer(space, gym.spaces.Discrete(4), {**small, "var_decay": 0.1}).var_decay == 0.1
    vector = NoveltyExplorer(gym.spaces.Box(0.0, 1.0, (20,), np.float32), gym.spaces.Discrete(2), small)
    assert vector.per_dimension is False and vector.var_decay == 0.1  # 20-d: MAX's own setting
    with pytest.raises(SpecError, match="per_dimension"):
        check_config({"per_dimension": "yes"})
    with pytest.raises(SpecError, match="var_decay"):
        check_config({"var_decay": "some"})


def test_auto_variance_shrinkage_keeps_the_joint_divergence_about_the_means_at_512_dimensions() -> None:
    # Members that differ in confidence (one predicts half the variances of another): with MAX's shrinkage 0.1
    # the order-2 variance term, about d/2 times the spread of the log-variances, swamps 512 dimensions: the
    # divergence is about -1.3 when the members agree and still negative when their means disagree. Scaled
    # by 64 / d it stays near 0 and near the value the means alone give.
    from rl_saliency.agents.exploration import var_decay_for

    g = torch.Generator().manual_seed(0)
    d = 512
    confidence = torch.linspace(0.5, 1.0, 5, dtype=torch.float64)[:, None, None]
    predicted = ((0.01 + 0.99 * torch.rand(5, 4, d, generator=g, dtype=torch.float64)) * confidence).clamp(0.01, 1)
    agree = torch.zeros(5, 4, d, dtype=torch.float64)
    disagree = 0.05 * torch.randn(5, 4, d, generator=g, dtype=torch.float64)
    means_only = jensen_renyi_divergence(disagree, torch.ones_like(predicted))  # equal variances: >= 0

    def shrunk(decay: float) -> torch.Tensor:
        return 1.0 - decay * (1.0 - predicted)  # the explorer's shrinkage towards var_max = 1

    auto = var_decay_for("auto", d, per_dimension=False)
    assert auto == pytest.approx(0.0125)
    assert (jensen_renyi_divergence(agree, shrunk(0.1)) < -1.0).all()
    assert (jensen_renyi_divergence(disagree, shrunk(0.1)) < 0).all()
    assert (jensen_renyi_divergence(agree, shrunk(auto)).abs() < 0.05).all()
    torch.testing.assert_close(jensen_renyi_divergence(disagree, shrunk(auto)), means_only, rtol=0.1, atol=0)
    assert var_decay_for("auto", 20, per_dimension=False) == 0.1 and var_decay_for("auto", d, True) == 0.1
    assert var_decay_for(0.3, d, per_dimension=False) == 0.3


def test_divergence_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="at least 2 members"):
        jensen_renyi_divergence(torch.zeros(1, 2, 3), torch.ones(1, 2, 3))
    with pytest.raises(ValueError, match="one shape"):
        jensen_renyi_divergence(torch.zeros(5, 2, 3), torch.ones(5, 2, 4))


# ---------------------------------------------------------------------------------------------------
# Ensemble and explorer
# ---------------------------------------------------------------------------------------------------


def test_ensemble_variances_stay_in_bounds_and_members_differ() -> None:
    ens = GaussianEnsemble(6, 2, n_models=5, hidden=16, var_min=0.05, var_max=0.5,
                           generator=torch.Generator().manual_seed(0))
    features = torch.randn(7, 6) * 100.0  # extreme inputs push the raw log-variances far out
    mean, var = ens(features, torch.nn.functional.one_hot(torch.randint(0, 2, (7,)), 2).float())
    assert mean.shape == var.shape == (5, 7, 6)
    assert (var >= 0.05 - 1e-6).all() and (var <= 0.5 + 1e-6).all()
    assert not torch.allclose(mean[0], mean[1])  # independent initialisations


def test_bootstrap_weights_differ_per_member() -> None:
    space = gym.spaces.Box(0.0, 1.0, (4,), np.float32)
    for bootstrap, allowed in (("poisson", None), ("bernoulli", {0.0, 1.0})):
        ex = NoveltyExplorer(space, gym.spaces.Discrete(2), {"bootstrap": bootstrap, "buffer_size": 500})
        f = torch.rand(400, 4)
        ex.add(f, np.zeros(400, dtype=np.int64), f)
        w = ex.buffer["weights"][:400]
        assert abs(w.mean() - (1.0 if bootstrap == "poisson" else 0.5)) < 0.1
        assert not np.array_equal(w[:, 0], w[:, 1])
        if allowed:
            assert set(np.unique(w)) <= allowed


def test_ensemble_learns_seen_transitions_and_stays_uncertain_elsewhere() -> None:
    """Train on transitions of states 0-4 of a one-hot 10-state space; states 5-9 stay novel."""
    space = gym.spaces.Box(0.0, 1.0, (10,), np.float32)
    ex = NoveltyExplorer(space, gym.spaces.Discrete(2), {"hidden": 32, "lr": 3e-3, "buffer_size": 2000}, seed=0)
    eye = torch.eye(10)
    states = np.repeat(np.arange(5), 100)
    actions = np.tile([0, 1], 250)
    next_states = np.clip(states + np.where(actions == 1, 1, -1), 0, 9)
    ex.add(eye[states], actions, eye[next_states])
    first = ex.train_ensemble(steps=5)
    last = ex.train_ensemble(steps=300)
    assert last["ensemble_loss"] < first["ensemble_loss"]
    with torch.no_grad():
        seen = ex.utility(eye[:5], np.ones(5, dtype=np.int64))
        unseen = ex.utility(eye[5:], np.ones(5, dtype=np.int64))
    assert seen.max() < unseen.min()


def test_config_errors_name_the_problem() -> None:
    assert check_config(None)["n_models"] == 5
    with pytest.raises(SpecError, match="unknown keys.*n_model"):
        check_config({"n_model": 5})
    with pytest.raises(SpecError, match="bootstrap must be one of"):
        check_config({"bootstrap": "jackknife"})
    with pytest.raises(SpecError, match="n_models must be >= 2"):
        check_config({"n_models": 1})
    with pytest.raises(SpecError, match="image observations"):
        NoveltyExplorer(gym.spaces.Box(0.0, 1.0, (4,)), gym.spaces.Discrete(2), {"features": "random_cnn"})
    with pytest.raises(SpecError, match="Discrete"):
        NoveltyExplorer(gym.spaces.Box(0.0, 1.0, (4,)), gym.spaces.Box(-1.0, 1.0, (2,)))


# ---------------------------------------------------------------------------------------------------
# SB3 glue on a tiny image env
# ---------------------------------------------------------------------------------------------------


class BlobEnv(gym.Env):
    """(4, 84, 84) uint8 frames with a bright square that the action moves; 20-step episodes, reward 1 per step."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.x, self.t = 40, 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros((4, 84, 84), np.uint8)
        obs[:, 30:40, self.x:self.x + 8] = 255
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = 40, 0
        return self._obs(), {}

    def step(self, action):
        self.x = int(np.clip(self.x + 6 * (int(action) - 1), 0, 76))
        self.t += 1
        return self._obs(), 1.0, False, self.t >= 20, {}


def _blob_venv(n: int = 2):
    from stable_baselines3.common.monitor import Monitor

    return DummyVecEnv([lambda: Monitor(BlobEnv()) for _ in range(n)])


def test_wrapper_adds_bonus_and_leaves_episode_info_untouched() -> None:
    venv, callback = make_explorer({"beta": 0.5, "features_dim": 32, "hidden": 32}, _blob_venv(), seed=0)
    venv.reset()
    shaped, bonus_seen, episodes = [], [], []
    for _ in range(25):
        _, rewards, _, infos = venv.step(np.array([2, 0]))
        shaped.append(rewards)
        bonus_seen.append([info["intrinsic_reward"] for info in infos])
        episodes += [info["episode"] for info in infos if "episode" in info]
    assert len(episodes) == 2
    for episode in episodes:  # Monitor's extrinsic score, not the shaped one
        assert episode["r"] == 20.0 and episode["l"] == 20
    shaped, raw = np.concatenate(shaped), np.asarray(bonus_seen).ravel()
    assert (raw >= 0).all() and raw.max() > 0
    assert (shaped >= 1.0).all() and shaped.max() > 1.0  # r = r_ext + beta * normalised bonus
    explorer = venv.explorer
    assert explorer.n_seen == 50  # every transition, terminal ones included
    # the terminal transition stores the terminal frame, not the next episode's first frame
    terminal_idx = 19 * 2  # step 20 of env 0
    reset_features = explorer.features(BlobEnv().reset()[0][None]).numpy()[0]
    assert not np.allclose(explorer.buffer["next_features"][terminal_idx], reset_features)


def _reference_rewards(explorer: NoveltyExplorer, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """The intrinsic rewards of (obs, actions) the long way, in float64: the random CNN's features, each member's
    MLP one at a time, the shrunk variances, then the Jensen-Renyi divergence from its definition,
    H2(mixture) - mean_i H2(P_i) with H2(mixture) = -log[(1/K^2) sum_ij N(mu_i; mu_j, S_i + S_j)] summed pair by
    pair (log-sum-exp), H2(N(mu, S)) = 1/2 log|S| + d/2 log(4 pi); clamped at 0 as the wrapper does."""
    ens, cfg = explorer.ensemble, explorer.config
    encoder = copy.deepcopy(explorer.encoder).double()
    with torch.no_grad():
        features = encoder.net(torch.as_tensor(obs, dtype=torch.float64) / 255.0)
        one_hot = F.one_hot(torch.as_tensor(actions).long(), explorer.action_dims[0]).double()
        x = torch.cat([(features - ens.in_mean.double()) / ens.in_scale.double(), one_hot], dim=1)
        means, variances = [], []
        for k in range(ens.n_models):
            h = x
            for layer, (w, b) in enumerate(zip(ens.weights, ens.biases, strict=True)):
                h = h @ w[k].double() + b[k, 0].double()
                if layer < len(ens.weights) - 1:
                    h = h * torch.sigmoid(h)
            mu, raw = h.chunk(2, dim=-1)
            lo, hi = float(ens.log_var_min), float(ens.log_var_max)
            var = torch.exp(lo + (hi - lo) * torch.sigmoid(raw))
            var_max = float(cfg["var_max"])
            means.append(mu)
            variances.append(var_max - explorer.var_decay * (var_max - var))
    k, d = len(means), means[0].shape[1]
    rewards = []
    for b in range(len(obs)):
        h2_members = sum(0.5 * float(v[b].log().sum()) + d / 2 * math.log(4 * math.pi) for v in variances) / k
        log_densities = []
        for i in range(k):
            for j in range(k):
                s = variances[i][b] + variances[j][b]
                log_densities.append(float(-0.5 * ((means[i][b] - means[j][b]).pow(2) / s
                                                   + torch.log(2 * math.pi * s)).sum()))
        top = max(log_densities)
        h2_mixture = -(top + math.log(sum(math.exp(v - top) for v in log_densities)) - math.log(k * k))
        rewards.append(max(0.0, h2_mixture - h2_members))
    return np.asarray(rewards)


def test_intrinsic_rewards_equal_a_per_member_float64_reference() -> None:
    """The wrapper's rewards (batched members, float32, pairs i < j only, training in a background thread) equal
    the definition computed member by member and pair by pair in float64, to 1e-5, with the Atari explorer's
    settings (random CNN, 512-d, joint divergence, K = 5) and an ensemble trained between steps."""
    venv, _ = make_explorer({"features": "random_cnn"}, _blob_venv(3), seed=0)
    explorer = venv.explorer
    rng = np.random.default_rng(0)
    obs = venv.reset()
    got, expected = [], []
    for step in range(24):
        actions = rng.integers(0, 3, size=3)
        if step % 8 == 0 and step:
            explorer.start_training(steps=10)  # joined by the utility of the step below
        reference = _reference_rewards(explorer, obs, actions) if step % 8 else None
        obs, _, _, infos = venv.step(actions)
        if reference is not None:
            got.append([info["intrinsic_reward"] for info in infos])
            expected.append(reference)
    got, expected = np.asarray(got), np.asarray(expected)
    assert expected.max() > 0.01 and np.ptp(expected) > 0.01  # rewards with some spread, not all 0
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


class _RecordRewards(BaseCallback):
    def __init__(self):
        super().__init__()
        self.rewards: list[float] = []

    def _on_step(self) -> bool:
        self.rewards.extend(info["intrinsic_reward"] for info in self.locals["infos"])
        return True


class _Capture(KVWriter):
    def __init__(self):
        self.rows: list[dict] = []

    def write(self, key_values, key_excluded, step=0):
        self.rows.append(dict(key_values))


def test_training_beside_the_update_changes_nothing() -> None:
    """train_async (the ensemble trains in a thread while PPO updates) gives bit for bit the rewards, ensemble,
    random state, policy and losses of training in place; each round's loss is logged one row later."""
    runs = {}
    for train_async in (False, True):
        config = {"features_dim": 32, "hidden": 32, "train_steps": 6, "train_async": train_async}
        venv, callback = make_explorer(config, _blob_venv(), seed=3)
        model = PPO("CnnPolicy", venv, n_steps=16, batch_size=32, n_epochs=2, seed=0, device="cpu",
                    policy_kwargs={"features_extractor_kwargs": {"features_dim": 32}})
        capture, record = _Capture(), _RecordRewards()
        model.set_logger(Logger(None, [capture]))
        model.learn(160, callback=[callback, record])
        explorer = callback.explorer
        assert explorer._training is None  # joined when learn() ended
        losses = [row["explorer/ensemble_loss"] for row in capture.rows if "explorer/ensemble_loss" in row]
        runs[train_async] = (record.rewards, [p.detach().clone() for p in explorer.ensemble.parameters()],
                             explorer.rng.bit_generator.state, model.policy.state_dict(), losses)
    (r0, p0, s0, pol0, l0), (r1, p1, s1, pol1, l1) = runs[False], runs[True]
    assert len(r0) == 160 and r0 == r1 and max(r0) > 0
    assert all(torch.equal(a, b) for a, b in zip(p0, p1, strict=True))
    assert s0 == s1
    assert all(torch.equal(pol0[key], pol1[key]) for key in pol0)
    assert len(l0) == 5 and l1 == l0[:-1]


def test_a_failed_background_round_raises_in_the_main_thread() -> None:
    space = gym.spaces.Box(0.0, 1.0, (4,), np.float32)
    ex = NoveltyExplorer(space, gym.spaces.Discrete(2), {"hidden": 8}, seed=0)
    ex.add(torch.rand(8, 4), np.zeros(8, dtype=np.int64), torch.rand(8, 4))
    ex.buffer["actions"][:8] = 7  # out of range for the one-hot encoding
    ex.start_training(steps=2)
    with pytest.raises(RuntimeError):
        ex.finish_training()
    assert ex.finish_training() is None  # reported once; the explorer is usable again
    ex.buffer["actions"][:8] = 1
    ex.start_training(steps=2)
    assert set(ex.finish_training()) == {"ensemble_loss", "disagreement"}


def test_callback_trains_logs_and_round_trips_its_state(tmp_path) -> None:
    venv, callback = make_explorer({"features_dim": 32, "hidden": 32, "train_steps": 4}, _blob_venv(), seed=1)
    model = PPO("CnnPolicy", venv, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu",
                policy_kwargs={"features_extractor_kwargs": {"features_dim": 32}})
    dumped: list[dict] = []

    class Capture(KVWriter):
        def write(self, key_values, key_excluded, step=0):
            dumped.append(dict(key_values))

    model.set_logger(Logger(None, [Capture()]))
    model.learn(64, callback=callback)
    logged = dumped[-1]
    for key in ("explorer/intrinsic_mean", "explorer/ensemble_loss", "explorer/disagreement", "explorer/return_std"):
        assert key in logged and np.isfinite(logged[key])
    assert model.policy.explorer is callback.explorer  # saliency hook; not a submodule of the policy
    assert not any(k.startswith("explorer") for k in model.policy.state_dict())

    path = tmp_path / "explorer.pt"
    callback.save_state(path)
    other_venv, other = make_explorer({"features_dim": 32, "hidden": 32, "train_steps": 4}, _blob_venv(), seed=99)
    other.load_state(path)
    a, b = callback.explorer, other.explorer
    for pa, pb in zip(a.ensemble.parameters(), b.ensemble.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert b.n_seen == a.n_seen and b.return_rms.var == a.return_rms.var
    obs = np.stack([BlobEnv().reset()[0]] * 2)
    with torch.no_grad():
        assert torch.allclose(a.utility(a.features(obs), [0, 1]), b.utility(b.features(obs), [0, 1]))
    loaded = NoveltyExplorer.load(path)
    assert loaded.n_seen == a.n_seen
    (tmp_path / "junk.pt").write_text("not a state")
    with pytest.raises(ValueError, match="junk.pt is not a novelty explorer state"):
        other.load_state(tmp_path / "junk.pt")


def test_novelty_saliency_on_the_contract() -> None:
    from rl_saliency.saliency import get_method

    venv, callback = make_explorer({"features_dim": 32, "hidden": 32}, _blob_venv(), seed=0)
    model = PPO("CnnPolicy", venv, n_steps=8, batch_size=16, n_epochs=1, device="cpu",
                policy_kwargs={"features_extractor_kwargs": {"features_dim": 32}})
    obs = np.stack([BlobEnv().reset()[0]] * 3)
    method = get_method("novelty")
    with pytest.raises(ValueError, match="needs a novelty explorer"):
        method.attribute(model.policy, obs)
    maps = method.attribute(model.policy, obs, explorer=callback.explorer)
    assert maps.shape == (3, 84, 84) and maps.dtype == np.float32 and (maps >= 0).all() and maps.max() > 0
    # a random CNN sees all pixels, so gradients are non-zero on the blob as well as elsewhere; the blob
    # sits at rows 30-40 and is in the receptive fields: check the map is not constant
    assert maps.std() > 0
    model.learn(8, callback=callback)  # attaches policy.explorer
    assert method.attribute(model.policy, obs, actions=np.array([0, 1, 2])).shape == (3, 84, 84)


def test_per_dimension_divergence_is_the_mean_of_one_dimensional_ones() -> None:
    mean, var = _members(d=5)
    per_dim = jensen_renyi_divergence(mean, var, per_dimension=True)
    one_d = torch.stack([jensen_renyi_divergence(mean[..., i:i + 1], var[..., i:i + 1]) for i in range(5)], -1)
    assert torch.allclose(per_dim, one_d.mean(-1), atol=1e-10)
    # in many dimensions the joint divergence saturates at log K sooner than the per-dimension mean
    d = 512
    direction = torch.randn(5, 1, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ones = torch.ones(5, 1, d, dtype=torch.float64)
    joint = [jensen_renyi_divergence(s * direction, ones).item() for s in (0.5, 1.0)]
    graded = [jensen_renyi_divergence(s * direction, ones, per_dimension=True).item() for s in (0.5, 1.0)]
    assert joint[0] == pytest.approx(math.log(5), abs=1e-3) and joint[1] == pytest.approx(math.log(5), abs=1e-3)
    assert 0 < graded[0] < graded[1] < math.log(5)
    mc = jensen_shannon_mc(0.1 * direction[..., :8], ones[..., :8], 50_000, torch.Generator().manual_seed(0),
                           per_dimension=True)
    assert mc.item() == pytest.approx(jensen_renyi_divergence(0.1 * direction[..., :8], ones[..., :8],
                                                              per_dimension=True).item(), rel=0.15)


@pytest.mark.slow
def test_on_atari_frames_of_another_game_are_more_novel_than_seen_ones() -> None:
    """Random-CNN features of Breakout frames: after a little online training, the utility of frames the
    ensemble has seen is well below that of Pong frames it never saw (512-d, joint divergence)."""
    from rl_saliency.envs import make_atari_vec_env

    rng = np.random.default_rng(0)
    breakout, callback = make_explorer({"hidden": 64, "train_steps": 20}, make_atari_vec_env("breakout", 2, seed=0),
                                       seed=0)
    explorer = callback.explorer
    assert not explorer.per_dimension and explorer.encoder.features_dim == 512
    breakout.reset()
    for step in range(120):
        breakout.step(rng.integers(0, 4, 2))
        if step % 30 == 29:
            explorer.train_ensemble()
    pong = make_atari_vec_env("pong", 2, seed=0)
    pong_obs = pong.reset()
    for _ in range(20):
        pong_obs, *_ = pong.step(rng.integers(0, 6, 2))
    with torch.no_grad():
        seen = explorer.utility(explorer.features(breakout._last_obs), np.zeros(2, dtype=np.int64))
        novel = explorer.utility(explorer.features(pong_obs), np.zeros(2, dtype=np.int64))
    breakout.close()
    pong.close()
    assert (seen >= 0).all() and seen.max() * 3 < novel.min()


# ---------------------------------------------------------------------------------------------------
# The point of it all: the MAX chain
# ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ppo_with_the_explorer_reaches_the_far_end_of_the_chain_where_plain_ppo_does_not() -> None:
    """25-state chain, 34-step episodes, 30k env steps per run (about 2 min of CPU in all).
    A uniform random walk reaches the far end in 0.004% of episodes, and plain PPO drifts towards the
    small reward at the start; the explorer's bonus leads PPO along the chain (seeds 0 and 1 find it by
    15k steps; seed 2 reached state 23 of 24, and found the far end at 13.6k when the divergence was computed
    in float32: single runs are that fragile, so 2 of 3 seeds are asked for). Curves over 5 seeds:
    benchmarks/explorer.py and docs/benchmarks.md."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from chain_experiment import run_chain  # the experiment lives with the benchmark, not in the package

    explored, plain = [], []
    for seed in (0, 1, 2):
        explored.append(run_chain(True, seed=seed, timesteps=30_000, n_states=25))
        plain.append(run_chain(False, seed=seed, timesteps=30_000, n_states=25))
    for run in plain:
        assert run.first_far_end is None, f"plain PPO reached the far end (seed {run.seed})"
    found = [run.first_far_end is not None for run in explored]
    assert sum(found) >= 2, f"PPO + explorer reached the far end in seeds {found} only"
    # and it learns to go there: most of its last episodes end up at the far end, in most seeds
    learned = [run.reached()[-len(run.returns) // 10:].mean() >= 0.5 for run in explored]
    assert sum(learned) >= 2, [run.reached()[-len(run.returns) // 10:].mean() for run in explored]


def test_loading_a_state_of_another_shape_names_the_file(tmp_path) -> None:
    space = gym.spaces.Box(0.0, 1.0, (6,), np.float32)
    small = NoveltyExplorer(space, gym.spaces.Discrete(2), {"hidden": 8})
    small.save(tmp_path / "small.pt")
    _, callback = make_explorer({"hidden": 16}, DummyVecEnv([lambda: _SpaceEnv(space)]), seed=0)
    with pytest.raises(ValueError, match=r"small\.pt.*does not fit"):
        callback.load_state(tmp_path / "small.pt")


class _SpaceEnv(gym.Env):
    def __init__(self, space):
        self.observation_space, self.action_space = space, gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}
