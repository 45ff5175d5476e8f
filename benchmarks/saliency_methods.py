"""Saliency methods side by side: maps per second on the same policy and the same observations.

    python benchmarks/saliency_methods.py [--policies nature fls] [--n-obs 16] [--repeats 5] [--threads 1]

Observations are real Breakout frames (an untrained agent playing; speed does not depend on the weights).
Methods run at their default settings (SmoothGrad 20 samples, integrated gradients 32 steps, perturbation
stride 5 = 324 perturbed copies per map). Calls are interleaved round-robin over the methods so machine load
drifts hit every method alike; the median call time gives maps/s, and the ratio to ``gradient`` is printed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from stable_baselines3 import PPO

from rl_saliency.envs import make_atari_vec_env
from rl_saliency.saliency import get_method
from rl_saliency.saliency.sanity import collect_observations

METHODS = ("gradient", "smoothgrad", "integrated_gradients", "gradcam", "perturbation")


def build(policy: str, venv) -> PPO:
    kwargs = {}
    if policy == "fls":
        from rl_saliency.agents.extractors import SparseFLS, paper_policy_kwargs

        kwargs = paper_policy_kwargs(SparseFLS)
    return PPO("CnnPolicy", venv, n_steps=8, batch_size=8, device="cpu", seed=0, policy_kwargs=kwargs)


def bench(model: PPO, obs: np.ndarray, methods: list[str], repeats: int) -> dict[str, float]:
    """Median seconds per call of each method on the whole batch."""
    instances = {name: get_method(name) for name in methods}
    for method in instances.values():  # warm-up: first-call allocations, lazy imports
        method.attribute(model.policy, obs[:2])
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, method in instances.items():
            start = time.perf_counter()
            maps = method.attribute(model.policy, obs)
            times[name].append(time.perf_counter() - start)
            assert maps.shape == (len(obs), 84, 84)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="+", default=["nature", "fls"], choices=["nature", "fls"])
    parser.add_argument("--n-obs", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    venv = make_atari_vec_env("breakout", n_envs=1, backend="sb3")
    for policy in args.policies:
        model = build(policy, venv)
        obs = collect_observations(model, "breakout", args.n_obs, seed=0)
        methods = [*METHODS, "attention"] if policy == "fls" else list(METHODS)
        seconds = bench(model, obs, methods, args.repeats)
        print(f"\n{policy} policy, {args.n_obs} observations, torch threads {args.threads}")
        print(f"{'method':22s} {'s/call':>8s} {'maps/s':>9s} {'vs gradient':>12s}")
        for name in methods:
            rate = args.n_obs / seconds[name]
            print(f"{name:22s} {seconds[name]:8.3f} {rate:9.1f} {seconds['gradient'] / seconds[name]:11.3f}x")
    venv.close()


if __name__ == "__main__":
    main()
