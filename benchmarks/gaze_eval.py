"""Gaze evaluation speed and memory on the real Atari-HEAD trial (CPU), stage by stage, side by side.

Stages, each over the first ``--frames`` raw frames of the trial:
  stream   decode the PNGs from the tar.bz2 (frames/s)
  replay   stream + the agent's preprocessing into stacked observations (obs/s)
  maps     replay + fixation counts, blurred densities and shuffled-AUC negatives (obs/s)
  baselines  maps + every metric for the 3 baselines (obs/s; per method = x3)
  attention  baselines + an untrained Sparse FLS PPO's attention (obs/s)
and one full-trial pass of ``replay`` whose peak memory shows that a trial is never held in memory.

    python benchmarks/gaze_eval.py --frames 2000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from rl_saliency.envs.replay import replay_observations
from rl_saliency.gaze import evaluator as E
from rl_saliency.gaze.data import Trial

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
           "unit": count_unit, "traced_peak_mib": peak / 2**20, "rss_peak_mib": peak_rss_mib()}
    print(f"{label:11s} {count:6d} {count_unit:6s} wall {seconds:7.2f} s  cpu {cpu:7.2f} s  {row['rate']:7.1f} "
          f"{count_unit}/cpu-s  python-heap peak {row['traced_peak_mib']:5.1f} MiB  process RSS peak "
          f"{row['rss_peak_mib']:4.0f} MiB", flush=True)
    return row


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
    args = parser.parse_args()
    torch.set_num_threads(1)

    start = time.perf_counter()
    trial = Trial.open(args.trial)
    print(f"trial {trial.name}: {len(trial.gaze)} frames, {trial.gaze.n_samples} gaze samples; txt parsed in "
          f"{time.perf_counter() - start:.2f} s; torch threads 1")
    n = args.frames
    rows = [timed("stream", lambda: sum(1 for _ in trial.frames(max_index=n)), "frames")]
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

    rows.append(timed("maps", maps_only, "obs"))
    baselines = E.resolve_methods([], None)
    rows.append(timed("baselines", lambda: len(E.evaluate_trial(trial, None, baselines, max_frames=n, progress=False,
                                                                 batch_size=args.batch_size)[0]) // 3, "obs"))
    policy = attention_policy()
    with_attention = E.resolve_methods(["attention"], policy)
    rows.append(timed("attention", lambda: len(E.evaluate_trial(
        trial, policy, with_attention, max_frames=n, progress=False, batch_size=args.batch_size)[0]) // 4, "obs"))
    if not args.skip_full:
        rows.append(timed("full-replay", lambda: sum(1 for _ in replay_observations(trial.frames())), "obs"))
        print(f"full trial stream report: {trial.last_report.emitted} frames, peak reorder buffer "
              f"{trial.last_report.peak_buffer_frames} frames, issues: {trial.last_report.issues() or 'none'}")
    base = {r["stage"]: r["rate"] for r in rows}
    print("ratios (obs per cpu-s relative to replay): " + ", ".join(
        f"{k} {v / base['replay']:.3f}" for k, v in base.items() if k not in ("stream",)))


if __name__ == "__main__":
    main()
