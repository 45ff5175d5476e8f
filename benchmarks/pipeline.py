"""Training pipeline on the CPU: Sparse FLS in this package's pipeline vs NatureCNN in SB3's stock Atari pipeline.

Issue 17's target: Sparse FLS trained the way ``rl-saliency train`` trains it at least as fast as NatureCNN trained
the stock SB3 way on the same machine. Configurations, side by side in one run (rounds interleave them, so load
drifts hit all alike):

- ``stock``: ``stable_baselines3.common.env_util.make_atari_env`` (DummyVecEnv of AtariWrapper envs) +
  ``VecFrameStack(4)``, ``PPO("CnnPolicy")`` (NatureCNN) with the rl-zoo Atari recipe (n_steps 128, 4 epochs,
  batch 256, lr 2.5e-4, clip 0.1, ent 0.01, vf 0.5), torch's default thread count: the stock baseline;
  ``stock_t1`` the same with 1 torch thread.
- ``fls_before``: ``load_spec('fls_sparse')``, ``make_atari_vec_env`` (ale backend), ``spec.build_model`` as
  ``rl-saliency train`` built it before the CPU speed settings (float32, default layout).
- ``fls_<options>``: the same with the options of ``rl_saliency.agents.cpu_speed.speed_up`` (``bf16`` autocast,
  ``cl`` channels-last trunk), ``t1``/``t2`` torch threads, ``im`` rollouts under ``torch.inference_mode``;
  ``fls_train`` (``nature_train``): what ``rl-saliency train`` does now (``speed_up`` with the default precision,
  torch's default thread count).

Each configuration builds a fresh model, warms up (``--warmup`` steps: allocations, first rollout and update),
then trains ``--timesteps`` more; steps/s is over the timed part, with the time split into rollouts
(``collect_rollouts``: env stepping + policy forward) and PPO updates (``train``).

    python benchmarks/pipeline.py --game breakout --timesteps 2048 --rounds 3

``--updates`` instead times one PPO minibatch update (batch 256: forward, backward, Adam) per setting, and the FLS
module alone (forward + backward, batch 256 of 7x7x64) in its convolution form and in an im2col + GEMM form
(checked equal to 1e-6 first), settings interleaved, median of ``--rounds``.

``--scores RUN ...`` instead prints the results of ``rl-saliency train`` runs side by side (from each run folder's
config.yaml and metrics.csv): the check that the speed settings leave the results no worse.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
from typing import Any

import numpy as np
import torch

DEFAULT_CONFIGS = "stock,stock_t1,fls_before,fls_before_t1,fls_cl_t1,fls_bf16_t1,fls_bf16_t2,fls_bf16_im_t1"
RECIPE = dict(n_steps=128, n_epochs=4, batch_size=256, learning_rate=2.5e-4, clip_range=0.1, ent_coef=0.01,
              vf_coef=0.5)


def build_stock(game_id: str, n_envs: int, seed: int) -> Any:
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    venv = VecFrameStack(make_atari_env(game_id, n_envs=n_envs, seed=seed), n_stack=4)
    return PPO("CnnPolicy", venv, seed=seed, device="cpu", **RECIPE)


def build_package(spec_name: str, game: str, n_envs: int, seed: int, options: set[str]) -> Any:
    from rl_saliency.agents import load_spec
    from rl_saliency.agents.cpu_speed import check_precision, speed_up
    from rl_saliency.envs import make_atari_vec_env
    from rl_saliency.train import use_channels_last

    spec = load_spec(spec_name)
    venv = spec.wrap_env(make_atari_vec_env(game, n_envs, seed=seed))
    model = spec.build_model(venv, seed=seed, device="cpu")
    use_channels_last(model)  # what train did before (NatureCNN only)
    if "train" in options:  # what `rl-saliency train` does now: default precision, torch's own thread count
        speed_up(model, check_precision(None), env_threads=None)
    elif "before" not in options:
        speed_up(model, precision="bf16" if "bf16" in options else "fp32", trunk_channels_last="cl" in options)
    return model


def timed(model: Any, options: set[str]) -> dict[str, float]:
    """Wrap the model's rollout and update phases with timers (and inference mode in rollouts for ``im``)."""
    spent = {"rollout": 0.0, "update": 0.0}
    collect, train = model.collect_rollouts, model.train

    def collect_rollouts(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        with torch.inference_mode() if "im" in options else contextlib.nullcontext():
            out = collect(*args, **kwargs)
        spent["rollout"] += time.perf_counter() - start
        return out

    def train_phase(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = train(*args, **kwargs)
        spent["update"] += time.perf_counter() - start
        return out

    model.collect_rollouts, model.train = collect_rollouts, train_phase
    return spent


def measure(config: str, game: str, game_id: str, n_envs: int, warmup: int, timesteps: int, seed: int,
            default_threads: int) -> dict[str, float]:
    options = set(config.split("_")[1:])
    torch.set_num_threads(1 if "t1" in options else 2 if "t2" in options else default_threads)
    if config.startswith("stock"):
        model = build_stock(game_id, n_envs, seed)
    else:
        spec = config.split("_")[0]
        model = build_package({"fls": "fls_sparse", "nature": "nature"}[spec], game, n_envs, seed, options)
    threads = torch.get_num_threads()
    spent = timed(model, options)
    model.learn(total_timesteps=warmup)
    spent.update(rollout=0.0, update=0.0)
    start = time.perf_counter()
    model.learn(total_timesteps=timesteps, reset_num_timesteps=False)
    elapsed = time.perf_counter() - start
    model.get_env().close()
    torch.set_num_threads(default_threads)
    return {"steps_per_s": timesteps / elapsed, "rollout_s": spent["rollout"], "update_s": spent["update"],
            "elapsed": elapsed, "threads": threads}


def _gemm_fls(x: torch.Tensor, module: Any) -> torch.Tensor:
    """The FLS module as im2col + one GEMM for the 3x3 conv 64 -> 256 and a 1x1 matmul + 9 shifted adds for the 3x3
    conv 256 -> 1: the same function as ``module`` (3x3 kernels, no normalise), another summation order."""
    import torch.nn.functional as F

    n, c, h, w = x.shape
    xp = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)
    cols = torch.cat([xp[:, i:i + h, j:j + w, :] for i in range(3) for j in range(3)], dim=3)
    w1 = module.conv1.weight.permute(2, 3, 1, 0).reshape(9 * c, -1)
    hidden = F.relu(torch.addmm(module.conv1.bias, cols.reshape(n * h * w, 9 * c), w1))
    z = (hidden @ module.conv2.weight[0].reshape(-1, 9)).reshape(n, h, w, 3, 3)
    zp = F.pad(z, (0, 0, 0, 0, 1, 1, 1, 1))
    out = sum(zp[:, i:i + h, j:j + w, i, j] for i in range(3) for j in range(3)) + module.conv2.bias
    return F.softplus(out, beta=module.beta)[:, None]


def updates(rounds: int) -> None:
    """Seconds per PPO minibatch update for each setting, and the FLS module's two forms."""
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rl_saliency.agents import SparseFLS, paper_policy_kwargs
    from rl_saliency.agents.cpu_speed import speed_up
    from rl_saliency.agents.extractors import FLSModule
    from rl_saliency.train import use_channels_last

    class Frames(gym.Env):
        observation_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
        action_space = gym.spaces.Discrete(4)

        def reset(self, seed=None, options=None):
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, False, False, {}

    def build(fls: bool, precision: str, trunk_cl: bool, nature_cl: bool = False) -> Any:
        kwargs = paper_policy_kwargs(SparseFLS) if fls else {}
        model = PPO("CnnPolicy", DummyVecEnv([Frames]), policy_kwargs=kwargs, seed=0, device="cpu")
        if nature_cl:
            use_channels_last(model)
        speed_up(model, precision, trunk_channels_last=trunk_cl)
        return model

    torch.manual_seed(0)
    obs, actions = torch.rand(256, 4, 84, 84) * 255, torch.randint(0, 4, (256,))

    def update(model: Any) -> float:
        policy = model.policy
        start = time.perf_counter()
        values, log_prob, entropy = policy.evaluate_actions(obs, actions)
        loss = -log_prob.mean() + values.pow(2).mean() - 0.01 * entropy.mean()
        policy.optimizer.zero_grad()
        loss.backward()
        policy.optimizer.step()
        return time.perf_counter() - start

    fls = FLSModule()
    x = torch.relu(torch.randn(256, 64, 7, 7))
    with torch.no_grad():
        gap = (fls(x) - _gemm_fls(x, fls)).abs().max().item()
    assert gap < 1e-6, gap

    def module_pass(form: Any) -> float:
        xx = x.clone().requires_grad_(True)
        start = time.perf_counter()
        form(xx).sum().backward()
        return time.perf_counter() - start

    settings = {"NatureCNN fp32": build(False, "fp32", False),
                "NatureCNN channels-last (train before)": build(False, "fp32", False, True),
                "NatureCNN channels-last + bf16": build(False, "bf16", False, True),
                "Sparse FLS fp32 (train before)": build(True, "fp32", False),
                "Sparse FLS fp32 + channels-last trunk": build(True, "fp32", True),
                "Sparse FLS bf16": build(True, "bf16", False),
                "Sparse FLS bf16 + channels-last trunk": build(True, "bf16", True)}
    forms = {"FLS module, conv form (fwd+bwd)": fls, "FLS module, im2col + GEMM form (fwd+bwd)":
             lambda z: _gemm_fls(z, fls)}
    times: dict[str, list[float]] = {k: [] for k in [*settings, *forms]}
    for model in settings.values():
        update(model)  # warm-up
    for r in range(rounds + 1):
        for name, model in settings.items():
            t = update(model)
            if r:
                times[name].append(t)
        for name, form in forms.items():
            t = module_pass(form)
            if r:
                times[name].append(t)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; FLS forms' largest difference {gap:.1e}")
    print("| setting | s per update (median) | vs NatureCNN fp32 |")
    print("|---|---|---|")
    base = float(np.median(times["NatureCNN fp32"]))
    for name, values in times.items():
        ratio = f"{base / np.median(values):.2f}x" if name in settings else ""
        print(f"| {name} | {np.median(values):.3f} | {ratio} |")


def bf16_logp_gap(run_dir: str, n_obs: int = 256) -> tuple[float, float]:
    """For a trained run: the largest |log pi(a|s)| difference between bf16 and float32 over ``n_obs`` observations
    of its game (the model acting), and between batch 8 (rollouts) and batch 256 (updates) under bf16."""
    from pathlib import Path

    import yaml

    from rl_saliency.agents.cpu_speed import speed_up
    from rl_saliency.envs import make_atari_vec_env
    from rl_saliency.models import load_model

    config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    plain = load_model(Path(run_dir) / "model.zip", device="cpu")
    fast = load_model(Path(run_dir) / "model.zip", device="cpu")
    speed_up(fast, "bf16")
    venv = make_atari_vec_env(config["game"], 8, seed=123)
    obs, frames = venv.reset(), []
    while len(frames) * 8 < n_obs:
        frames.append(obs)
        obs, *_ = venv.step(plain.predict(obs, deterministic=False)[0])
    venv.close()
    batch = torch.as_tensor(np.concatenate(frames), dtype=torch.float32)
    actions = torch.as_tensor(np.arange(len(batch)) % plain.action_space.n)
    with torch.no_grad():
        ref = plain.policy.evaluate_actions(batch, actions)[1]
        big = fast.policy.evaluate_actions(batch, actions)[1]
        small = torch.cat([fast.policy.evaluate_actions(batch[i:i + 8], actions[i:i + 8])[1]
                           for i in range(0, len(batch), 8)])
    return (big - ref).abs().max().item(), (small - big).abs().max().item()


def scores(run_dirs: list[str]) -> None:
    """A markdown table of finished runs: precision, final mean episode return (SB3's last 100 episodes), the same
    averaged over the last 5 rollouts, the last update's losses, and ``bf16_logp_gap`` of the trained model."""
    from pathlib import Path

    import pandas as pd
    import yaml

    print("| run | precision | steps | ep_rew_mean (last 100 episodes) | mean of the last 5 rollouts | "
          "value loss | explained variance | entropy loss | approx KL (mean) | fps | max abs log-prob gap bf16 vs "
          "fp32 | bf16 batch 8 vs 256 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in run_dirs:
        config = yaml.safe_load((Path(run) / "config.yaml").read_text())
        m = pd.read_csv(Path(run) / "metrics.csv")
        last = m.iloc[-1]
        print(f"| {Path(run).name} | {config.get('cpu_precision', 'fp32')} | {int(last['time/total_timesteps'])} | "
              f"{last['rollout/ep_rew_mean']:.2f} | {m['rollout/ep_rew_mean'].tail(5).mean():.2f} | "
              f"{last['train/value_loss']:.4f} | {last['train/explained_variance']:.3f} | "
              f"{last['train/entropy_loss']:.3f} | {m['train/approx_kl'].mean():.5f} | {int(last['time/fps'])} | "
              + ("{:.1e} | {:.1e} |".format(*bf16_logp_gap(run)) if (Path(run) / "model.zip").exists() else "| |"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="breakout")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma-separated, the first is the baseline")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1024)
    parser.add_argument("--timesteps", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scores", nargs="+", metavar="RUN", help="print the results of these run folders instead")
    parser.add_argument("--updates", action="store_true", help="time single PPO updates per setting instead")
    args = parser.parse_args()
    if args.scores:
        scores(args.scores)
        return
    if args.updates:
        updates(args.rounds)
        return

    from rl_saliency.agents.cpu_speed import cpu_has_native_bf16
    from rl_saliency.envs import resolve_game

    game = resolve_game(args.game)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    default_threads = torch.get_num_threads()
    results: dict[str, list[dict[str, float]]] = {c: [] for c in configs}
    for r in range(args.rounds):
        for config in configs:
            out = measure(config, game.name, game.gym_id, args.n_envs, args.warmup, args.timesteps, args.seed,
                          default_threads)
            results[config].append(out)
            print(f"round {r + 1} {config}: {out['steps_per_s']:.0f} steps/s (rollouts {out['rollout_s']:.1f} s, "
                  f"updates {out['update_s']:.1f} s)", flush=True)
    print(f"\nmachine: {platform.processor() or platform.machine()}, torch {torch.__version__} "
          f"({torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_has_native_bf16()}), default "
          f"{default_threads} torch threads; game {game.name}, {args.n_envs} envs, {args.warmup} warm-up + "
          f"{args.timesteps} timed steps x {args.rounds} rounds")
    print("| configuration | torch threads | steps/s (median) | vs stock | rollouts s/1k steps | updates s/1k steps | "
          "runs |")
    print("|---|---|---|---|---|---|---|")
    base = float(np.median([o["steps_per_s"] for o in results[configs[0]]]))
    for config, outs in results.items():
        sps = [o["steps_per_s"] for o in outs]
        per_k = 1000 / args.timesteps
        print(f"| {config} | {outs[0]['threads']} | {np.median(sps):.0f} | {np.median(sps) / base:.2f}x | "
              f"{np.median([o['rollout_s'] for o in outs]) * per_k:.2f} | "
              f"{np.median([o['update_s'] for o in outs]) * per_k:.2f} | {', '.join(f'{s:.0f}' for s in sps)} |")


if __name__ == "__main__":
    main()
