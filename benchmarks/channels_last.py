"""Channels-last vs the default layout for PPO's update step on the CPU (what ``rl-saliency train`` does).

Times one minibatch update (forward, backward, Adam step; batch 256 of (4, 84, 84)) of the PPO CnnPolicy with
NatureCNN and Sparse FLS, both layouts interleaved (A B A B ...) so that load drifts hit both alike.

    python benchmarks/channels_last.py --threads 1 2 --repeats 5
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def build(extractor: str):
    from stable_baselines3 import PPO

    from rl_saliency.agents import SparseFLS, paper_policy_kwargs
    from rl_saliency.envs import make_atari_vec_env

    env = make_atari_vec_env("ms_pacman", 1, seed=0)
    kwargs = paper_policy_kwargs(SparseFLS) if extractor == "fls_sparse" else {}
    model = PPO("CnnPolicy", env, policy_kwargs=kwargs, device="cpu", seed=0)
    env.close()
    return model


def time_updates(model, channels_last: bool, obs: torch.Tensor, actions: torch.Tensor, n: int) -> float:
    from rl_saliency.train import use_channels_last

    policy = model.policy
    if channels_last:
        use_channels_last(model)
    else:
        policy.to(memory_format=torch.contiguous_format)
    optimizer = policy.optimizer
    start = time.perf_counter()
    for _ in range(n):
        values, log_prob, entropy = policy.evaluate_actions(obs, actions)
        loss = -log_prob.mean() + values.pow(2).mean() - 0.01 * entropy.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--updates", type=int, default=5)
    args = parser.parse_args()
    obs = torch.rand(256, 4, 84, 84) * 255
    actions = torch.randint(0, 9, (256,))
    print("| extractor | threads | default s/update | channels-last s/update | speed-up |")
    print("|---|---|---|---|---|")
    for extractor in ("nature", "fls_sparse"):
        for threads in args.threads:
            torch.set_num_threads(threads)
            plain, fast = build(extractor), build(extractor)
            time_updates(plain, False, obs, actions, 2)  # warm-up both
            time_updates(fast, True, obs, actions, 2)
            a, b = [], []
            for _ in range(args.repeats):
                a.append(time_updates(plain, False, obs, actions, args.updates))
                b.append(time_updates(fast, True, obs, actions, args.updates))
            print(f"| {extractor} | {threads} | {np.median(a):.3f} | {np.median(b):.3f} | "
                  f"{np.median(np.array(a) / np.array(b)):.2f}x |")


if __name__ == "__main__":
    main()
