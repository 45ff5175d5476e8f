"""Experiment sweeps: a grid of games x agents x seeds, each cell trained, evaluated and scored against gaze.

One task per (game, agent, seed) runs on Ray (a local instance by default, or an existing cluster via
``--address``), or serially in this process with ``--local`` (Ray not needed). A task works in
``<out>/.partial/<key>/`` and moves its folder into ``<out>/tasks/<key>/`` with one ``os.replace`` when it
is done, so a finished task is never run again and a killed one resumes from its last finished step
(training itself resumes from its checkpoints). Results are aggregated into one table in the FLS paper's
layout (games as rows, agents as columns; mean and std over seeds) as CSV and markdown, plus plots.

Grid file (YAML)::

    games: [breakout, ms_pacman]
    agents:
      - nature                        # a spec in agents/ (or a path to a spec file)
      - name: fls_tiny                # a spec with overrides (column name: fls_tiny)
        spec: fls_sparse
        n_envs: 2
        hyperparams: {n_steps: 64, batch_size: 64}
    seeds: 3                          # or a list [0, 1, 2]
    train: {timesteps: 1.0e7, backend: ale, device: auto}
    evaluate: {episodes: 10}
    gaze: {data: /data/atari_head, method: attention}   # optional
    resources: {num_cpus: 4, num_gpus: 0.25}           # per task
    max_retries: 2
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import math
import os
import re
import shutil
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rl_saliency import io
from rl_saliency.errors import ClusterError, DataError, OptionError, SpecError, check_count

TASKS_DIR = "tasks"
PARTIAL_DIR = ".partial"
FAILED_DIR = "failed"
LOGS_DIR = "logs"
INJECT_DIR = ".inject"  # test hooks: <key>.fail_once raises once, <key>.crash_once kills the worker once
RESULT_FILE = "result.json"
GRID_KEYS = {"name", "games", "agents", "seeds", "train", "evaluate", "gaze", "resources", "max_retries"}
TRAIN_KEYS = {"timesteps", "n_envs", "backend", "device", "checkpoint_freq"}
# arguments the sweep sets itself for each task (not grid options)
RESERVED = {"model_path", "model", "game", "games", "seed", "out", "progress", "atari_head", "methods"}
RESOURCE_KEYS = {"num_cpus", "num_gpus", "memory", "resources"}
# options that are counts, checked when the grid is read (section -> option -> minimum)
COUNT_OPTIONS = {"train": {"timesteps": 1, "n_envs": 1, "checkpoint_freq": 1},
                 "evaluate": {"episodes": 1, "n_envs": 1, "max_frames": 1},
                 "gaze": {"batch_size": 1, "stride": 1, "max_frames": 14}}
DEVICES = ("auto", "cpu", "cuda")
SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# metric columns, in the order the tables list them (others follow alphabetically)
METRIC_ORDER = ["score", "nss", "auc_judd", "auc_borji", "shuffled_auc", "kl_div", "cc", "sim", "info_gain"]


class InjectedFailure(RuntimeError):
    """Raised by a task whose ``fail_once`` marker is present (fault-tolerance tests)."""


# ---------------------------------------------------------------------------------------------- grid


@dataclass
class Task:
    """One cell of the grid: everything a worker needs, as plain data (Ray ships it by value)."""

    game: str
    agent: str
    seed: int
    spec: dict[str, Any]  # the agent spec with the grid's overrides applied
    train: dict[str, Any]
    evaluate: dict[str, Any]
    gaze: dict[str, Any] | None  # None: no Atari-HEAD data for this game in the grid

    @property
    def key(self) -> str:
        return f"{self.game}__{self.agent}__seed{self.seed}"

    def config(self) -> dict[str, Any]:
        """What defines the task's results; a finished task with another config is a conflict."""
        return json.loads(json.dumps(asdict(self), default=str))


