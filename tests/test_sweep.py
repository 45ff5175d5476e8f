"""Sweeps: grid validation, aggregation, fault tolerance and resume, serially (no Ray) and on a local Ray instance."""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from rl_saliency import sweep
from rl_saliency.cli import main
from rl_saliency.envs.registry import UnknownGameError
from rl_saliency.errors import ClusterError, SpecError

TINY_AGENT = {"n_envs": 2, "hyperparams": {"n_steps": 64, "batch_size": 64, "n_epochs": 1}}


def write_grid(tmp_path: Path, **overrides) -> Path:
    grid = {
        "name": "tiny",
        "games": ["breakout", "pong"],
        "agents": [{"name": "nature_tiny", "spec": "nature", **TINY_AGENT},
                   {"name": "fls_tiny", "spec": "fls_sparse", **TINY_AGENT}],
        "seeds": 1,
        "train": {"timesteps": 256},
        "evaluate": {"episodes": 1, "max_frames": 800},
        "resources": {"num_cpus": 1},
        "max_retries": 1,
    }
    grid.update(overrides)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def events(out: Path, key: str) -> list[str]:
    return [e["event"] for e in sweep.read_log(out, key)]


def _consume(marker: Path) -> bool:
    """Remove a marker file; True only for the one caller (of any process) that removed it."""
    try:
        marker.unlink()
        return True
    except FileNotFoundError:
        return False


class Faults:
    """The tests' fault injection, through the Steps seam: wraps a task step so that chosen tasks raise once
    (``fail_once``), kill their worker process once (``crash_once``, as Ray sees an OOM kill or a lost node) or
    always raise (``broken``). "Once" is a marker file under the test's own ``folder``, consumed by the first
    attempt, so it holds across Ray worker processes. Wrapping the evaluate step fails a task after training, so
    a retry must reuse the trained model."""

    def __init__(self, step, folder: Path, fail_once=(), crash_once=(), broken=()):
        self.step, self.folder, self.broken = step, Path(folder), set(broken)
        self.folder.mkdir(parents=True, exist_ok=True)
        for key in fail_once:
            (self.folder / f"{key}.fail_once").touch()
        for key in crash_once:
            (self.folder / f"{key}.crash_once").touch()

    def __call__(self, task, work):
        if task.key in self.broken:
            raise RuntimeError(f"task {task.key} is broken")
        if _consume(self.folder / f"{task.key}.fail_once"):
            raise RuntimeError(f"task {task.key}: injected failure (fail_once)")
        if _consume(self.folder / f"{task.key}.crash_once"):
            os._exit(17)  # a killed worker
        self.step(task, work)


# ------------------------------------------------------------------------------------------------ grid


def test_grid_expands_and_merges_overrides(tmp_path):
    gaze_root = tmp_path / "atari_head"
    (gaze_root / "ms_pacman").mkdir(parents=True)  # Atari-HEAD has breakout too, but this copy lacks it
    grid = sweep.load_grid(write_grid(tmp_path, games=["Breakout", "ms_pacman", "pong"], seeds=[3, 7],
                                      gaze={"data": str(gaze_root), "agent_methods": {"nature_tiny": "gradient"},
                                            "max_frames": 200}))
    tasks = grid.tasks()
    assert [t.key for t in tasks[:4]] == ["breakout__nature_tiny__seed3", "breakout__nature_tiny__seed7",
                                          "breakout__fls_tiny__seed3", "breakout__fls_tiny__seed7"]
    assert len(tasks) == 3 * 2 * 2
    fls = grid.agents["fls_tiny"]
    # overrides merge into the spec's hyperparams: the spec's own learning rate stays, n_steps is replaced
    assert fls["hyperparams"]["n_steps"] == 64 and fls["hyperparams"]["learning_rate"] == "lin_2.5e-4"
    assert fls["features_extractor"] == "SparseFLS" and fls["n_envs"] == 2
    # gaze-eval only where the data has the game; attention by default, another method where the grid says
    pacman = {t.agent: t.gaze for t in tasks if t.game == "ms_pacman"}
    assert pacman["fls_tiny"] == {"data": str(gaze_root.resolve() / "ms_pacman"), "method": "attention",
                                  "max_frames": 200}
    assert pacman["nature_tiny"]["method"] == "gradient"
    assert all(t.gaze is None for t in tasks if t.game in ("breakout", "pong"))


