"""Saliency methods side by side: maps per second on the same policy and the same observations.

    python benchmarks/saliency_methods.py [--policies nature fls] [--n-obs 16] [--repeats 5] [--threads 1]
        [--methods gradient ... perturbation_before perturbation perturbation_action sarfa]

Observations are real Breakout frames (an untrained agent playing; speed does not depend on the weights).
Methods run at their default settings (SmoothGrad 20 samples, integrated gradients 32 steps, perturbation
stride 5 = 324 perturbed copies per map). ``perturbation_before`` is the earlier Greydanus implementation
(``perturbation.reference_maps``: every perturbed frame built and run through the whole network) and
``perturbation_ad90899`` the perturbation module as it was at commit ad90899 (read from git: the first-convolution
shortcut, before issue 17's second round), so the speed-ups of the perturbation family are measured side by side in
the same run; its maps are checked against the
new ones and both against a float64 run of the earlier form (largest difference relative to the largest value,
printed; float32 rounding of logits that differ little puts both about 1e-5 from exact). Calls are interleaved
round-robin over the methods so machine load drifts hit every method alike; the median call time gives maps/s
(wall clock) and maps per CPU-second of this process (less sensitive to other jobs on a shared machine), and the
ratio to ``gradient`` is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO

from rl_saliency.envs import make_atari_vec_env
from rl_saliency.saliency import get_method
from rl_saliency.saliency.perturbation import reference_maps
from rl_saliency.saliency.sanity import collect_observations

METHODS = ("gradient", "smoothgrad", "integrated_gradients", "gradcam", "perturbation_before", "perturbation_ad90899",
           "perturbation", "perturbation_action", "sarfa")
BEFORE_COMMIT = "ad90899"  # perturbation.py before issue 17's second round of speed work


def perturbation_at(commit: str) -> types.ModuleType:
    """``rl_saliency/saliency/perturbation.py`` as it was at ``commit``, read from git (its registrations undone,
    so ``get_method`` keeps giving today's classes)."""
    from rl_saliency.saliency import base

    source = subprocess.run(["git", "show", f"{commit}:rl_saliency/saliency/perturbation.py"],
                            cwd=Path(__file__).parent, capture_output=True, text=True, check=True).stdout
    registry = dict(base._REGISTRY)
    module = types.ModuleType(f"_perturbation_{commit}")
    sys.modules[module.__name__] = module  # dataclasses look their module up here
    try:
        exec(compile(source, f"{commit}:rl_saliency/saliency/perturbation.py", "exec"), module.__dict__)
    finally:
        base._REGISTRY.clear()
        base._REGISTRY.update(registry)
    return module


@contextlib.contextmanager
def float64(policy) -> Iterator:
    """A float64 copy of ``policy`` whose preprocessing keeps float64 (SB3 casts images to float32)."""
    import stable_baselines3.common.policies as sb3_policies

    original = sb3_policies.preprocess_obs
    sb3_policies.preprocess_obs = lambda obs, *args, **kwargs: obs.double() / 255.0
    try:
        yield copy.deepcopy(policy).double()
    finally:
        sb3_policies.preprocess_obs = original


def build(policy: str, venv) -> PPO:
    kwargs = {}
    if policy == "fls":
        from rl_saliency.agents.extractors import SparseFLS, paper_policy_kwargs

        kwargs = paper_policy_kwargs(SparseFLS)
    return PPO("CnnPolicy", venv, n_steps=8, batch_size=8, device="cpu", seed=0, policy_kwargs=kwargs)


def method_call(name: str, stride: int) -> Callable:
    """A function (policy, obs) -> maps for a method name (``perturbation_before``: the earlier form)."""
    if name == "perturbation_before":
        return lambda policy, obs: reference_maps(policy, obs, stride=stride)
    if name == "perturbation_ad90899":
        old = perturbation_at(BEFORE_COMMIT).Perturbation(stride=stride)
        return lambda policy, obs: old.attribute(policy, obs)
    kwargs = {"stride": stride} if name in ("perturbation", "perturbation_action", "sarfa") else {}
    method = get_method(name, **kwargs)
    return lambda policy, obs: method.attribute(policy, obs)


def bench(model: PPO, obs: np.ndarray, methods: list[str], repeats: int, stride: int
          ) -> tuple[dict[str, float], dict[str, float], dict[str, np.ndarray]]:
    """Median wall-clock and CPU (this process) seconds per call of each method on the whole batch, and each
    method's maps."""
    calls = {name: method_call(name, stride) for name in methods}
    for call in calls.values():  # warm-up: first-call allocations, lazy imports, the shortcut's check
        call(model.policy, obs[:2])
    times: dict[str, list[float]] = {name: [] for name in methods}
    cpu: dict[str, list[float]] = {name: [] for name in methods}
    maps: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, call in calls.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            maps[name] = call(model.policy, obs)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            assert maps[name].shape == (len(obs), 84, 84)
    median = statistics.median
    return {n: median(t) for n, t in times.items()}, {n: median(t) for n, t in cpu.items()}, maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="+", default=["nature", "fls"], choices=["nature", "fls"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--n-obs", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stride", type=int, default=5, help="perturbation grid stride")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    venv = make_atari_vec_env("breakout", n_envs=1, backend="sb3")
    for policy in args.policies:
        model = build(policy, venv)
        obs = collect_observations(model, "breakout", args.n_obs, seed=0)
        methods = [*args.methods, "attention"] if policy == "fls" else list(args.methods)
        seconds, cpu_seconds, maps = bench(model, obs, methods, args.repeats, args.stride)
        base = "gradient" if "gradient" in seconds else methods[0]
        print(f"\n{policy} policy, {args.n_obs} observations, torch threads {args.threads}, stride {args.stride}")
        print(f"{'method':22s} {'s/call':>8s} {'maps/s':>9s} {'maps/CPU-s':>11s} {'vs ' + base:>14s}")
        for name in methods:
            rate, cpu_rate = args.n_obs / seconds[name], args.n_obs / cpu_seconds[name]
            print(f"{name:22s} {seconds[name]:8.3f} {rate:9.1f} {cpu_rate:11.1f} "
                  f"{seconds[base] / seconds[name]:13.3f}x")
        variants = [name for name in ("perturbation_before", "perturbation_ad90899", "perturbation") if name in maps]
        if variants:
            with float64(model.policy) as policy64:
                exact = reference_maps(policy64, torch.as_tensor(obs).double(), stride=args.stride)
            scale = exact.max()
            for name in variants:  # differences relative to the largest value of the float64 maps
                line = f"{name}: largest map difference vs float64 {np.abs(maps[name] - exact).max() / scale:.2e}"
                if name != "perturbation" and "perturbation" in maps:
                    line += (f"; perturbation is {seconds[name] / seconds['perturbation']:.2f}x faster wall, "
                             f"{cpu_seconds[name] / cpu_seconds['perturbation']:.2f}x CPU, maps differ by "
                             f"{np.abs(maps[name] - maps['perturbation']).max() / scale:.2e}")
                print(line)
    venv.close()


if __name__ == "__main__":
    main()