@dataclass
class Grid:
    path: Path
    name: str
    games: list[str]
    agents: dict[str, dict[str, Any]]  # column name -> agent spec dict, in grid order
    seeds: list[int]
    train: dict[str, Any] = field(default_factory=dict)
    evaluate: dict[str, Any] = field(default_factory=dict)
    gaze: dict[str, Any] | None = None
    resources: dict[str, Any] = field(default_factory=lambda: {"num_cpus": 1})
    max_retries: int = 2

    def tasks(self) -> list[Task]:
        """Tasks in grid order: game, then agent, then seed."""
        return [Task(game=game, agent=agent, seed=seed, spec=copy.deepcopy(spec), train=dict(self.train),
                     evaluate=dict(self.evaluate), gaze=self.gaze_for(game, agent))
                for game in self.games for agent, spec in self.agents.items() for seed in self.seeds]

    def gaze_for(self, game: str, agent: str | None = None) -> dict[str, Any] | None:
        """Gaze-eval settings for one cell: its game's Atari-HEAD folder and the agent's saliency method.
        None when the grid gives no Atari-HEAD data for the game."""
        if not self.gaze:
            return None
        from rl_saliency.envs.registry import resolve_game

        data = self.gaze["data"]
        if isinstance(data, dict):  # game -> folder of trials
            folder = data.get(game)
        else:  # an Atari-HEAD root holding <atari_head name>/<trial>.txt; games it lacks are not gaze-evaluated
            atari_head = resolve_game(game).atari_head
            folder = str(Path(data) / atari_head) if atari_head and (Path(data) / atari_head).is_dir() else None
        if not folder:
            return None
        options = {k: v for k, v in self.gaze.items() if k not in ("data", "method", "agent_methods")}
        method = (self.gaze.get("agent_methods") or {}).get(agent, self.gaze.get("method", "attention"))
        return {"data": folder, "method": method, **options}


