"""One task of a sweep: train -> evaluate -> gaze-evaluate one grid cell, resumable step by step.

The task works in ``<out>/.partial/<key>/``; each step leaves a marker there (``train.json``,
``eval/evaluation.json``, ``gaze/per_game.csv``), so a retried or resumed task skips the steps already done.
The folder moves into ``tasks/`` in one ``os.replace`` once ``result.json`` is written.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl_saliency import io
from rl_saliency.errors import DataError
from rl_saliency.sweep import layout
from rl_saliency.sweep.grid import Task

EVAL_EPISODES = 10  # evaluate.episodes when the grid does not say
EVAL_FILE = Path("eval") / "evaluation.json"  # written atomically, last, by evaluate: marks the step done
GAZE_FILE = Path("gaze") / "per_game.csv"  # written last by gaze-eval, which resumes by trial

Step = Callable[[Task, Path], None]


def train_step(task: Task, work: Path) -> None:
    """Train the cell's spec into ``work/run``; a run folder left by a killed attempt resumes from its
    checkpoints."""
    from rl_saliency.agents.spec import spec_from_dict
    from rl_saliency.train import CONFIG_FILE, train

    run, spec_file = work / "run", work / "spec.yaml"
    if not spec_file.exists():  # the exact spec of this cell: `rl-saliency train --agent <it>` reproduces it
        io.write_yaml(spec_file, task.spec)
    spec = spec_from_dict(task.spec, spec_file)
    opts = dict(task.train)
    timesteps = int(opts.pop("timesteps", None) or spec.n_timesteps)
    resume = (run / CONFIG_FILE).exists()
    train(spec, task.game, timesteps, run, seed=task.seed, resume=resume, progress=False, **opts)


def evaluate_step(task: Task, work: Path) -> None:
    from rl_saliency.evaluate import evaluate
    from rl_saliency.train import MODEL_FILE

    opts = {"episodes": EVAL_EPISODES, **task.evaluate}
    evaluate(work / "run" / MODEL_FILE, game=task.game, seed=task.seed, out=work / EVAL_FILE.parent,
             progress=False, **opts)


def gaze_step(task: Task, work: Path) -> None:
    from rl_saliency.gaze.evaluator import gaze_eval
    from rl_saliency.train import MODEL_FILE

    opts = dict(task.gaze or {})
    data, method = opts.pop("data"), opts.pop("method")
    gaze_eval(work / "run" / MODEL_FILE, data, work / GAZE_FILE.parent, methods=[method], game=task.game,
              seed=task.seed, progress=False, **opts)


@dataclass(frozen=True)
class Steps:
    """The three steps of a task. The tests' seam: ``run_task(..., steps=Steps(evaluate=flaky))`` replaces one
    (a stand-in, or a wrapper that fails or kills its worker once) without touching the rest."""

    train: Step = train_step
    evaluate: Step = evaluate_step
    gaze: Step = gaze_step


def _score_summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The score fields of ``rl_saliency.evaluate.evaluate``'s summary (whole games, raw scores)."""
    return {"score": evaluation["score_mean"], "score_std": evaluation["score_std"],
            "episodes": evaluation["episodes"], "length": evaluation.get("length_mean")}


def _gaze_metrics(per_game_csv: Path, method: str) -> dict[str, float]:
    """The mean of each gaze metric for the agent's method (gaze-eval's per-game table, one game)."""
    import pandas as pd

    per_game = pd.read_csv(per_game_csv)
    rows = per_game[per_game["method"] == method]
    if rows.empty:
        raise DataError(f"{per_game_csv} has no row for method {method!r} (no observation was scored)")
    row = rows.iloc[0]
    return {c[: -len("_mean")]: float(row[c]) for c in per_game.columns if c.endswith("_mean")}


def _timed(step: Step, task: Task, work: Path) -> float:
    t0 = time.time()
    step(task, work)
    return time.time() - t0


def run_task(task: Task | dict[str, Any], out: str | Path, steps: Steps | None = None) -> dict[str, Any]:
    """Train, evaluate and gaze-evaluate one grid cell; return (and store) its result."""
    task = Task(**task) if isinstance(task, dict) else task
    steps = steps or Steps()
    out = Path(out)
    final, work = out / layout.TASKS_DIR / task.key, out / layout.PARTIAL_DIR / task.key
    if (final / layout.RESULT_FILE).exists():  # finished by an earlier attempt whose reply was lost
        return layout.read_json(final / layout.RESULT_FILE)
    attempt = sum(e["event"] == "start" for e in layout.read_log(out, task.key)) + 1
    layout.log(out, task.key, "start", attempt=attempt)
    if work.exists() and (not (work / "task.json").exists()
                          or layout.read_json(work / "task.json") != task.config()):
        shutil.rmtree(work)  # left by a task with another config: its partial results do not apply
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "task.json").exists():
        io.write_json(work / "task.json", task.config())

    started = time.time()
    if not (work / "train.json").exists():
        seconds = _timed(steps.train, task, work)
        io.write_json(work / "train.json", {"seconds": seconds})
        layout.log(out, task.key, "train", seconds=seconds)
    if not (work / EVAL_FILE).exists():
        layout.log(out, task.key, "evaluate", seconds=_timed(steps.evaluate, task, work))
    evaluation = layout.read_json(work / EVAL_FILE)
    gaze = None
    if task.gaze:
        if not (work / GAZE_FILE).exists():
            layout.log(out, task.key, "gaze", seconds=_timed(steps.gaze, task, work))
        gaze = _gaze_metrics(work / GAZE_FILE, task.gaze["method"])

    result = {"key": task.key, "game": task.game, "agent": task.agent, "seed": task.seed,
              **_score_summary(evaluation), "gaze": gaze, "attempts": attempt, "host": socket.gethostname(),
              "seconds": time.time() - started, "finished": time.time(), "config": task.config()}
    io.write_json(work / layout.RESULT_FILE, result)
    layout.place(work, final)
    layout.log(out, task.key, "done", attempt=attempt)
    return result