@pytest.mark.parametrize("change, message", [
    ({"games": ["breakout", "not_a_game"]}, "unknown game"),
    ({"agents": ["nature", "nature"]}, "two agents are named 'nature'"),
    ({"agents": [{"spec": "nature", "hyperparams": {"n_stepz": 3}}]}, "PPO has no hyperparameters ['n_stepz']"),
    ({"agents": [{"spec": "nature", "algo": "sac"}]}, "algo must be one of"),
    ({"agents": [{"spec": "no_such_spec"}]}, "no agent spec named"),
    ({"seeds": [1, 1]}, "repeat a seed"),
    ({"seeds": 0}, "seeds must be"),
    ({"epochs": 3}, "unknown keys ['epochs']"),
    ({"train": {"timesteps": 10, "lr": 1}}, "unknown train options ['lr']"),
    ({"evaluate": {"episodes": 1, "out": "x"}}, "reserved evaluate options ['out']"),
    ({"resources": {"num_cpus": -1}}, "num_cpus must be a number"),
    ({"max_retries": "twice"}, "max_retries must be"),
    ({"gaze": {"method": "attention"}}, "'gaze' needs 'data'"),
    ({"gaze": {"data": "/no/such/atari_head"}}, "gaze data /no/such/atari_head does not exist"),
    ({"gaze": {"data": ".", "agent_methods": {"nature": "gradient"}}}, "agent_methods must map agents"),
    ({"gaze": {"data": ".", "max_frame": 100}}, "unknown or reserved gaze options ['max_frame']"),
    # values that used to pass the grid check and fail in a worker (or crash the grid read itself)
    ({"train": {"timesteps": "abc"}}, "train.timesteps must be an integer >= 1, got 'abc'"),  # was a traceback
    ({"train": {"timesteps": 0}}, "train.timesteps must be an integer >= 1, got 0"),
    ({"train": {"timesteps": 256, "n_envs": 0}}, "train.n_envs must be an integer >= 1"),
    ({"train": {"timesteps": 256, "backend": "gym"}}, "train.backend must be one of"),
    ({"train": {"timesteps": 256, "device": "gpu"}}, "train.device must be one of"),
    ({"evaluate": {"episodes": 0}}, "evaluate.episodes must be an integer >= 1, got 0"),  # segfaulted the worker
    ({"gaze": {"data": ".", "method": "nosuch"}}, "unknown saliency methods ['nosuch'] in gaze"),
    ({"gaze": {"data": ".", "max_frames": 3}}, "gaze.max_frames must be an integer >= 14, got 3"),
    # typed sections (rl_saliency.sweep.sections): values checked now, not by a worker after training
    ({"evaluate": {"deterministic": "yes"}}, "evaluate.deterministic must be true or false, got 'yes'"),
    ({"evaluate": {"device": "tpu"}}, "evaluate.device must be one of auto, cpu, cuda, got 'tpu'"),
    ({"gaze": {"data": ".", "resolution": 100}}, "gaze.resolution must be one of 84, 210, got 100"),
    ({"gaze": {"data": ".", "pool": "rgbx"}}, "gaze.pool must be one of auto, rgb, grey, got 'rgbx'"),
    ({"gaze": {"data": ".", "protocol": "fls"}}, "gaze.protocol must be one of"),
    ({"gaze": {"data": ".", "trials": "593_RZ"}}, "gaze.trials must be a list of trial names"),
    ({"gaze": {"data": ".", "keep_observations": True}}, "unknown or reserved gaze options ['keep_observations']"),
    ({"resources": {"memory": "lots"}}, "resources.memory must be a number >= 0"),
])
def test_bad_grids_name_the_problem_and_the_file(tmp_path, change, message):
    path = write_grid(tmp_path, **change)
    with pytest.raises((SpecError, UnknownGameError)) as info:
        sweep.load_grid(path)
    assert message in str(info.value) and f"grid {path}" in str(info.value)