def _merge_spec(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides replace fields; dict fields (hyperparams, policy_kwargs, ...) are merged key by key."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _load_agent(entry: Any, path: Path) -> tuple[str, dict[str, Any]]:
    from rl_saliency.agents.spec import load_spec, spec_from_dict
    from rl_saliency.models import ALGOS

    if isinstance(entry, str):
        entry = {"spec": entry}
    if not isinstance(entry, dict) or "spec" not in entry and "name" not in entry:
        raise SpecError(f"grid {path}: each agent must be a spec name/path or a mapping with 'spec', got {entry!r}")
    entry = dict(entry)
    base_name = entry.pop("spec", None) or entry["name"]
    try:
        base = load_spec(base_name)
    except SpecError as err:
        raise SpecError(f"grid {path}: {err}") from err
    name = entry.pop("name", None) or base.name
    if not SAFE_NAME.match(str(name)):
        raise SpecError(f"grid {path}: agent name {name!r} may only use letters, digits, '_', '.' and '-'")
    merged = _merge_spec(base.to_dict(), entry)
    merged["name"] = name
    # validate now, not in a worker an hour from now
    spec = spec_from_dict(merged, f"in grid {path}: agent {name}")
    accepted = set(inspect.signature(ALGOS[spec.algo].__init__).parameters) - {"self", "policy", "env"}
    unknown = sorted(set(spec.hyperparams) - accepted)
    if unknown:
        raise SpecError(f"grid {path}: agent {name}: {spec.algo.upper()} has no hyperparameters {unknown}")
    return name, merged


def _seeds(value: Any, path: Path) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        if len(set(value)) != len(value):
            raise SpecError(f"grid {path}: seeds {value} repeat a seed")
        return list(value)
    raise SpecError(f"grid {path}: seeds must be a positive count or a list of integers, got {value!r}")


def _section(raw: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise SpecError(f"grid {path}: '{key}' must be a mapping, got {value!r}")
    return dict(value)


def _check_kwargs(func: Callable | None, kwargs: dict[str, Any], what: str, path: Path) -> None:
    """Unknown options fail when the grid is read, naming the grid file and the accepted options."""
    if func is None:  # the module is not installed here; its workers will complain instead
        return
    params = set(inspect.signature(func).parameters) - RESERVED
    bad = sorted(set(kwargs) - params)
    if bad:
        raise SpecError(f"grid {path}: unknown or reserved {what} options {bad}; allowed: {sorted(params)}")


def _check_values(section: str, options: dict[str, Any], path: Path) -> dict[str, Any]:
    """Counts (timesteps, episodes, ...) and choices (backend, device) of a section, checked now rather than in
    a worker after an hour of training; counts come back as ints (``timesteps: 1.0e7`` -> 10000000)."""
    from rl_saliency.envs import BACKENDS

    options = dict(options)
    for key, minimum in COUNT_OPTIONS.get(section, {}).items():
        if key in options and options[key] is not None:
            try:
                options[key] = check_count(options[key], f"{section}.{key}", minimum)
            except OptionError as err:
                raise SpecError(f"grid {path}: {err}") from err
    if "backend" in options and options["backend"] not in BACKENDS:
        raise SpecError(f"grid {path}: {section}.backend must be one of {', '.join(BACKENDS)}, "
                        f"got {options['backend']!r}")
    if "device" in options and options["device"] not in DEVICES:
        raise SpecError(f"grid {path}: {section}.device must be one of {', '.join(DEVICES)}, "
                        f"got {options['device']!r}")
    return options


def _optional_attr(module_name: str, attr: str) -> Callable | None:
    import importlib

    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        return None


def _gaze_section(gaze: Any, agents: dict[str, Any], path: Path) -> dict[str, Any] | None:
    """``data`` (an Atari-HEAD root, or game -> folder), ``method`` (default attention), ``agent_methods``
    (agent -> method, for agents without built-in attention) and options of ``gaze_eval`` (max_frames, ...)."""
    from rl_saliency.envs.registry import resolve_game

    if gaze is None:
        return None
    if not isinstance(gaze, dict) or not gaze.get("data"):
        raise SpecError(f"grid {path}: 'gaze' needs 'data': an Atari-HEAD root folder, or a mapping "
                        f"game -> folder of trials")
    gaze = dict(gaze)
    if isinstance(gaze["data"], dict):
        gaze["data"] = {resolve_game(str(g)).name: str(Path(str(d)).expanduser().resolve())
                        for g, d in gaze["data"].items()}
        folders = list(gaze["data"].values())
    else:
        gaze["data"] = str(Path(str(gaze["data"])).expanduser().resolve())
        folders = [gaze["data"]]
    missing = [f for f in folders if not Path(f).exists()]
    if missing:
        raise SpecError(f"grid {path}: gaze data {', '.join(missing)} does not exist")
    agent_methods = gaze.get("agent_methods") or {}
    if not isinstance(agent_methods, dict) or set(agent_methods) - set(agents):
        raise SpecError(f"grid {path}: gaze.agent_methods must map agents of the grid ({', '.join(agents)}) to "
                        f"saliency methods, got {agent_methods!r}")
    options = {k: v for k, v in gaze.items() if k not in ("data", "method", "agent_methods")}
    _check_kwargs(_optional_attr("rl_saliency.gaze.evaluator", "gaze_eval"), options, "gaze", path)
    gaze.update(_check_values("gaze", options, path))
    known = _optional_attr("rl_saliency.saliency.base", "available_methods")
    if known is not None:
        methods = known()
        bad = sorted({str(m) for m in [gaze.get("method", "attention"), *agent_methods.values()]} - set(methods))
        if bad:
            raise SpecError(f"grid {path}: unknown saliency methods {bad} in gaze; available: {', '.join(methods)}")
    return gaze


def load_grid(path: str | Path) -> Grid:
    """Read and validate a grid file; every problem is a SpecError naming the file."""
    from rl_saliency.envs.registry import UnknownGameError, resolve_game

    path = Path(path)
    if not path.exists():
        raise SpecError(f"grid file {path} does not exist")
    raw = io.read_yaml(path, "grid", SpecError)
    if not isinstance(raw, dict):
        raise SpecError(f"grid {path} must be a mapping with games, agents and seeds")
    unknown = set(raw) - GRID_KEYS
    if unknown:
        raise SpecError(f"grid {path}: unknown keys {sorted(unknown)}; allowed: {sorted(GRID_KEYS)}")
    for key in ("games", "agents"):
        if not isinstance(raw.get(key), list) or not raw[key]:
            raise SpecError(f"grid {path}: '{key}' must be a non-empty list")

    try:
        games = [resolve_game(str(g)).name for g in raw["games"]]
    except UnknownGameError as err:
        raise UnknownGameError(f"grid {path}: {err}") from err
    if len(set(games)) != len(games):
        raise SpecError(f"grid {path}: games {raw['games']} name a game twice")
    agents: dict[str, dict[str, Any]] = {}
    for entry in raw["agents"]:
        name, spec = _load_agent(entry, path)
        if name in agents:
            raise SpecError(f"grid {path}: two agents are named {name!r}; give one a 'name'")
        agents[name] = spec

    train = _section(raw, "train", path)
    if set(train) - TRAIN_KEYS:
        raise SpecError(f"grid {path}: unknown train options {sorted(set(train) - TRAIN_KEYS)}; "
                        f"allowed: {sorted(TRAIN_KEYS)}")
    train = _check_values("train", train, path)
    evaluate = _section(raw, "evaluate", path)
    _check_kwargs(_optional_attr("rl_saliency.evaluate", "evaluate"), evaluate, "evaluate", path)
    evaluate = _check_values("evaluate", evaluate, path)

    gaze = _gaze_section(raw.get("gaze"), agents, path)
    resources = {"num_cpus": 1, **_section(raw, "resources", path)}
    if set(resources) - RESOURCE_KEYS:
        raise SpecError(f"grid {path}: unknown resources {sorted(set(resources) - RESOURCE_KEYS)}; "
                        f"allowed: {sorted(RESOURCE_KEYS)}")
    for key in ("num_cpus", "num_gpus"):
        if key in resources and not (isinstance(resources[key], int | float) and resources[key] >= 0):
            raise SpecError(f"grid {path}: resources.{key} must be a number >= 0, got {resources[key]!r}")
    max_retries = raw.get("max_retries", 2)
    if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
        raise SpecError(f"grid {path}: max_retries must be an integer >= 0, got {max_retries!r}")

    return Grid(path=path, name=str(raw.get("name") or path.stem), games=games, agents=agents,
                seeds=_seeds(raw.get("seeds", 1), path), train=train, evaluate=evaluate, gaze=gaze,
                resources=resources, max_retries=max_retries)


# ---------------------------------------------------------------------------------------------- task


def _write_json(path: Path, data: Any) -> None:
    io.write_json(path, data)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _log(out: Path, key: str, event: str, **fields: Any) -> None:
    """Append one line to the task's event log (attempts, steps, failures): the sweep's audit trail."""
    line = {"time": time.time(), "event": event, "host": socket.gethostname(), "pid": os.getpid(), **fields}
    with open(out / LOGS_DIR / f"{key}.jsonl", "a") as handle:
        handle.write(json.dumps(line, default=str) + "\n")


def read_log(out: str | Path, key: str) -> list[dict[str, Any]]:
    """The event log of one task (``start``, ``train``, ``evaluate``, ``gaze``, ``done``, ``failed`` lines)."""
    path = Path(out) / LOGS_DIR / f"{key}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _consume(marker: Path) -> bool:
    """Remove a marker file; True only for the one caller that removed it."""
    try:
        marker.unlink()
        return True
    except FileNotFoundError:
        return False


def _inject_faults(out: Path, key: str, allow_crash: bool) -> None:
    if _consume(out / INJECT_DIR / f"{key}.fail_once"):
        raise InjectedFailure(f"task {key}: injected failure (fail_once marker)")
    if allow_crash and _consume(out / INJECT_DIR / f"{key}.crash_once"):
        os._exit(17)  # a killed worker, as Ray sees an OOM kill or a lost node


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


def _train_step(task: Task, work: Path) -> None:
    from rl_saliency.agents.spec import spec_from_dict
    from rl_saliency.train import train

    run, spec_file = work / "run", work / "spec.yaml"
    if not spec_file.exists():  # the exact spec of this cell: `rl-saliency train --agent <it>` reproduces it
        io.write_yaml(spec_file, task.spec)
    spec = spec_from_dict(task.spec, spec_file)
    opts = dict(task.train)
    timesteps = int(opts.pop("timesteps", None) or spec.n_timesteps)
    # a run folder left by a killed attempt: continue from its last checkpoint instead of starting over
    resume = (run / "config.yaml").exists()
    train(spec, task.game, timesteps, run, seed=task.seed, resume=resume, progress=False, **opts)


def _evaluate_step(task: Task, work: Path) -> None:
    from rl_saliency.evaluate import evaluate

    opts = {"episodes": 10, **task.evaluate}
    evaluate(work / "run" / "model.zip", game=task.game, seed=task.seed, out=work / "eval", progress=False, **opts)


def _gaze_step(task: Task, work: Path) -> None:
    from rl_saliency.gaze.evaluator import gaze_eval

    opts = dict(task.gaze or {})
    data, method = opts.pop("data"), opts.pop("method")
    gaze_eval(work / "run" / "model.zip", data, work / "gaze", methods=[method], game=task.game,
              seed=task.seed, progress=False, **opts)


def run_task(task: Task | dict[str, Any], out: str | Path, allow_crash: bool = False) -> dict[str, Any]:
    """Train, evaluate and gaze-evaluate one grid cell; return (and store) its result.

    Each step leaves a marker in the task's partial folder, so a retried or resumed task skips the steps
    already done; the folder moves into ``tasks/`` in one ``os.replace`` once the result is written.
    """
    task = Task(**task) if isinstance(task, dict) else task
    out = Path(out)
    final, work = out / TASKS_DIR / task.key, out / PARTIAL_DIR / task.key
    if (final / RESULT_FILE).exists():  # finished by an earlier attempt whose reply was lost
        return _read_json(final / RESULT_FILE)
    attempt = sum(e["event"] == "start" for e in read_log(out, task.key)) + 1
    _log(out, task.key, "start", attempt=attempt)
    if work.exists() and (not (work / "task.json").exists() or _read_json(work / "task.json") != task.config()):
        shutil.rmtree(work)  # left by a task with another config: its partial results do not apply
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "task.json").exists():
        _write_json(work / "task.json", task.config())

    started = time.time()
    if not (work / "train.json").exists():
        t0 = time.time()
        _train_step(task, work)
        _write_json(work / "train.json", {"seconds": time.time() - t0})
        _log(out, task.key, "train", seconds=time.time() - t0)
    _inject_faults(out, task.key, allow_crash)  # after training: a retry must reuse the trained model

    if not (work / "eval" / "evaluation.json").exists():  # written atomically, last, by evaluate
        t0 = time.time()
        _evaluate_step(task, work)
        _log(out, task.key, "evaluate", seconds=time.time() - t0)
    evaluation = _read_json(work / "eval" / "evaluation.json")

    gaze = None
    if task.gaze:
        if not (work / "gaze" / "per_game.csv").exists():  # written last by gaze-eval, which resumes by trial
            t0 = time.time()
            _gaze_step(task, work)
            _log(out, task.key, "gaze", seconds=time.time() - t0)
        gaze = _gaze_metrics(work / "gaze" / "per_game.csv", task.gaze["method"])

    result = {"key": task.key, "game": task.game, "agent": task.agent, "seed": task.seed,
              **_score_summary(evaluation), "gaze": gaze, "attempts": attempt, "host": socket.gethostname(),
              "seconds": time.time() - started, "finished": time.time(), "config": task.config()}
    _write_json(work / RESULT_FILE, result)
    _place(work, final)
    _log(out, task.key, "done", attempt=attempt)
    return result


def _place(work: Path, final: Path) -> None:
    """Move a finished task folder into place in one rename (a half-moved folder never exists)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # a folder without result.json: an interrupted driver-side copy, not a result
        shutil.rmtree(final)
    os.replace(work, final)


# ---------------------------------------------------------------------------------------------- driver


@dataclass
class SweepReport:
    out: Path
    done: list[str]  # keys finished in this call
    skipped: list[str]  # keys already finished before this call
    failed: dict[str, str]  # key -> last error
    table: Any = None  # the aggregated pandas table (None when no task has finished)

    @property
    def ok(self) -> bool:
        return not self.failed


def task_status(out: str | Path, task: Task) -> str:
    """``done``, ``partial`` (started, not finished), ``failed`` (retries exhausted) or ``pending``."""
    out = Path(out)
    if (out / TASKS_DIR / task.key / RESULT_FILE).exists():
        return "done"
    if (out / FAILED_DIR / f"{task.key}.json").exists():
        return "failed"
    return "partial" if (out / PARTIAL_DIR / task.key).exists() else "pending"


def _check_done_config(out: Path, task: Task) -> None:
    stored = _read_json(out / TASKS_DIR / task.key / RESULT_FILE).get("config")
    if stored != task.config():
        raise SpecError(f"sweep {out}: task {task.key} finished with another configuration than grid now gives; "
                        f"use a new --out, or delete {out / TASKS_DIR / task.key} to rerun it")


def _prepare_out(grid: Grid, out: Path) -> None:
    for sub in (TASKS_DIR, PARTIAL_DIR, FAILED_DIR, LOGS_DIR, INJECT_DIR):
        (out / sub).mkdir(parents=True, exist_ok=True)
    # the grid as resolved, for aggregation (row and column order) and for the record
    io.write_yaml(out / "grid.yaml", {"name": grid.name, "source": str(grid.path.resolve()), "games": grid.games,
                                      "agents": list(grid.agents), "seeds": grid.seeds})


def _record_failure(out: Path, task: Task, error: str) -> None:
    _log(out, task.key, "failed", error=error.strip().splitlines()[-1] if error.strip() else error)
    _write_json(out / FAILED_DIR / f"{task.key}.json", {"key": task.key, "error": error, "time": time.time()})


def _ensure_result(out: Path, task: Task, result: dict[str, Any]) -> None:
    """Store a result returned by a worker whose filesystem is not this one (no shared --out on the cluster)."""
    final = out / TASKS_DIR / task.key
    if (final / RESULT_FILE).exists():
        return
    staging = out / PARTIAL_DIR / f"{task.key}.from-{result.get('host', 'worker')}"
    staging.mkdir(parents=True, exist_ok=True)
    _write_json(staging / RESULT_FILE, result)
    _place(staging, final)


def _run_local(tasks: list[Task], out: Path, max_retries: int, task_fn: Callable, progress: bool,
               report: SweepReport) -> None:
    from tqdm import tqdm

    for task in tqdm(tasks, desc="sweep (local)", unit="task", disable=not progress):
        for attempt in range(max_retries + 1):
            try:
                result = task_fn(task, out)
            except Exception:  # noqa: BLE001 - any task error is retried, then recorded; the sweep goes on
                error = traceback.format_exc()
                if attempt == max_retries:
                    _record_failure(out, task, error)
                    report.failed[task.key] = error.strip().splitlines()[-1]
                    print(f"sweep: task {task.key} failed after {attempt + 1} attempts: "
                          f"{report.failed[task.key]}", file=sys.stderr)
                continue
            _ensure_result(out, task, result)
            report.done.append(task.key)
            break


def _ray_task(task: dict[str, Any], out: str) -> dict[str, Any]:
    """The function Ray runs: a real worker may crash (``crash_once``), and threads match its CPU share."""
    import ray
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    return run_task(task, out, allow_crash=True)


def _init_ray(address: str | None, num_cpus: int | None) -> bool:
    """Connect to a cluster, or start a local instance; True when this call started Ray (so it stops it)."""
    try:
        import ray
    except ImportError as err:
        raise ClusterError("this sweep needs Ray: pip install 'rl-saliency[distributed]', "
                           "or run it with --local") from err
    if ray.is_initialized():
        return False
    if address:
        try:
            ray.init(address=address, log_to_driver=True)
        except (ConnectionError, RuntimeError, TimeoutError) as err:
            hint = ("is the cluster up (`ray status` on its head)? If it uses token authentication, set "
                    "RAY_AUTH_MODE=token here and give this machine the cluster's token (~/.ray/auth_token)")
            raise ClusterError(f"cannot connect to the Ray cluster at {address!r}: {err}; {hint}") from err
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False)
    return True


def _run_ray(tasks: list[Task], out: Path, grid: Grid, task_fn: Callable | None, progress: bool,
             report: SweepReport) -> None:
    import ray
    from tqdm import tqdm

    cluster_cpus = ray.cluster_resources().get("CPU", 0)
    if grid.resources.get("num_cpus", 1) > cluster_cpus:
        print(f"sweep: warning: each task asks for {grid.resources['num_cpus']} CPUs but the cluster has "
              f"{cluster_cpus:g}; tasks wait until a node that large joins", file=sys.stderr)
    options = {k: v for k, v in grid.resources.items() if v is not None}
    remote = ray.remote(task_fn or _ray_task).options(
        max_retries=grid.max_retries,  # crashed or killed workers
        retry_exceptions=True,  # Python errors in the task, up to the same bound
        **options)
    pending = {remote.remote(asdict(task), str(out)): task for task in tasks}
    with tqdm(total=len(tasks), desc="sweep (ray)", unit="task", disable=not progress) as bar:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                task = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as err:  # retries exhausted: record it, keep the other tasks
                    error = str(err)
                    _record_failure(out, task, error)
                    report.failed[task.key] = error.strip().splitlines()[-1] if error.strip() else repr(err)
                    print(f"sweep: task {task.key} failed after {grid.max_retries + 1} attempts: "
                          f"{report.failed[task.key]}", file=sys.stderr)
                else:
                    _ensure_result(out, task, result)
                    report.done.append(task.key)
                bar.update()


def run_sweep(grid: Grid | str | Path, out: str | Path, address: str | None = None, local: bool = False,
              num_cpus: int | None = None, task_fn: Callable | None = None, progress: bool = True) -> SweepReport:
    """Run every unfinished task of ``grid`` into ``out``, then aggregate all finished ones.

    ``address``: an existing Ray cluster (``auto``, ``ray://host:10001``); None starts a local Ray instance with
    ``num_cpus`` (default: all). ``local``: run serially in this process, without Ray. ``task_fn(task, out)``
    replaces the train/evaluate/gaze task (tests); with Ray it must be importable by the workers.
    """
    grid = grid if isinstance(grid, Grid) else load_grid(grid)
    out = Path(out).resolve()
    with io.output_lock(out):  # one driver per sweep folder (its workers write under .partial/ meanwhile)
        return _run_sweep_locked(grid, out, address, local, num_cpus, task_fn, progress)


def _run_sweep_locked(grid: Grid, out: Path, address: str | None, local: bool, num_cpus: int | None,
                      task_fn: Callable | None, progress: bool) -> SweepReport:
    _prepare_out(grid, out)
    tasks = grid.tasks()
    report = SweepReport(out=out, done=[], skipped=[], failed={})
    todo = []
    for task in tasks:
        if task_status(out, task) == "done":
            _check_done_config(out, task)
            report.skipped.append(task.key)
        else:
            (out / FAILED_DIR / f"{task.key}.json").unlink(missing_ok=True)  # a resume retries failed tasks
            todo.append(task)
    if progress:
        print(f"sweep {grid.name}: {len(tasks)} tasks, {len(report.skipped)} already done, {len(todo)} to run",
              file=sys.stderr)

    if todo and local:
        _run_local(todo, out, grid.max_retries, task_fn or run_task, progress, report)
    elif todo:
        started = _init_ray(address, num_cpus)
        try:
            _run_ray(todo, out, grid, task_fn, progress, report)
        finally:
            if started:
                import ray

                ray.shutdown()
    report.table = aggregate(out)
    return report


# ---------------------------------------------------------------------------------------------- aggregation


def collect_results(out: str | Path):
    """One row per finished task: game, agent, seed, score and the gaze metrics (pandas DataFrame)."""
    import pandas as pd

    rows = []
    for path in sorted((Path(out) / TASKS_DIR).glob(f"*/{RESULT_FILE}")):
        result = _read_json(path)
        row = {"game": result["game"], "agent": result["agent"], "seed": result["seed"], "score": result["score"],
               "episodes": result.get("episodes")}
        row.update(result.get("gaze") or {})
        rows.append(row)
    return pd.DataFrame(rows)


def _metric_columns(results) -> list[str]:
    known = [m for m in METRIC_ORDER if m in results.columns]
    others = sorted(c for c in results.columns if c not in {"game", "agent", "seed", "episodes", *known}
                    and results[c].dtype.kind in "fi")
    return known + others


def summary_table(results, games: list[str] | None = None, agents: list[str] | None = None):
    """Mean, std (over seeds) and seed count per (metric, game) row and agent column."""
    import pandas as pd

    metrics = _metric_columns(results)
    long = results.melt(id_vars=["game", "agent", "seed"], value_vars=metrics, var_name="metric").dropna()
    stats = long.groupby(["metric", "game", "agent"])["value"].agg(["mean", "std", "count"])
    stats = stats.rename(columns={"count": "n"}).unstack("agent")
    games = games or list(dict.fromkeys(results["game"]))
    agents = agents or list(dict.fromkeys(results["agent"]))
    agents = [a for a in agents if a in set(results["agent"])]
    order = [(m, g) for m in metrics for g in games if (m, g) in stats.index]
    stats = stats.reindex(index=pd.MultiIndex.from_tuples(order, names=["metric", "game"]))
    columns = [(stat, agent) for agent in agents for stat in ("mean", "std", "n")]
    stats = stats.reindex(columns=pd.MultiIndex.from_tuples(columns))
    stats.columns = [f"{agent} {stat}" for stat, agent in stats.columns]
    return stats


def _markdown(table, agents: list[str]) -> str:
    lines = []
    for metric in dict.fromkeys(table.index.get_level_values("metric")):
        block = table.loc[metric]
        lines += [f"## {metric}", "", "| game | " + " | ".join(agents) + " |", "|---" * (len(agents) + 1) + "|"]
        for game, row in block.iterrows():
            cells = []
            for agent in agents:
                mean, std, n = row[f"{agent} mean"], row[f"{agent} std"], row[f"{agent} n"]
                if math.isnan(mean):
                    cells.append("-")
                else:
                    spread = f" ± {std:.3g}" if not math.isnan(std) else ""
                    cells.append(f"{mean:.4g}{spread} (n={int(n)})")
            lines.append(f"| {game} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _plot(results, metric: str, games: list[str], agents: list[str], path: Path) -> None:
    """One panel per game (scales differ across games): a bar per agent (mean, std error bar) and the seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = [g for g in games if results.loc[results["game"] == g, metric].notna().any()]
    fig, axes = plt.subplots(1, len(games), figsize=(max(4.0, 0.9 * len(agents) + 1.5) * len(games), 3.6),
                             squeeze=False)
    for ax, game in zip(axes[0], games, strict=True):
        rows = results[results["game"] == game]
        for i, agent in enumerate(agents):
            values = rows.loc[rows["agent"] == agent, metric].dropna()
            if values.empty:
                continue
            ax.bar(i, values.mean(), yerr=values.std() if len(values) > 1 else None, color=f"C{i}", capsize=4,
                   alpha=0.8)
            ax.scatter([i] * len(values), values, color="black", s=10, zorder=3)
        ax.set_xticks(range(len(agents)), agents, rotation=30, ha="right")
        ax.set_title(game)
        ax.set_ylabel(metric)
    fig.tight_layout()
    io.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)


def aggregate(out: str | Path):
    """Write ``results.csv`` (one row per task), ``table.csv`` / ``table.md`` (paper layout) and the plots
    ``score.png`` / ``nss.png``; return the table (None when no task has finished)."""
    out = Path(out)
    results = collect_results(out)
    if results.empty:
        return None
    order = yaml.safe_load((out / "grid.yaml").read_text()) if (out / "grid.yaml").exists() else {}
    games = [g for g in order.get("games") or [] if g in set(results["game"])] or list(dict.fromkeys(results["game"]))
    agents = ([a for a in order.get("agents") or [] if a in set(results["agent"])]
              or list(dict.fromkeys(results["agent"])))
    results = results.sort_values(["game", "agent", "seed"])

    write = io.atomic_write
    table = summary_table(results, games, agents)
    write(out / "results.csv", lambda p: results.to_csv(p, index=False))
    write(out / "table.csv", lambda p: table.to_csv(p))
    write(out / "table.md", lambda p: p.write_text(_markdown(table, agents)))
    for metric in ("score", "nss"):
        if metric in results.columns and results[metric].notna().any():
            _plot(results, metric, games, agents, out / f"{metric}.png")
    return table


# ---------------------------------------------------------------------------------------------- CLI


def register(subparsers) -> None:  # noqa: ANN001 - argparse's private type
    parser = subparsers.add_parser(
        "sweep", help="run a grid of games x agents x seeds (train, evaluate, gaze-eval) on Ray",
        description="Run a grid of games x agents x seeds on Ray: train, evaluate and (where the grid gives "
                    "Atari-HEAD data) gaze-evaluate each cell, then aggregate a table and plots. Finished tasks "
                    "are never rerun: run the same command again to resume.")
    parser.add_argument("--grid", required=True, help="grid YAML file (see docs/sweeps.md)")
    parser.add_argument("--out", required=True, help="sweep folder (e.g. sweeps/fls); shared by all nodes")
    parser.add_argument("--address", default=None,
                        help="existing Ray cluster: 'auto' (this node joined one) or 'ray://host:10001'; "
                             "default: start a local Ray instance")
    parser.add_argument("--local", action="store_true", help="run serially in this process, without Ray")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="list the tasks and their status, run nothing")
    parser.add_argument("--aggregate-only", action="store_true", help="only rebuild the table and plots")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if args.local and args.address:
        raise SpecError("--local runs without Ray; it cannot be combined with --address")
    grid = load_grid(args.grid)
    out = Path(args.out)
    if args.dry_run:
        for task in grid.tasks():
            print(f"{task_status(out, task):8s} {task.key}")
        return 0
    if args.aggregate_only:
        with io.output_lock(out):
            table = aggregate(out)
        if table is None:
            raise DataError(f"sweep {out} has no finished task yet")
        print(f"table: {out / 'table.md'}")
        return 0
    report = run_sweep(grid, out, address=args.address, local=args.local, num_cpus=args.num_cpus)
    print(f"sweep {grid.name}: {len(report.done)} run, {len(report.skipped)} already done, "
          f"{len(report.failed)} failed; table: {out / 'table.md'}")
    for key, error in report.failed.items():
        print(f"  failed {key}: {error}", file=sys.stderr)
    return 0 if report.ok else 1
