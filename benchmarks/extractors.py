"""Features extractors: PPO training throughput relative to NatureCNN, and the cost of reading attention.

Run by hand, e.g.::

    python benchmarks/extractors.py --game breakout --n-envs 8 --n-steps 128 --iterations 2 --repeats 3
    python benchmarks/extractors.py --agents nature,fls_dense --n-steps 16 --iterations 1   # dense is slow on CPU

1. Throughput: each agent spec (same PPO recipe, only the extractor differs) trains for ``iterations``
   rollouts of ``n_steps x n_envs`` agent steps on the real Atari env; agents run round-robin ``repeats``
   times (so machine load drifts hit all alike) and the median steps/s is compared with NatureCNN's.
2. Readout cost: on a batch of observations, the policy's forward pass (which already holds the map)
   vs ``project_attention`` of its map onto 84x84, and the same plus the (210, 160) frame maps; the
   post-hoc ``gradient`` method (a backward pass per batch) is timed alongside for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from rl_saliency.agents import load_spec
from rl_saliency.envs import make_atari_vec_env
from rl_saliency.saliency import get_method

DEFAULT_AGENTS = "nature,fls_sparse,fls_sparse_pool,daqn,rsppo"


def train_throughput(agent: str, game: str, n_envs: int, n_steps: int, iterations: int, seed: int) -> float:
    """Agent steps per second of ``model.learn`` (env stepping + PPO updates), model building excluded."""
    spec = load_spec(agent)
    venv = make_atari_vec_env(game, n_envs=n_envs, seed=seed)
    batch = min(spec.hyperparams.get("batch_size", 256), n_steps * n_envs)
    model = spec.build_model(venv, seed=seed, device="cpu", n_steps=n_steps, batch_size=batch)
    total = iterations * n_steps * n_envs
    start = time.perf_counter()
    model.learn(total_timesteps=total)
    elapsed = time.perf_counter() - start
    venv.close()
    return total / elapsed


def _best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def readout_cost(agent: str, game: str, batch: int, repeats: int, seed: int) -> dict[str, float]:
    """Best seconds per batch: the policy's forward pass, the projection of its map onto 84x84, the
    projection plus the (210, 160) frame maps, and the post-hoc gradient method for scale.

    The readout steps are timed on their own (best of many) because on a busy machine the noise of a
    whole forward pass is larger than their cost.
    """
    spec = load_spec(agent)
    venv = make_atari_vec_env(game, n_envs=1, seed=seed)
    model = spec.build_model(venv, seed=seed, device="cpu", batch_size=64)
    venv.close()
    policy = model.policy
    policy.set_training_mode(False)
    obs = np.random.default_rng(seed).integers(0, 256, size=(batch, 4, 84, 84), dtype=np.uint8)
    obs_t = policy.obs_to_tensor(obs)[0]
    extractor = policy.features_extractor

    def forward():
        with torch.no_grad():
            policy.get_distribution(obs_t)

    out = {"forward": _best_time(forward, repeats)}
    if hasattr(extractor, "project_attention"):
        raw = extractor.last_attention
        with torch.no_grad():
            out["project"] = _best_time(lambda: extractor.project_attention(raw), 4 * repeats)
            out["project+frames"] = _best_time(lambda: extractor.frame_attention(raw), 4 * repeats)
    gradient = get_method("gradient")
    out["gradient"] = _best_time(lambda: gradient.attribute(policy, obs), repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", default=DEFAULT_AGENTS, help="comma-separated spec names; nature first")
    parser.add_argument("--game", default="breakout")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--n-steps", type=int, default=128, help="rollout length per env (rl-zoo: 128)")
    parser.add_argument("--iterations", type=int, default=2, help="PPO rollouts+updates per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="round-robin rounds (median taken)")
    parser.add_argument("--batch", type=int, default=32, help="observations per readout-cost batch")
    parser.add_argument("--timing-repeats", type=int, default=20, help="timings per readout figure (best taken)")
    parser.add_argument("--skip-train", action="store_true", help="only measure the readout cost")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: best on a small shared CPU, "
                        "where more threads oversubscribe the cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    if agents[0] != "nature":
        agents.insert(0, "nature")
    torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}, load average {os.getloadavg()}")

    results: dict[str, dict] = {"args": vars(args) | {"out": str(args.out)}, "train": {}, "readout": {}}
    if not args.skip_train:
        speeds: dict[str, list[float]] = {a: [] for a in agents}
        runs = [(r, a) for r in range(args.repeats) for a in agents]
        for _, agent in tqdm(runs, desc="train throughput"):
            speeds[agent].append(train_throughput(agent, args.game, args.n_envs, args.n_steps, args.iterations,
                                                  args.seed))
        base = statistics.median(speeds["nature"])
        print(f"\nPPO training, {args.game}, {args.n_envs} envs x {args.n_steps} steps x {args.iterations} "
              f"iterations, {args.repeats} rounds (median)")
        print("| agent | agent steps/s | vs NatureCNN | runs |\n|---|---|---|---|")
        for agent in agents:
            median = statistics.median(speeds[agent])
            results["train"][agent] = {"steps_per_s": median, "ratio": median / base, "runs": speeds[agent]}
            runs_txt = ", ".join(f"{s:.0f}" for s in speeds[agent])
            print(f"| {agent} | {median:.0f} | {median / base:.2f}x | {runs_txt} |")

    for agent in tqdm(agents, desc="readout cost"):
        results["readout"][agent] = readout_cost(agent, args.game, args.batch, repeats=args.timing_repeats,
                                                 seed=args.seed)
    print(f"\nReading the attention map, batch of {args.batch} observations (ms per batch, best of "
          f"{args.timing_repeats}; projections best of {4 * args.timing_repeats})")
    print("| agent | policy forward | project 84x84 | project + 210x160 frames | readout / forward | "
          "gradient method |\n|---|---|---|---|---|---|")
    for agent, cost in results["readout"].items():
        ms = {k: f"{1000 * v:.2f}" for k, v in cost.items()}
        share = f"{100 * cost['project'] / cost['forward']:.1f} %" if "project" in cost else "n/a"
        print(f"| {agent} | {ms['forward']} | {ms.get('project', 'n/a')} | {ms.get('project+frames', 'n/a')} | "
              f"{share} | {ms['gradient']} |")

    if args.out:
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(json.dumps(results, indent=2))
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