def test_cli_reports_bad_grid_in_one_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("games: [breakout\n")
    assert main(["sweep", "--grid", str(path), "--out", str(tmp_path / "out"), "--local"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rl-saliency sweep: error: grid") and str(path) in err and "\n" not in err


@pytest.mark.parametrize("argv, message", [
    (["--grid", "{tmp}/no_such_grid.yaml"], "grid file {tmp}/no_such_grid.yaml does not exist"),
    (["--grid", "{grid}", "--num-cpus", "0"], "--num-cpus must be an integer >= 1, got 0"),
    (["--grid", "{grid}", "--local", "--address", "auto"], "--local runs without Ray"),
    (["--grid", "{unknown_key}"], "unknown keys ['epochs']"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "k").mkdir()
    values = {"tmp": tmp_path, "grid": write_grid(tmp_path), "unknown_key": write_grid(tmp_path / "k", epochs=3)}
    argv = [a.format(**values) for a in argv]
    assert main(["sweep", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("rl-saliency sweep: error:"), err
    assert message.format(**values) in err
    assert not (tmp_path / "out").exists()  # nothing written


def test_the_command_imports_no_torch():
    code = ("import sys, rl_saliency.cli.sweep; "
            "print(sorted(m for m in ('torch', 'stable_baselines3', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("section, command", [
    (sweep.TrainOptions, "rl_saliency.train:train"),
    (sweep.EvaluateOptions, "rl_saliency.evaluate:evaluate"),
    (sweep.GazeOptions, "rl_saliency.gaze.evaluator:gaze_eval"),
])
def test_sections_are_options_of_their_commands(section, command):
    """Every option a grid section passes on is a keyword of the command the task calls, and so is every
    argument the sweep reserves for itself (the check that replaced introspecting signatures at run time)."""
    module, name = command.split(":")
    params = set(inspect.signature(getattr(importlib.import_module(module), name)).parameters)
    passed = set(section.options()) - set(section.extra)
    assert passed <= params, passed - params
    assert set(section.reserved) <= params, set(section.reserved) - params


def test_section_choices_agree_with_the_command_layer():
    from rl_saliency.cli import options
    from rl_saliency.sweep import sections

    assert sections.DEVICES == options.DEVICES


def test_production_code_holds_no_fault_injection():
    for path in Path(sweep.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "os._exit" not in text and ".inject" not in text and "fail_once" not in text, path


# ------------------------------------------------------------------------------------------------ aggregation


def fake_result(out: Path, game: str, agent: str, seed: int, score: float, nss: float | None) -> None:
    folder = out / sweep.TASKS_DIR / f"{game}__{agent}__seed{seed}"
    folder.mkdir(parents=True)
    gaze = None if nss is None else {"nss": nss, "auc": 0.5 + nss / 10}
    (folder / sweep.RESULT_FILE).write_text(json.dumps(
        {"game": game, "agent": agent, "seed": seed, "score": score, "episodes": 2, "gaze": gaze}))


def test_aggregate_paper_layout(tmp_path):
    rng = np.random.default_rng(0)
    games, agents = ["seaquest", "breakout"], ["nature", "fls"]
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({"games": games, "agents": agents}))
    expected = {}
    for game in games:
        for agent in agents:
            scores = rng.uniform(0, 500, 3)
            nss = rng.uniform(0, 2, 3) if game == "breakout" else [None] * 3  # no gaze data for seaquest
            for seed in range(3):
                fake_result(tmp_path, game, agent, seed, float(scores[seed]), nss[seed])
            expected[game, agent] = scores, nss

    table = sweep.aggregate(tmp_path)
    # rows: (metric, game) in grid order; columns: agents in grid order
    assert list(table.index) == [("score", "seaquest"), ("score", "breakout"), ("nss", "breakout"),
                                 ("auc", "breakout")]
    assert list(table.columns[:3]) == ["nature mean", "nature std", "nature n"]
    for (game, agent), (scores, nss) in expected.items():
        assert table.loc[("score", game), f"{agent} mean"] == pytest.approx(np.mean(scores))
        assert table.loc[("score", game), f"{agent} std"] == pytest.approx(np.std(scores, ddof=1))
        assert table.loc[("score", game), f"{agent} n"] == 3
        if game == "breakout":
            assert table.loc[("nss", game), f"{agent} mean"] == pytest.approx(np.mean(nss))
    csv = pd.read_csv(tmp_path / "table.csv")
    assert list(csv.columns[:2]) == ["metric", "game"] and len(csv) == 4
    assert len(pd.read_csv(tmp_path / "results.csv")) == 12
    markdown = (tmp_path / "table.md").read_text()
    assert "## score" in markdown and "## nss" in markdown and "| game | nature | fls |" in markdown
    mean, std = np.mean(expected["seaquest", "fls"][0]), np.std(expected["seaquest", "fls"][0], ddof=1)
    assert f"{mean:.4g} ± {std:.3g} (n=3)" in markdown
    for plot in ("score.png", "nss.png"):
        image = cv2.imread(str(tmp_path / plot))
        assert image is not None and image.shape[0] > 100 and image.std() > 0


# ------------------------------------------------------------------------------------------------ serial, no Ray


def fake_train_step(task, work):
    """Stands in for training: a run folder with a model file (the real steps run in the Ray test)."""
    (work / "run").mkdir(exist_ok=True)
    (work / "run" / "model.zip").write_bytes(b"model")


def fake_evaluate_step(task, work):
    (work / "eval").mkdir(exist_ok=True)
    score = 10.0 * task.seed + len(task.agent)
    (work / "eval" / "evaluation.json").write_text(json.dumps(
        {"score_mean": score, "score_std": 0.0, "episodes": 1, "length_mean": 100.0}))


FAKE_TASK = functools.partial(sweep.run_task, steps=sweep.Steps(train=fake_train_step, evaluate=fake_evaluate_step))


def test_local_sweep_without_ray_retries_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails: --local must not need it
    run_sweep = sweep.run_sweep
    grid, out = write_grid(tmp_path, seeds=[0, 1]), tmp_path / "out"
    flaky, doomed = "pong__fls_tiny__seed1", "breakout__nature_tiny__seed0"
    # flaky fails once; doomed fails on both attempts (max_retries 1): recorded as failed, the other tasks go on
    faults = Faults(fake_evaluate_step, tmp_path / "faults", fail_once=[flaky], broken=[doomed])
    task_fn = functools.partial(sweep.run_task, steps=sweep.Steps(train=fake_train_step, evaluate=faults))
    monkeypatch.setattr(sweep, "run_sweep", functools.partial(run_sweep, task_fn=task_fn))  # what the CLI runs

    assert main(["sweep", "--grid", str(grid), "--out", str(out), "--local"]) == 1
    assert f"failed {doomed}" in capsys.readouterr().err
    assert events(out, flaky) == ["start", "train", "start", "evaluate", "done"]  # retried, training not redone
    assert events(out, doomed) == ["start", "train", "start", "failed"]
    assert (out / sweep.FAILED_DIR / f"{doomed}.json").exists()
    assert not (out / sweep.TASKS_DIR / doomed).exists() and (out / sweep.PARTIAL_DIR / doomed).exists()
    done = sorted(p.name for p in (out / sweep.TASKS_DIR).iterdir())
    assert len(done) == 7 and doomed not in done
    result = json.loads((out / sweep.TASKS_DIR / flaky / sweep.RESULT_FILE).read_text())
    assert result["attempts"] == 2 and result["score"] == 10.0 + len("fls_tiny")

    assert not (out / ".inject").exists()  # a real sweep holds no test hooks

    # resume: only the failed task runs again (and now succeeds); finished ones are not touched
    stamps = {p: p.stat().st_mtime_ns for p in (out / sweep.TASKS_DIR).glob("*/result.json")}
    report = run_sweep(grid, out, local=True, progress=False, task_fn=FAKE_TASK)
    assert report.done == [doomed] and len(report.skipped) == 7 and report.ok
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert events(out, doomed) == ["start", "train", "start", "failed", "start", "evaluate", "done"]
    assert not (out / sweep.FAILED_DIR / f"{doomed}.json").exists()
    table = pd.read_csv(out / "table.csv").set_index(["metric", "game"])
    # seeds 0 and 1 score len(agent) and 10 + len(agent)
    assert table.loc[("score", "pong"), "fls_tiny mean"] == pytest.approx(5 + len("fls_tiny"))
    assert table.loc[("score", "pong"), "fls_tiny std"] == pytest.approx(np.std([0, 10], ddof=1))

    # without Ray installed, only --local can run what is left
    (out / sweep.TASKS_DIR / doomed / sweep.RESULT_FILE).unlink()
    with pytest.raises(ClusterError, match=r"needs Ray: pip install 'rl-saliency\[distributed\]'"):
        run_sweep(grid, out, progress=False)

    # a changed grid cannot silently reuse results made with another config
    changed = write_grid(tmp_path, seeds=[0, 1], train={"timesteps": 512})
    with pytest.raises(SpecError, match="another configuration"):
        run_sweep(changed, out, local=True, progress=False, task_fn=FAKE_TASK)


def test_dry_run_lists_status(tmp_path, capsys):
    grid = sweep.load_grid(write_grid(tmp_path, games=["breakout"]))
    out = tmp_path / "out"
    sweep.prepare_out(grid, out)
    FAKE_TASK(grid.tasks()[0], out)
    assert main(["sweep", "--grid", str(grid.path), "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[:2] == ["done     breakout__nature_tiny__seed0", "pending  breakout__fls_tiny__seed0"]


def test_result_from_a_worker_without_shared_storage_is_kept(tmp_path):
    """A worker whose --out is not this machine's still hands its result back; the driver stores it."""
    task = sweep.load_grid(write_grid(tmp_path, games=["breakout"])).tasks()[0]
    out = tmp_path / "out"
    result = {"key": task.key, "game": "breakout", "agent": task.agent, "seed": 0, "score": 3.0, "host": "node-7"}
    sweep.layout.ensure_result(out, task.key, result)
    sweep.layout.ensure_result(out, task.key, {**result, "score": 99.0})  # a finished cell is never overwritten
    assert json.loads((out / sweep.TASKS_DIR / task.key / sweep.RESULT_FILE).read_text())["score"] == 3.0
    assert sweep.task_status(out, task) == "done" and not list((out / sweep.PARTIAL_DIR).iterdir())


# ------------------------------------------------------------------------------------------------ Ray


@contextlib.contextmanager
def pickled_by_value(ray):
    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        ray.cloudpickle.unregister_pickle_by_value(module)


@pytest.mark.slow
def test_ray_sweep_end_to_end_with_failures_and_resume(tmp_path):
    """2 games x 2 agents x 1 seed, really trained and evaluated on a local 2-CPU Ray instance; one task raises
    once, one worker is killed once; both are retried; a resume reruns nothing."""
    ray = pytest.importorskip("ray")
    grid, out = write_grid(tmp_path), tmp_path / "out"
    raises, crashes = "breakout__fls_tiny__seed0", "pong__nature_tiny__seed0"
    faults = Faults(sweep.task.evaluate_step, tmp_path / "faults", fail_once=[raises], crash_once=[crashes])
    task_fn = functools.partial(sweep.run_task, steps=sweep.Steps(evaluate=faults))

    with pickled_by_value(ray):  # the workers cannot import this test module: ship Faults by value
        report = sweep.run_sweep(grid, out, num_cpus=2, progress=False, task_fn=task_fn)
    assert not ray.is_initialized()  # the sweep stops the instance it started
    assert report.ok, report.failed
    keys = [t.key for t in sweep.load_grid(grid).tasks()]
    assert sorted(report.done) == sorted(keys)
    for key in keys:
        result = json.loads((out / sweep.TASKS_DIR / key / sweep.RESULT_FILE).read_text())
        retried = key in (raises, crashes)
        assert result["attempts"] == (2 if retried else 1)
        # training ran once even for the retried tasks: the retry picked up the finished step
        assert events(out, key) == (["start", "train", "start", "evaluate", "done"] if retried
                                    else ["start", "train", "evaluate", "done"])
        assert (out / sweep.TASKS_DIR / key / "run" / "model.zip").exists()
        assert result["episodes"] == 1 and np.isfinite(result["score"])
    assert not list((out / sweep.PARTIAL_DIR).iterdir())
    assert not list((tmp_path / "faults").iterdir())  # every injected fault fired once
    table = pd.read_csv(out / "table.csv").set_index(["metric", "game"])
    assert list(table.index) == [("score", "breakout"), ("score", "pong")]
    assert {"nature_tiny mean", "fls_tiny mean"} <= set(table.columns)
    assert cv2.imread(str(out / "score.png")) is not None

    stamps = {p: p.stat().st_mtime_ns for p in (out / sweep.TASKS_DIR).glob("*/result.json")}
    logs = {key: events(out, key) for key in keys}
    again = sweep.run_sweep(grid, out, num_cpus=2, progress=False)
    assert again.done == [] and sorted(again.skipped) == sorted(keys)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert {key: events(out, key) for key in keys} == logs


@pytest.mark.slow
def test_ray_records_a_task_whose_retries_run_out(tmp_path, capsys):
    """On Ray a failing task goes through the same retry path as with --local: retried max_retries times by the
    driver, then recorded in failed/ while the other tasks finish."""
    ray = pytest.importorskip("ray")
    grid, out = write_grid(tmp_path, games=["breakout"], max_retries=2), tmp_path / "out"
    doomed = "breakout__fls_tiny__seed0"
    faults = Faults(fake_evaluate_step, tmp_path / "faults", broken=[doomed])
    task_fn = functools.partial(sweep.run_task, steps=sweep.Steps(train=fake_train_step, evaluate=faults))
    with pickled_by_value(ray):
        report = sweep.run_sweep(grid, out, num_cpus=2, progress=False, task_fn=task_fn)
    assert report.done == ["breakout__nature_tiny__seed0"] and list(report.failed) == [doomed]
    assert f"task {doomed} is broken" in report.failed[doomed]
    assert f"sweep: task {doomed} failed after 3 attempts" in capsys.readouterr().err
    assert events(out, doomed) == ["start", "train", "start", "start", "failed"]
    assert sweep.task_status(out, sweep.load_grid(grid).tasks()[1]) == "failed"
    assert not ray.is_initialized()


@pytest.mark.slow
def test_local_sweep_with_gaze_on_real_trial(tmp_path, atari_head_dir, monkeypatch):
    """A real (tiny) train, evaluate and gaze-eval against the real Ms. Pac-Man trial; NSS lands in the table."""
    monkeypatch.setitem(sys.modules, "ray", None)
    grid = write_grid(tmp_path, games=["ms_pacman"], agents=[{"name": "fls_tiny", "spec": "fls_sparse", **TINY_AGENT}],
                      gaze={"data": str(atari_head_dir), "max_frames": 120, "stride": 4})
    report = sweep.run_sweep(grid, tmp_path / "out", local=True, progress=False)
    assert report.ok, report.failed
    result = json.loads((tmp_path / "out" / sweep.TASKS_DIR / "ms_pacman__fls_tiny__seed0" / "result.json").read_text())
    assert set(result["gaze"]) >= {"nss", "auc_judd", "shuffled_auc", "kl_div", "cc"}
    assert all(np.isfinite(v) for v in result["gaze"].values())
    table = pd.read_csv(tmp_path / "out" / "table.csv").set_index(["metric", "game"])
    assert table.loc[("nss", "ms_pacman"), "fls_tiny mean"] == pytest.approx(result["gaze"]["nss"])
    assert cv2.imread(str(tmp_path / "out" / "nss.png")) is not None
