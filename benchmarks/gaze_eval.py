"""Gaze evaluation speed and memory on the real Atari-HEAD trial (CPU), stage by stage, side by side.

Stages, each over the first ``--frames`` raw frames of the trial:
  stream   decode the PNGs from the tar.bz2 (frames/s)
  replay   stream + the agent's preprocessing into stacked observations (obs/s)
  maps     replay + fixation counts, blurred densities and shuffled-AUC negatives (obs/s)
  baselines  maps + every metric for the 3 baselines (obs/s; per method = x3)
  attention  baselines + an untrained Sparse FLS PPO's attention (obs/s)
and one full-trial pass of ``replay`` whose peak memory shows that a trial is never held in memory.

``baselines`` and ``attention`` run twice, side by side, ``--rounds`` times alternately: ``before``, the metrics as
they were before issue 17 (``rl_saliency/gaze/metrics.py`` at commit 5017d39, read from git: per-map loops for the
rank metrics, every metric redoing its own per-map work, for every method; frames decoded in the scoring thread),
and ``after``, the package's (batched, shared per batch, static maps done once; frames decoded ahead in a second
thread). Both must give the same table: the largest difference is printed. Rates are given per wall second and per
CPU second of the process (the second counts both threads).

    python benchmarks/gaze_eval.py --frames 2000
    python benchmarks/gaze_eval.py --frames 1000 --rounds 2 --skip-stages --skip-full   # before/after only
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import types
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rl_saliency.envs.replay import replay_observations
from rl_saliency.gaze import evaluator as E
from rl_saliency.gaze.data import Trial

BEFORE_COMMIT = "5017d39"  # the last commit before issue 17 changed the metrics


def metrics_before() -> types.ModuleType:
    """``rl_saliency/gaze/metrics.py`` as it was at ``BEFORE_COMMIT``, read from git (the benchmark's 'before')."""
    source = subprocess.run(["git", "show", f"{BEFORE_COMMIT}:rl_saliency/gaze/metrics.py"],
                            cwd=Path(__file__).parent, capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("_gaze_metrics_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up here
    exec(compile(source, f"{BEFORE_COMMIT}:rl_saliency/gaze/metrics.py", "exec"), module.__dict__)
    return module


DEFAULT_TRIAL = Path(__file__).resolve().parents[1].parent / "shared" / "atari_head" / "ms_pacman" / \
    "593_RZ_5037271_Aug-05-15-35-12"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def timed(label: str, fn, count_unit: str) -> dict:
    # the machine may be shared: report the process's CPU time beside wall time; rates are per CPU second
    tracemalloc.start()
    start, cpu_start = time.perf_counter(), time.process_time()
    count = fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    row = {"stage": label, "count": count, "seconds": seconds, "cpu_seconds": cpu, "rate": count / cpu,
           "wall_rate": count / seconds, "unit": count_unit, "traced_peak_mib": peak / 2**20,
           "rss_peak_mib": peak_rss_mib()}
    print(f"{label:17s} {count:6d} {count_unit:6s} wall {seconds:7.2f} s  cpu {cpu:7.2f} s  {row['wall_rate']:7.1f} "
          f"{count_unit}/s  {row['rate']:7.1f} {count_unit}/cpu-s  python-heap peak {row['traced_peak_mib']:5.1f} MiB  "
          f"process RSS peak {row['rss_peak_mib']:4.0f} MiB", flush=True)
    return row


def metrics_version(which: str) -> None:
    """Point the evaluator at the scoring of ``which``: ``before`` (issue 17's starting point) or ``after``."""
    if which == "before":  # and the frames decoded in the same thread as the scoring
        E.all_metrics_batch, E.prepare = metrics_before().all_metrics_batch, lambda maps: maps
        E.prefetched = iter
    else:
        from rl_saliency.gaze import metrics, prefetch

        E.all_metrics_batch, E.prepare, E.prefetched = metrics.all_metrics_batch, metrics.prepare, prefetch.prefetched


def largest_difference(a: pd.DataFrame, b: pd.DataFrame) -> float:
    from rl_saliency.gaze.metrics import METRICS

    x, y = a[list(METRICS)].to_numpy(), b[list(METRICS)].to_numpy()
    if not np.array_equal(np.isnan(x), np.isnan(y)):
        return float("inf")
    return float(np.nanmax(np.abs(x - y))) if np.isfinite(x).any() else 0.0


def attention_policy():
    from stable_baselines3 import PPO

    from rl_saliency.agents import SparseFLS
    from rl_saliency.envs import make_atari_vec_env

    venv = make_atari_vec_env("ms_pacman", n_envs=1, backend="sb3")
    model = PPO("CnnPolicy", venv, device="cpu", policy_kwargs={"features_extractor_class": SparseFLS})
    venv.close()
    with tempfile.TemporaryDirectory() as tmp:  # through a zip, as gaze-eval loads it
        model.save(Path(tmp) / "model.zip")
        (Path(tmp) / "config.yaml").write_text("game: ms_pacman\n")
        policy, _ = E.load_policy(Path(tmp) / "model.zip", None, device="cpu")
    return policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trial", default=str(DEFAULT_TRIAL), help="trial stem, txt or tar.bz2")
    parser.add_argument("--frames", type=int, default=2000, help="raw frames per timed stage")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--skip-full", action="store_true", help="skip the full-trial replay pass")
    parser.add_argument("--skip-stages", action="store_true", help="skip the stream, replay and maps stages")
    parser.add_argument("--rounds", type=int, default=1, help="before/after rounds, alternated")
    args = parser.parse_args()
    torch.set_num_threads(1)

    start = time.perf_counter()
    trial = Trial.open(args.trial)
    print(f"trial {trial.name}: {len(trial.gaze)} frames, {trial.gaze.n_samples} gaze samples; txt parsed in "
          f"{time.perf_counter() - start:.2f} s; torch threads 1")
    n = args.frames
    rows = []
    if not args.skip_stages:
        rows.append(timed("stream", lambda: sum(1 for _ in trial.frames(max_index=n)), "frames"))
        rows.append(timed("replay", lambda: sum(1 for _ in replay_observations(trial.frames(max_index=n))), "obs"))

    def maps_only() -> int:
        from rl_saliency.gaze.fixations import gaze_density, observation_counts, observation_indices, shuffled_negatives

        indices, _ = observation_indices(trial.gaze, max_index=n)
        rng = np.random.default_rng(0)
        done = 0
        batch: list[int] = []
        for i, _ in replay_observations(trial.frames(max_index=n), indices=indices):
            batch.append(i)
            if len(batch) == args.batch_size:
                counts = observation_counts(trial.gaze, batch, (84, 84))[0]
                gaze_density(counts)
                shuffled_negatives(trial.gaze, indices, [k - indices[0] for k in batch], rng, (84, 84))
                done += len(batch)
                batch = []
        return done + len(batch)

    if not args.skip_stages:
        rows.append(timed("maps", maps_only, "obs"))
    baselines = E.resolve_methods([], None)
    policy = attention_policy()
    with_attention = E.resolve_methods(["attention"], policy)
    tables: dict[str, pd.DataFrame] = {}

    def scored(label: str, which: str, model, methods) -> int:
        metrics_version(which)
        table = E.evaluate_trial(trial, model, methods, max_frames=n, progress=False, batch_size=args.batch_size)[0]
        tables[label] = table
        return len(table) // len(methods)

    for _ in range(args.rounds):
        for which in ("before", "after"):
            rows.append(timed(f"baselines-{which}", lambda w=which: scored(f"b-{w}", w, None, baselines), "obs"))
        for which in ("before", "after"):
            rows.append(timed(f"attention-{which}", lambda w=which: scored(f"a-{w}", w, policy, with_attention),
                              "obs"))
    metrics_version("after")
    print(f"largest |after - before| over every metric and row: baselines "
          f"{largest_difference(tables['b-before'], tables['b-after']):.3g}, attention "
          f"{largest_difference(tables['a-before'], tables['a-after']):.3g}")
    for stage in ("baselines", "attention"):
        ratios = [a["wall_rate"] / b["wall_rate"] for b, a in zip(
            [r for r in rows if r["stage"] == f"{stage}-before"], [r for r in rows if r["stage"] == f"{stage}-after"],
            strict=True)]
        cpu = [a["rate"] / b["rate"] for b, a in zip(
            [r for r in rows if r["stage"] == f"{stage}-before"], [r for r in rows if r["stage"] == f"{stage}-after"],
            strict=True)]
        print(f"{stage}: after / before, obs per wall second {', '.join(f'{x:.2f}x' for x in ratios)}; "
              f"per CPU second {', '.join(f'{x:.2f}x' for x in cpu)}")
    if not args.skip_full:
        rows.append(timed("full-replay", lambda: sum(1 for _ in replay_observations(trial.frames())), "obs"))
        print(f"full trial stream report: {trial.last_report.emitted} frames, peak reorder buffer "
              f"{trial.last_report.peak_buffer_frames} frames, issues: {trial.last_report.issues() or 'none'}")
    base = {r["stage"]: r["rate"] for r in rows}
    if "replay" in base:
        print("ratios (obs per cpu-s relative to replay): " + ", ".join(
            f"{k} {v / base['replay']:.3f}" for k, v in base.items() if k not in ("stream",)))


if __name__ == "__main__":
    main()
