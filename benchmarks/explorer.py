"""Novelty explorer benchmark: chain-env learning curves (PNG), the Atari throughput cost, and which
divergence explores better.

    python benchmarks/explorer.py chain --seeds 0 1 2 3 4 --timesteps 24000
    python benchmarks/explorer.py chain --features mlp512 --conditions plain joint joint_decay0.01 per_dim
    python benchmarks/explorer.py atari --game breakout --timesteps 2048 --repeats 2
    python benchmarks/explorer.py atari-explore --game ms_pacman --timesteps 3072

``chain`` trains PPO on a MAX chain under each condition (``plain``: no explorer; ``explorer``: the default
explorer config; ``joint`` / ``per_dim``: the joint or per-dimension Jensen-Renyi divergence with MAX's
variance shrinkage 0.1; ``joint_decay0.01``: the joint one with variances shrunk 10x more), one run per
(condition, seed), each cached as JSON under ``--out`` (rerunning skips finished runs), prints when each run
first reached the far end and its furthest state, then plots the share of episodes that reach the far end
against env steps to ``--png``. ``--features mlp512`` feeds the explorer 512-d features of a fixed random
MLP (the dimension of the Atari explorer's random-CNN features) instead of the one-hot state.
``atari`` measures PPO env-steps per second (wall clock and per CPU-second of the process) with and without the
explorer side by side (order rotated, ``--repeats`` times) on the same vectorised Atari env: the explorer as it
was at commit ad90899 (read from git), and as it is now with the ensemble trained in place or (the default) in a
background thread beside PPO's update. CPU seconds are the whole process's and the main thread's alone: the
main thread's are the critical path when a core is free for the other threads (the ensemble's training round with
``train_async``, ALE's emulator threads), so their ratio bounds from below what the wall-clock ratio becomes on a
machine with a core to spare.
``atari-explore`` trains ``agents/ppo_explorer.yaml`` under each condition for a few thousand steps and
counts the distinct Go-Explore cells (latest frame at 11x8 pixels, 8 grey levels) the agents visit, the
share of zero bonuses (the utility clamped at 0) and the Spearman correlation between each transition's
intrinsic reward and how often its cell had been visited (a good novelty bonus is higher for rarer cells:
negative).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


# explorer configs of the compared conditions (None: plain PPO); variance shrinkage explicit, so that the
# comparison does not move with the defaults
CONDITIONS: dict[str, dict | None] = {
    "plain": None,
    "explorer": {},
    "joint": {"per_dimension": False, "var_decay": 0.1},
    "joint_decay0.01": {"per_dimension": False, "var_decay": 0.01},
    "per_dim": {"per_dimension": True, "var_decay": 0.1},
}
FEATURES: dict[str, dict] = {"identity": {}, "mlp512": {"features": "mlp", "features_dim": 512}}


def chain(args: argparse.Namespace) -> None:
    from chain_experiment import run_chain  # benchmarks/chain_experiment.py, beside this script

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(condition, seed) for seed in args.seeds for condition in args.conditions]
    results: dict[tuple[str, int], dict] = {}
    for condition, seed in tqdm(jobs, desc="chain runs"):
        config = CONDITIONS[condition]
        features = "" if config is None or args.features == "identity" else f"_{args.features}"
        path = out / f"chain_n{args.n_states}_t{args.timesteps}_{condition}{features}_s{seed}.json"
        if not path.exists():
            explorer_config = None if config is None else {**FEATURES[args.features], **config}
            run = run_chain(config is not None, seed=seed, timesteps=args.timesteps, n_states=args.n_states,
                            explorer_config=explorer_config)
            _atomic_json(path, {"timesteps": run.timesteps, "returns": run.returns, "frontier": run.frontier,
                                "first_far_end": run.first_far_end, "seconds": run.seconds})
        results[(condition, seed)] = json.loads(path.read_text())

    bins = np.linspace(0, args.timesteps, 41)
    centres = (bins[1:] + bins[:-1]) / 2
    curves: dict[str, list[np.ndarray]] = {condition: [] for condition in args.conditions}
    print(f"\nchain N={args.n_states}, {args.timesteps} env steps per run, explorer features {args.features}")
    print("| condition | seed | first far-end visit (steps) | furthest state at half time | far-end share, last 20% "
          "of episodes | wall s |")
    print("|---|---|---|---|---|---|")
    order = {condition: i for i, condition in enumerate(args.conditions)}
    for (condition, seed), res in sorted(results.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        t, reached = np.asarray(res["timesteps"]), np.asarray(res["returns"]) >= 1.0
        idx = np.clip(np.digitize(t, bins) - 1, 0, len(centres) - 1)
        share = np.array([reached[idx == b].mean() if (idx == b).any() else np.nan for b in range(len(centres))])
        curves[condition].append(share)
        tail = reached[int(0.8 * len(reached)):].mean()
        half = max((state for steps, state in res.get("frontier", []) if steps <= args.timesteps // 2), default=1)
        print(f"| {condition} | {seed} | {res['first_far_end'] or 'never'} | {half} | {tail:.2f} | "
              f"{res['seconds']:.0f} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    palette = ["tab:blue", "tab:red", "tab:green", "tab:orange", "tab:purple"]
    for condition, colour in zip(args.conditions, palette, strict=False):
        label = "PPO" if condition == "plain" else f"PPO + explorer ({condition})"
        stack = np.vstack(curves[condition])
        for row in stack:
            ax.plot(centres, row, color=colour, alpha=0.25, lw=0.8)
        ax.plot(centres, np.nanmean(stack, axis=0), color=colour, lw=2, label=f"{label} (mean of {len(stack)})")
    ax.set_xlabel("env steps")
    ax.set_ylabel("share of episodes reaching the far end")
    ax.set_title(f"MAX chain, N={args.n_states} (episodes of {args.n_states + 9} steps), {args.features} features")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="upper left")
    fig.tight_layout()
    png = Path(args.png)
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(png.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, png)
    print(f"\nwrote {png}")


BEFORE_COMMIT = "ad90899"  # the explorer before issue 17's speed work (read from git for the 'before' rows)


def exploration_before() -> types.ModuleType:
    """``rl_saliency/agents/exploration.py`` as it was at ``BEFORE_COMMIT``, read from git."""
    source = subprocess.run(["git", "show", f"{BEFORE_COMMIT}:rl_saliency/agents/exploration.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("_exploration_before")
    sys.modules[module.__name__] = module
    exec(compile(source, f"{BEFORE_COMMIT}:rl_saliency/agents/exploration.py", "exec"), module.__dict__)
    return module


# the agents timed by ``atari``: plain PPO, the explorer before issue 17, and now with the ensemble trained in place
# and beside PPO's update (train_async, the default)
ATARI_AGENTS = ("PPO", "explorer before", "explorer in place", "explorer")


def atari(args: argparse.Namespace) -> None:
    from rl_saliency.agents import exploration
    from rl_saliency.agents.spec import load_spec
    from rl_saliency.envs import make_atari_vec_env
    from rl_saliency.saliency import base

    registry = dict(base._REGISTRY)
    before = exploration_before() if "explorer before" in args.agents else None
    base._REGISTRY.clear()
    base._REGISTRY.update(registry)  # the old module registered its own 'novelty' method
    spec = load_spec(ROOT / "agents" / "ppo_explorer.yaml")
    timings: dict[str, list[float]] = {name: [] for name in args.agents}
    cpu: dict[str, list[float]] = {name: [] for name in args.agents}
    main_cpu: dict[str, list[float]] = {name: [] for name in args.agents}
    order = list(args.agents)
    for repeat in tqdm(range(args.repeats), desc="repeats"):
        shift = repeat % len(order)
        for name in order[shift:] + order[:shift]:  # each agent in each position of the order in turn
            venv = make_atari_vec_env(args.game, args.n_envs, seed=repeat)
            callbacks = []
            if name != "PPO":
                module = before if name == "explorer before" else exploration
                config = dict(spec.explorer)
                if name != "explorer before":
                    config["train_async"] = name == "explorer"
                venv, callback = module.make_explorer(config, venv, seed=repeat)
                callbacks.append(callback)
            model = spec.build_model(venv, seed=repeat, device="cpu", n_steps=args.n_steps, batch_size=256)
            model.learn(args.n_steps * args.n_envs, callback=callbacks)  # warm-up: first rollout and update
            start, start_cpu, start_main = time.perf_counter(), time.process_time(), time.thread_time()
            model.learn(args.timesteps, callback=callbacks, reset_num_timesteps=False)
            timings[name].append(args.timesteps / (time.perf_counter() - start))
            cpu[name].append(args.timesteps / (time.process_time() - start_cpu))
            main_cpu[name].append(args.timesteps / (time.thread_time() - start_main))
            venv.close()
    print(f"\n{args.game}, {args.n_envs} envs, n_steps {args.n_steps}, {args.timesteps} timed env steps per run, "
          f"torch threads {torch.get_num_threads()}, {args.repeats} repeats (order rotated)")
    print("| agent | env steps/s wall (each repeat) | mean | ratio to PPO (per repeat) | env steps per CPU-s "
          "| ratio to PPO | per main-thread CPU-s | ratio to PPO |")
    print("|---|---|---|---|---|---|---|---|")
    base_rate = np.asarray(timings["PPO"]) if "PPO" in timings else None
    base_cpu = float(np.mean(cpu["PPO"])) if "PPO" in cpu else None
    base_main = float(np.mean(main_cpu["PPO"])) if "PPO" in main_cpu else None
    for name in args.agents:
        values = np.asarray(timings[name])
        ratios = values / base_rate if base_rate is not None else None
        ratio = f"{values.mean() / base_rate.mean():.2f} ({', '.join(f'{r:.2f}' for r in ratios)})" \
            if ratios is not None else "-"
        cpu_ratio = f"{np.mean(cpu[name]) / base_cpu:.2f}" if base_cpu else "-"
        main_ratio = f"{np.mean(main_cpu[name]) / base_main:.2f}" if base_main else "-"
        print(f"| {name} | {', '.join(f'{v:.0f}' for v in values)} | {values.mean():.0f} | {ratio} | "
              f"{np.mean(cpu[name]):.0f} | {cpu_ratio} | {np.mean(main_cpu[name]):.0f} | {main_ratio} |")


def go_explore_cell(frame: np.ndarray) -> bytes:
    """Go-Explore's cell of an 84x84 grey frame: 11x8 pixels (area average), 8 grey levels."""
    import cv2

    return (cv2.resize(frame, (11, 8), interpolation=cv2.INTER_AREA) // 32).tobytes()


def _explore_run(game: str, condition: str, timesteps: int, n_envs: int, seed: int) -> dict:
    """PPO (agents/ppo_explorer.yaml) under one condition; what it visited and how its bonus ranked novelty."""
    from collections import Counter

    from scipy.stats import spearmanr
    from stable_baselines3.common.callbacks import BaseCallback

    from rl_saliency.agents.exploration import make_explorer
    from rl_saliency.agents.spec import load_spec
    from rl_saliency.envs import make_atari_vec_env

    spec = load_spec(ROOT / "agents" / "ppo_explorer.yaml")
    venv = make_atari_vec_env(game, n_envs, seed=seed)
    callbacks = []
    config = CONDITIONS[condition]
    if config is not None:
        venv, callback = make_explorer({**spec.explorer, **config}, venv, seed=seed)
        callbacks.append(callback)
    rollout = spec.hyperparams["n_steps"] * n_envs
    counts: Counter = Counter()
    pairs: list[tuple[float, int]] = []  # (intrinsic reward, visits of the cell it was earned from), after 1 rollout
    scores: list[float] = []

    class Recorder(BaseCallback):
        def _on_step(self) -> bool:
            before = self.model._last_obs  # the observations the actions were taken in
            for i, info in enumerate(self.locals["infos"]):
                cell = go_explore_cell(before[i, -1])
                if "intrinsic_reward" in info and self.num_timesteps > rollout:
                    pairs.append((info["intrinsic_reward"], counts[cell]))
                counts[go_explore_cell(self.locals["new_obs"][i, -1])] += 1
                if "episode" in info:
                    scores.append(float(info["episode"]["r"]))
            return True

    model = spec.build_model(venv, seed=seed, device="cpu")
    start, cpu = time.perf_counter(), time.process_time()
    model.learn(timesteps, callback=[*callbacks, Recorder()])
    result = {"condition": condition, "seed": seed, "cells": len(counts), "games": len(scores),
              "mean_score": float(np.mean(scores)) if scores else None,
              "wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu}
    if pairs:
        bonus, visits = np.asarray(pairs, dtype=np.float64).T
        result["zero_bonus_share"] = float((bonus <= 0).mean())
        result["bonus_vs_visits_spearman"] = float(spearmanr(bonus, visits).statistic)
        result["bonus_mean"] = float(bonus.mean())
    venv.close()
    return result


def atari_explore(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        for condition in tqdm(args.conditions, desc=f"seed {seed}"):
            path = out / f"{args.game}_t{args.timesteps}_e{args.n_envs}_{condition}_s{seed}.json"
            if not path.exists():
                _atomic_json(path, _explore_run(args.game, condition, args.timesteps, args.n_envs, seed))
            rows.append(json.loads(path.read_text()))
    print(f"\n{args.game}, {args.n_envs} envs, {args.timesteps} env steps per run, agents/ppo_explorer.yaml "
          f"(random-CNN features, 512-d), torch threads {torch.get_num_threads()}")
    print("| condition | seed | distinct cells | games ended (mean score) | zero bonuses | Spearman(bonus, visits) "
          "| CPU s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        games = f"{r['games']} ({r['mean_score']:.0f})" if r["games"] else "0"
        zero = f"{100 * r['zero_bonus_share']:.0f} %" if "zero_bonus_share" in r else "-"
        rho = f"{r['bonus_vs_visits_spearman']:+.2f}" if "bonus_vs_visits_spearman" in r else "-"
        print(f"| {r['condition']} | {r['seed']} | {r['cells']} | {games} | {zero} | {rho} | {r['cpu_s']:.0f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("chain")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=["explorer", "plain"])
    p.add_argument("--features", choices=list(FEATURES), default="identity",
                   help="the explorer's features: the one-hot state, or 512-d of a fixed random MLP")
    p.add_argument("--timesteps", type=int, default=24_000)
    p.add_argument("--n-states", type=int, default=20)
    p.add_argument("--out", default=str(ROOT / "runs" / "bench_explorer"))
    p.add_argument("--png", default=str(ROOT / "docs" / "img" / "explorer_chain.png"))
    p.set_defaults(func=chain)
    p = sub.add_parser("atari")
    p.add_argument("--game", default="breakout")
    p.add_argument("--n-envs", type=int, default=8)
    p.add_argument("--n-steps", type=int, default=128)
    p.add_argument("--timesteps", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--agents", nargs="+", choices=ATARI_AGENTS, default=list(ATARI_AGENTS),
                   help="plain PPO; the explorer at commit ad90899 (before issue 17's speed work); now, with the "
                        "ensemble trained in place; now, trained beside PPO's update (the default)")
    p.set_defaults(func=atari)
    p = sub.add_parser("atari-explore", help="which divergence explores better in a short Atari run")
    p.add_argument("--game", default="ms_pacman")
    p.add_argument("--n-envs", type=int, default=8)
    p.add_argument("--timesteps", type=int, default=3072)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--conditions", nargs="+", choices=list(CONDITIONS),
                   default=["plain", "joint", "joint_decay0.01", "per_dim"])
    p.add_argument("--out", default=str(ROOT / "runs" / "bench_explorer_atari"))
    p.set_defaults(func=atari_explore)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as in the tests; the sandbox has 2 shared cores
    args.func(args)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
