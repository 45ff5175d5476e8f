"""Faults with real processes (issue 14): two trainings into one folder, SIGTERM and kill -9 to a training, then
resume. Tiny budgets (rollouts of 2 envs x 64 steps), nice'd, one thread each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rl_saliency import io
from rl_saliency.models import load_model
from rl_saliency.train import list_checkpoints

PER_ROLLOUT = 128
TINY = ["--game", "breakout", "--n-envs", "2", "--set", "n_steps=64", "--set", "batch_size=128", "--set",
        "n_epochs=1", "--no-progress", "--device", "cpu"]


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(["nice", "-n", "5", sys.executable, "-m", "rl_saliency.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout: float = 240.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended early ({proc.returncode}): {proc.communicate()[1][-2000:]}")
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def metrics_rows(run: Path) -> int:
    try:
        return len(pd.read_csv(run / "metrics.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


def check_finished(run: Path, budget: int) -> None:
    """The run ends exactly at its budget and metrics.csv is one unbroken series (as if never stopped)."""
    assert load_model(run / "model.zip", device="cpu").num_timesteps == budget
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["time/total_timesteps"].tolist() == list(range(PER_ROLLOUT, budget + 1, PER_ROLLOUT))
    assert metrics["time/iterations"].tolist() == list(range(1, budget // PER_ROLLOUT + 1))
    assert metrics["train/n_updates"].iloc[1:].tolist() == list(range(1, budget // PER_ROLLOUT))
    assert not [p for p in run.rglob(".*") if io.TEMP_RE.match(p.name)]
    assert not (run / io.LOCK_NAME).exists()


@pytest.mark.slow
def test_a_second_training_into_the_same_folder_is_refused_and_the_first_is_kept(tmp_path):
    run = tmp_path / "run"
    first = start("train", "--timesteps", "384", "--seed", "1", "--out", str(run), *TINY)
    try:
        wait_for(lambda: (run / "config.yaml").exists(), proc=first)  # written with the lock held
        second = start("train", "--timesteps", "384", "--seed", "2", "--out", str(run), *TINY)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2, err
        assert err.strip().splitlines() == [
            line for line in err.strip().splitlines() if line.startswith("rl-saliency train: error:")]
        assert f"output folder {run} is in use by pid {first.pid}" in err and "train --timesteps 384 --seed 1" in err
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
    finally:
        first.kill()
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 1  # was the second's: the first was lost
    check_finished(run, 384)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_reaches_exactly_the_budget(tmp_path):
    run = tmp_path / "run"
    # no periodic checkpoint before the end: whatever is saved, SIGTERM saved it
    proc = start("train", "--timesteps", "512", "--checkpoint-freq", "500", "--out", str(run), *TINY)
    try:
        wait_for(lambda: metrics_rows(run) >= 2, proc=proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM): saved" in err and "Traceback" not in err
    (checkpoint,) = list_checkpoints(run / "checkpoints")
    steps = load_model(checkpoint, device="cpu").num_timesteps
    assert steps >= PER_ROLLOUT and steps % PER_ROLLOUT == 0  # the start of the rollout under way
    assert not (run / io.LOCK_NAME).exists()

    resumed = start("train", "--resume", "--out", str(run), "--no-progress")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"from {checkpoint.name} ({steps}/512 steps)" in err
    check_finished(run, 512)


@pytest.mark.slow
def test_kill_9_leaves_nothing_that_the_resume_does_not_clean_up(tmp_path):
    run = tmp_path / "run"
    proc = start("train", "--timesteps", "512", "--checkpoint-freq", "128", "--out", str(run), *TINY)
    try:
        wait_for(lambda: len(list_checkpoints(run / "checkpoints")) >= 1, proc=proc)
        # what a kill during a checkpoint's write leaves (the real one may leave one too)
        (run / "checkpoints" / ".ckpt_384_steps.zip.k9x2m4q7.tmp.zip").write_bytes(b"\0" * 100_000)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert (run / io.LOCK_NAME).exists()  # the dead run's lock, with its pid
    resumed = start("train", "--resume", "--out", str(run), "--no-progress")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"was held by pid {proc.pid}" in err and "no longer running" in err
    assert "temporary file(s)" in err and "left in" in err
    check_finished(run, 512)
