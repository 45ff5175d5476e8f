"""PPO agent steps per second for each env backend, side by side in one run.

    python benchmarks/throughput.py --game breakout --timesteps 8192 --n-envs 8 --rounds 2

Each configuration trains the default spec (rl-zoo PPO recipe, NatureCNN) for ``--timesteps`` steps;
rounds interleave the configurations so that machine noise hits them alike. Prints a markdown table
with steps/s and the ratio to the first configuration.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from rl_saliency.agents import load_spec
from rl_saliency.envs import make_atari_vec_env


def ppo_steps_per_second(game: str, backend: str, vec_env_cls: str, n_envs: int, timesteps: int,
                         device: str, extractor: str | None = None) -> float:
    spec = load_spec("nature")
    if extractor:
        spec.features_extractor = extractor
    venv = make_atari_vec_env(game, n_envs, seed=0, backend=backend, vec_env_cls=vec_env_cls)
    model = spec.build_model(venv, seed=0, device=device)
    model.learn(total_timesteps=1024)  # warm-up: allocations, first rollout
    start = time.perf_counter()
    model.learn(total_timesteps=timesteps, reset_num_timesteps=False)
    elapsed = time.perf_counter() - start
    venv.close()
    return timesteps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="breakout")
    parser.add_argument("--timesteps", type=int, default=8192)
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    configs = [("ale", "dummy"), ("sb3", "dummy"), ("sb3", "subproc")]
    results: dict[tuple[str, str], list[float]] = {c: [] for c in configs}
    for _ in range(args.rounds):
        for backend, cls in configs:
            results[(backend, cls)].append(
                ppo_steps_per_second(args.game, backend, cls, args.n_envs, args.timesteps, args.device))
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"device {args.device}; game {args.game}, {args.n_envs} envs, {args.timesteps} steps x {args.rounds} rounds")
    print("| backend | vec env | PPO steps/s (median) | ratio to ale |")
    print("|---|---|---|---|")
    base = float(np.median(results[configs[0]]))
    for (backend, cls), values in results.items():
        median = float(np.median(values))
        label = "AtariVectorEnv (C++ threads)" if backend == "ale" else cls
        print(f"| {backend} | {label} | {median:.0f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
