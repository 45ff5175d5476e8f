"""Gaze evaluation speed and memory on the real Atari-HEAD trial (CPU): before and after, side by side.

Two variants of the whole ``evaluate_trial`` (decode + replay + fixation maps + the 8 metrics, for the 3 baselines,
and with an untrained Sparse FLS PPO's attention added), each in its own fresh Python process, alternated
``--rounds`` times, on the first ``--frames`` raw frames of the trial:

  before  the package as it was at commit ad90899 (issue 17's second step starts there), extracted from git into
          a temporary folder and put first on that process's path: frames decoded in a thread of the scoring
          process, metrics batched but redoing the static maps' work every batch
  after   this checkout's package: frames decoded and replayed in a separate process, the static maps' work done
          once per evaluation, ...

Both variants score the same model file (saved once); their tables must agree: the largest difference over every
metric and row is printed. Rates are observations per wall second (the target) and per CPU second of the
process and its children (the decoding process); peak memory: the scoring process's peak RSS, and the decoding
process's private memory at its end (its other pages are shared with the scoring process, forked from it).

Optional stages (``--stages``, after package, one process, no overlap): stream (PNG decode), replay, maps.

    python benchmarks/gaze_eval.py --frames 2000 --rounds 2
    python benchmarks/gaze_eval.py --frames 2000 --rounds 1 --stages
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE_COMMIT = "ad90899"
DEFAULT_TRIAL = ROOT.parent / "shared" / "atari_head" / "ms_pacman" / "593_RZ_5037271_Aug-05-15-35-12"


def extract_before(folder: Path) -> Path:
    """``rl_saliency/`` (and the game registry ``envs/``) at ``BEFORE_COMMIT``, from git, under ``folder``."""
    archive = subprocess.run(["git", "archive", BEFORE_COMMIT, "rl_saliency", "envs"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    folder.mkdir(parents=True, exist_ok=True)
    tar = folder / "before.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(folder, filter="data")
    return folder


def usage() -> tuple[float, float, float]:
    """CPU seconds of this process, of its reaped children, and this process's peak RSS in MiB."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime, me.ru_maxrss / 1024


def run_variant(args: argparse.Namespace) -> None:
    """In a fresh process: one evaluate_trial of the package first on sys.path; timings to ``--out`` (json) and the
    table beside it (parquet)."""
    import torch

    torch.set_num_threads(1)
    import rl_saliency
    from rl_saliency.gaze import evaluator as E
    from rl_saliency.gaze.data import Trial

    trial = Trial.open(args.trial)
    policy = None
    names: list[str] = []
    if args.model:
        policy, _ = E.load_policy(args.model, None, device="cpu")
        names = ["attention"]
    methods = E.resolve_methods(names, policy)
    E.evaluate_trial(trial, policy, methods, max_frames=20, progress=False)  # warm-up: imports, caches
    cpu0, child0, _ = usage()
    start = time.perf_counter()
    table = E.evaluate_trial(trial, policy, methods, max_frames=args.frames, progress=False,
                             batch_size=args.batch_size)[0]
    wall = time.perf_counter() - start
    cpu1, child1, rss = usage()
    try:
        from rl_saliency.gaze.prefetch import LAST_PRODUCER_PRIVATE_MIB
        child_private = LAST_PRODUCER_PRIVATE_MIB[0]
    except ImportError:  # the package before: no decoding process
        child_private = None
    table.to_parquet(Path(args.out).with_suffix(".parquet"), index=False)
    Path(args.out).write_text(json.dumps({
        "package": str(Path(rl_saliency.__file__).parent), "obs": len(table) // len(methods), "wall": wall,
        "cpu": cpu1 - cpu0, "children_cpu": child1 - child0, "rss_peak_mib": rss,
        "producer_private_mib": child_private}))


def variant(label: str, package_parent: Path, args: argparse.Namespace, model: Path | None, tmp: Path) -> dict:
    out = tmp / f"{label}.json"
    command = [sys.executable, __file__, "--variant-run", "--trial", args.trial, "--frames", str(args.frames),
               "--batch-size", str(args.batch_size), "--out", str(out)] + (["--model", str(model)] if model else [])
    env = {**os.environ, "PYTHONPATH": str(package_parent), "OMP_NUM_THREADS": "1"}
    subprocess.run(command, env=env, check=True, cwd=tmp)
    row = json.loads(out.read_text())
    row["label"], row["table"] = label, out.with_suffix(".parquet")
    print(f"{label:18s} {row['obs']:6d} obs  wall {row['wall']:6.2f} s  {row['obs'] / row['wall']:7.1f} obs/s  "
          f"cpu {row['cpu']:6.2f} s + children {row['children_cpu']:5.2f} s  "
          f"{row['obs'] / (row['cpu'] + row['children_cpu']):6.1f} obs/cpu-s  scoring RSS peak "
          f"{row['rss_peak_mib']:5.0f} MiB" + (f"  decoder private {row['producer_private_mib']:4.0f} MiB"
                                              if row.get("producer_private_mib") is not None else ""), flush=True)
    return row


