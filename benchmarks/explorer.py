"""Novelty explorer benchmark: chain-env learning curves (PNG) and the Atari throughput cost.

    python benchmarks/explorer.py chain --seeds 0 1 2 3 4 --timesteps 24000
    python benchmarks/explorer.py atari --game breakout --timesteps 2048 --repeats 2

``chain`` trains PPO with and without the explorer on a 20-state MAX chain, one run per (condition,
seed), each cached as JSON under ``--out`` (rerunning skips finished runs), then plots the share of
episodes that reach the far end against env steps to ``docs/img/explorer_chain.png``.
``atari`` measures PPO env-steps per second with and without the explorer side by side (alternating
order, ``--repeats`` times) on the same vectorised Atari env.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def chain(args: argparse.Namespace) -> None:
    from rl_saliency.agents.exploration_chain import run_chain

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(explorer, seed) for seed in args.seeds for explorer in (True, False)]
    results: dict[tuple[bool, int], dict] = {}
    for explorer, seed in tqdm(jobs, desc="chain runs"):
        path = out / f"chain_n{args.n_states}_t{args.timesteps}_{'explorer' if explorer else 'plain'}_s{seed}.json"
        if not path.exists():
            run = run_chain(explorer, seed=seed, timesteps=args.timesteps, n_states=args.n_states)
            _atomic_json(path, {"timesteps": run.timesteps, "returns": run.returns,
                                "first_far_end": run.first_far_end, "seconds": run.seconds})
        results[(explorer, seed)] = json.loads(path.read_text())

    bins = np.linspace(0, args.timesteps, 41)
    centres = (bins[1:] + bins[:-1]) / 2
    curves: dict[bool, list[np.ndarray]] = {True: [], False: []}
    print(f"\nchain N={args.n_states}, {args.timesteps} env steps per run")
    print("| condition | seed | first far-end visit (steps) | far-end share, last 20% of episodes | wall s |")
    print("|---|---|---|---|---|")
    for (explorer, seed), res in sorted(results.items(), key=lambda kv: (not kv[0][0], kv[0][1])):
        t, reached = np.asarray(res["timesteps"]), np.asarray(res["returns"]) >= 1.0
        idx = np.clip(np.digitize(t, bins) - 1, 0, len(centres) - 1)
        share = np.array([reached[idx == b].mean() if (idx == b).any() else np.nan for b in range(len(centres))])
        curves[explorer].append(share)
        tail = reached[int(0.8 * len(reached)):].mean()
        print(f"| {'PPO + explorer' if explorer else 'PPO'} | {seed} | {res['first_far_end'] or 'never'} | "
              f"{tail:.2f} | {res['seconds']:.0f} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for explorer, colour in ((True, "tab:red"), (False, "tab:blue")):
        label = "PPO + novelty explorer" if explorer else "PPO"
        stack = np.vstack(curves[explorer])
        for row in stack:
            ax.plot(centres, row, color=colour, alpha=0.25, lw=0.8)
        ax.plot(centres, np.nanmean(stack, axis=0), color=colour, lw=2, label=f"{label} (mean of {len(stack)})")
    ax.set_xlabel("env steps")
    ax.set_ylabel("share of episodes reaching the far end")
    ax.set_title(f"MAX chain, N={args.n_states} (episodes of {args.n_states + 9} steps)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="upper left")
    fig.tight_layout()
    png = Path(args.png)
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(png.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, png)
    print(f"\nwrote {png}")


def atari(args: argparse.Namespace) -> None:
    from rl_saliency.agents.exploration import make_explorer
    from rl_saliency.agents.spec import load_spec
    from rl_saliency.envs import make_atari_vec_env

    spec = load_spec(ROOT / "agents" / "ppo_explorer.yaml")
    timings: dict[str, list[float]] = {"PPO": [], "PPO + explorer": []}
    order = ["PPO", "PPO + explorer"]
    for repeat in tqdm(range(args.repeats), desc="repeats"):
        for name in order if repeat % 2 == 0 else order[::-1]:
            venv = make_atari_vec_env(args.game, args.n_envs, seed=repeat)
            callbacks = []
            if name != "PPO":
                venv, callback = make_explorer(spec.explorer, venv, seed=repeat)
                callbacks.append(callback)
            model = spec.build_model(venv, seed=repeat, device="cpu", n_steps=args.n_steps, batch_size=256)
            model.learn(args.n_steps * args.n_envs, callback=callbacks)  # warm-up: first rollout and update
            start = time.perf_counter()
            model.learn(args.timesteps, callback=callbacks, reset_num_timesteps=False)
            timings[name].append(args.timesteps / (time.perf_counter() - start))
            venv.close()
    print(f"\n{args.game}, {args.n_envs} envs, n_steps {args.n_steps}, {args.timesteps} timed env steps per run, "
          f"torch threads {torch.get_num_threads()}")
    print("| agent | env steps/s (each repeat) | mean | ratio to PPO |")
    print("|---|---|---|---|")
    base = float(np.mean(timings["PPO"]))
    for name, values in timings.items():
        print(f"| {name} | {', '.join(f'{v:.0f}' for v in values)} | {np.mean(values):.0f} | "
              f"{np.mean(values) / base:.2f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("chain")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
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
    p.set_defaults(func=atari)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as in the tests; the sandbox has 2 shared cores
    args.func(args)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
