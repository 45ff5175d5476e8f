"""What a trust table costs, per method and per part (``rl-saliency trust``).

    python benchmarks/trust.py [--model runs/x/model.zip --game ms_pacman] [--n-obs 32] [--atari-head DIR]
        [--methods ...] [--out /tmp/trust_bench]

Without ``--model`` an untrained NatureCNN PPO on Breakout is used (cost does not depend on the weights, only on
the architecture). Runs the whole table from scratch (``--overwrite``) at the command's defaults (deletion and
insertion with 20 steps, 1 noisy copy per observation for robustness, cascading randomisation on 8 observations,
gaze on the first 1,000 frames at stride 4 when ``--atari-head`` is given) and prints the CPU seconds (this
process; the fair figure on a shared machine) each part took for each method, the totals (CPU and wall clock),
and maps per CPU-second. Observations are collected once, before timing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from rl_saliency.trust import DEFAULT_METHODS, PARTS, trust_table


def untrained_model(folder: Path) -> Path:
    from stable_baselines3 import PPO

    from rl_saliency.envs import make_atari_vec_env

    venv = make_atari_vec_env("breakout", n_envs=1, backend="sb3")
    path = folder / "untrained_nature_breakout.zip"
    PPO("CnnPolicy", venv, n_steps=8, batch_size=8, device="cpu", seed=0).save(path)
    venv.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--game", default=None)
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--n-obs", type=int, default=32)
    parser.add_argument("--atari-head", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out or tempfile.mkdtemp(prefix="trust_bench_"))
    model = Path(args.model) if args.model else untrained_model(out)
    game = args.game or (None if args.model else "breakout")
    # observations first, untimed: the table then reuses them
    trust_table(model, out, game=game, methods=args.methods[:1], n_obs=args.n_obs, atari_head=args.atari_head,
                overwrite=True, progress=False)
    for stale in (out / "methods").glob("*.json"):
        stale.unlink()
    (out / "random.json").unlink()
    start = time.perf_counter()
    table = trust_table(model, out, game=game, methods=args.methods, n_obs=args.n_obs, atari_head=args.atari_head,
                        progress=False)
    total = time.perf_counter() - start
    columns = [f"cpu_seconds_{p}" for p in PARTS if table[f"cpu_seconds_{p}"].notna().any()]
    shown = table[["method", *columns, "maps_per_cpu_s"]].copy()
    shown["cpu_seconds_total"] = shown[columns].sum(axis=1)
    shown["seconds_total"] = table[[c.removeprefix("cpu_") for c in columns]].sum(axis=1)
    print(f"{model.name}, {args.n_obs} observations, torch threads {args.threads}")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"whole table (random baseline, tables and plot included): {total:.0f} s wall clock")


if __name__ == "__main__":
    main()
