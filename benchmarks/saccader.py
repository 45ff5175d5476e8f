"""Saccader benchmark: cue-env learning curves (learned vs random glimpses) and Atari PPO throughput.

    python benchmarks/saccader.py cue --seeds 0 1 2 --timesteps 32768
    python benchmarks/saccader.py cue --seeds 0 1 --timesteps 24576 --modes learned --mix linear relu
    python benchmarks/saccader.py atari --game breakout --timesteps 1024 --repeats 2

``cue`` trains PPO with a Saccader policy on the cue env, once with learned glimpses and once with random
glimpses (same network, same budget) per seed, evaluating every ``--eval-every`` steps (deterministic,
300 episodes): fraction of the optimal return and the share of steps whose glimpses hit the cue.
``--mix linear relu`` also compares the reference's linear what/where mixing layer with a ReLU after it
(``SaccaderPolicy(mix_relu=True)``, this package's earlier variant). Each run is cached as JSON under
``--out`` (rerunning skips finished runs); prints a markdown table, writes ``curves.csv`` and, if matplotlib
is available, ``--png`` (default ``docs/img/saccader_cue.png``).
``atari`` measures PPO env-steps per second of the Saccader spec against the NatureCNN spec side by side
(alternating order, ``--repeats`` times) on the same vectorised Atari env.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from rl_saliency import io

ROOT = Path(__file__).resolve().parents[1]
CUE_PPO = dict(n_steps=32, batch_size=128, n_epochs=4, learning_rate=1e-3, ent_coef=0.01, gamma=0.0, gae_lambda=1.0)


def cue_run(mode: str, seed: int, timesteps: int, eval_every: int, mix: str = "linear") -> dict:
    """One PPO run on the cue env; the learning curve and the CPU/wall time spent training."""
    from stable_baselines3 import PPO

    from rl_saliency.agents.saccader import GlimpseActionWrapper, SaccaderPolicy
    from rl_saliency.envs.cue import evaluate_on_cue, make_cue_vec_env

    env = GlimpseActionWrapper(make_cue_vec_env(16, seed=seed), n_glimpses=6, grid=7)
    model = PPO(SaccaderPolicy, env, seed=seed, device="cpu",
                policy_kwargs=dict(channels=32, glimpse_mode=mode, mix_relu=mix == "relu"), **CUE_PPO)
    curve, wall, cpu = [], 0.0, 0.0
    while model.num_timesteps < timesteps:
        w0, c0 = time.perf_counter(), time.process_time()
        model.learn(eval_every, reset_num_timesteps=False)
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
        scores = evaluate_on_cue(model, episodes=300)
        curve.append({"steps": model.num_timesteps, "fraction_of_optimal": scores["fraction_of_optimal"],
                      "cue_glimpse_rate": scores["cue_glimpse_rate"]})
    return {"mode": mode, "mix": mix, "seed": seed, "curve": curve, "train_wall_s": wall, "train_cpu_s": cpu,
            "steps_per_wall_s": model.num_timesteps / wall}


def cue(args: argparse.Namespace) -> None:
    out = Path(args.out)
    jobs = [(mode, mix, seed) for seed in args.seeds for mode in args.modes for mix in args.mix]
    results = []
    for mode, mix, seed in tqdm(jobs, desc="cue runs"):
        path = out / f"{mode}_{mix}_s{seed}_t{args.timesteps}.json"
        if not path.exists():  # finished runs are cached: the benchmark resumes where it stopped
            io.write_json(path, cue_run(mode, seed, args.timesteps, args.eval_every, mix))
        results.append(pd.read_json(path, typ="series"))
    rows = [{"mode": f"{r['mode']} ({r['mix']} mix)", "seed": r["seed"], **point} for r in results
            for point in r["curve"]]
    curves = pd.DataFrame(rows)
    io.write_csv(out / "curves.csv", curves)

    print("| glimpses | mixing layer | seed | steps to >= 90 % of optimal | final % of optimal | "
          "final cue-glimpse rate | train CPU s | steps/s (wall) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        curve = pd.DataFrame(r["curve"])
        reached = curve[curve["fraction_of_optimal"] >= 0.9]["steps"]
        first = str(int(reached.iloc[0])) if len(reached) else "never"
        last = curve.iloc[-1]
        print(f"| {r['mode']} | {r['mix']} | {r['seed']} | {first} | {100 * last['fraction_of_optimal']:.1f} | "
              f"{100 * last['cue_glimpse_rate']:.1f} % | {r['train_cpu_s']:.0f} | {r['steps_per_wall_s']:.0f} |")
    _plot(curves, Path(args.png))


def _plot(curves: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    palette = ["tab:blue", "tab:orange", "tab:grey", "tab:green"]
    colours = dict(zip(sorted(curves["mode"].unique()), palette, strict=False))
    for (mode, seed), group in curves.groupby(["mode", "seed"]):
        colour = colours[mode]
        label = f"{mode} glimpses" if seed == curves["seed"].min() else None
        axes[0].plot(group["steps"], group["fraction_of_optimal"], color=colour, label=label)
        axes[1].plot(group["steps"], group["cue_glimpse_rate"], color=colour, label=label)
    for ax, title, line in ((axes[0], "return / optimal", 0.9), (axes[1], "steps with the cue glimpsed", 0.8)):
        ax.axhline(line, ls="--", color="k", lw=0.8)
        ax.set(title=title, xlabel="env steps", ylim=(0, 1.05))
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    io.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    print(f"written: {path}")


def atari(args: argparse.Namespace) -> None:
    from rl_saliency.agents.spec import load_spec
    from rl_saliency.envs import make_atari_vec_env

    speeds: dict[str, list[float]] = {"nature": [], "saccader": []}
    # alternate which spec goes first, so drifts in machine load hit both alike
    order = [name for r in range(args.repeats) for name in (("saccader", "nature") if r % 2 == 0
                                                             else ("nature", "saccader"))]
    for i, name in enumerate(tqdm(order, desc="atari runs")):
        spec = load_spec(name)
        venv = spec.wrap_env(make_atari_vec_env(args.game, args.n_envs, seed=i, backend=args.backend))
        model = spec.build_model(venv, seed=i, device="cpu")
        model.learn(spec.hyperparams["n_steps"] * args.n_envs)  # warm-up rollout and update
        start = time.perf_counter()
        model.learn(args.timesteps, reset_num_timesteps=False)
        speeds[name].append(args.timesteps / (time.perf_counter() - start))
        venv.close()
    nature, saccader = np.mean(speeds["nature"]), np.mean(speeds["saccader"])
    print(f"| spec | env steps/s ({args.game}, {args.n_envs} envs, PPO n_steps 128, 4 epochs, batch 256) |")
    print("|---|---|")
    print(f"| nature | {nature:.0f} |")
    print(f"| saccader | {saccader:.0f} ({saccader / nature:.2f}x) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tests and figures use 1)")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("cue", help="learning curves on the cue env")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--timesteps", type=int, default=32_768)
    p.add_argument("--eval-every", type=int, default=4096)
    p.add_argument("--modes", nargs="+", choices=["learned", "random"], default=["learned", "random"])
    p.add_argument("--mix", nargs="+", choices=["linear", "relu"], default=["linear"],
                   help="the what/where mixing layer: linear (the reference) and/or with a ReLU after it")
    p.add_argument("--png", default=str(ROOT / "docs" / "img" / "saccader_cue.png"))
    p.add_argument("--out", default="runs/bench_saccader")
    p.set_defaults(func=cue)
    p = sub.add_parser("atari", help="PPO throughput, Saccader vs NatureCNN")
    p.add_argument("--game", default="breakout")
    p.add_argument("--timesteps", type=int, default=1024)
    p.add_argument("--n-envs", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--backend", default="ale")
    p.set_defaults(func=atari)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.func(args)


if __name__ == "__main__":
    main()