def largest_difference(a: Path, b: Path) -> float:
    import numpy as np
    import pandas as pd

    from rl_saliency.gaze.metrics import METRICS

    x, y = pd.read_parquet(a), pd.read_parquet(b)
    ids = ["method", "frame_index", "n_fixations", "n_offscreen", "n_negatives", "map_finite"]
    if len(x) != len(y) or not x[ids].equals(y[ids]):
        return float("inf")
    x, y = x[list(METRICS)].to_numpy(), y[list(METRICS)].to_numpy()
    if not np.array_equal(np.isnan(x), np.isnan(y)):
        return float("inf")
    return float(np.nanmax(np.abs(x - y))) if np.isfinite(x).any() else 0.0


def save_attention_model(folder: Path) -> Path:
    """An untrained Sparse FLS PPO on Ms. Pac-Man, saved as gaze-eval loads it (the same weights for both)."""
    import torch
    from stable_baselines3 import PPO

    from rl_saliency.agents import SparseFLS
    from rl_saliency.envs import make_atari_vec_env

    torch.manual_seed(0)
    venv = make_atari_vec_env("ms_pacman", n_envs=1, backend="sb3")
    model = PPO("CnnPolicy", venv, device="cpu", seed=0, policy_kwargs={"features_extractor_class": SparseFLS})
    venv.close()
    model.save(folder / "model.zip")
    (folder / "config.yaml").write_text("game: ms_pacman\n")
    return folder / "model.zip"


def stages(args: argparse.Namespace) -> None:
    """stream, replay and maps of this checkout, one process, one thread."""
    import numpy as np

    from rl_saliency.envs.replay import replay_observations
    from rl_saliency.gaze.data import Trial
    from rl_saliency.gaze.fixations import gaze_density, observation_counts, observation_indices, shuffled_negatives

    trial = Trial.open(args.trial)
    n = args.frames

    def timed(label: str, fn) -> None:
        start, cpu = time.perf_counter(), time.process_time()
        count = fn()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(f"{label:18s} {count:6d} items wall {wall:6.2f} s  {count / wall:7.1f} /s  cpu {cpu:6.2f} s", flush=True)

    def maps_only() -> int:
        indices, _ = observation_indices(trial.gaze, max_index=n)
        rng, done, batch = np.random.default_rng(0), 0, []
        for i, _ in replay_observations(trial.frames(max_index=n), indices=indices):
            batch.append(i)
            if len(batch) == args.batch_size:
                counts = observation_counts(trial.gaze, batch, (84, 84))[0]
                gaze_density(counts)
                shuffled_negatives(trial.gaze, indices, [k - indices[0] for k in batch], rng, (84, 84))
                done, batch = done + len(batch), []
        return done + len(batch)

    timed("stream (frames)", lambda: sum(1 for _ in trial.frames(max_index=n)))
    timed("replay (obs)", lambda: sum(1 for _ in replay_observations(trial.frames(max_index=n))))
    timed("maps (obs)", maps_only)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trial", default=str(DEFAULT_TRIAL), help="trial stem, txt or tar.bz2")
    parser.add_argument("--frames", type=int, default=2000, help="raw frames per timed run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1, help="before/after rounds, alternated")
    parser.add_argument("--stages", action="store_true", help="also time stream, replay and maps alone")
    parser.add_argument("--only", choices=["before", "after"], help="run one variant only")
    parser.add_argument("--variant-run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant_run:
        return run_variant(args)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, {os.cpu_count()} CPUs, load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}; trial {Path(args.trial).name}, {args.frames} frames, "
          f"batch {args.batch_size}", flush=True)
    if args.stages:
        stages(args)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        before_parent = extract_before(tmp / "before")
        model = save_attention_model(Path(tempfile.mkdtemp(dir=tmp)))
        which = [args.only] if args.only else ["before", "after"]
        for r in range(args.rounds):
            for kind, model_path in (("baselines", None), ("attention", model)):
                for w in which:
                    parent = before_parent if w == "before" else ROOT
                    folder = tmp / f"round{r}"
                    folder.mkdir(exist_ok=True)
                    rows.append(variant(f"{kind}-{w}", parent, args, model_path, folder))
        if not args.only:
            for kind in ("baselines", "attention"):
                pairs = list(zip([r for r in rows if r["label"] == f"{kind}-before"],
                                 [r for r in rows if r["label"] == f"{kind}-after"], strict=True))
                diff = max(largest_difference(b["table"], a["table"]) for b, a in pairs)
                wall = ", ".join(f"{(a['obs'] / a['wall']) / (b['obs'] / b['wall']):.2f}x" for b, a in pairs)
                print(f"{kind}: largest |after - before| over every metric and row {diff:.3g}; after / before, "
                      f"obs per wall second {wall}")
    print(f"load average at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
