"""Run a sweep's unfinished tasks, serially in this process (``local``) or on Ray, then aggregate.

Both drivers run a task attempt by attempt and hand every outcome to one function, :func:`_settle`: a result is
stored, a failure is retried while the grid's ``max_retries`` allows, then recorded in ``failed/`` while the other
tasks go on. On Ray a task that raises and a task whose worker died (killed, out of memory, node lost) both come
back as an error and are retried the same way.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rl_saliency import io
from rl_saliency.errors import ClusterError, SpecError
from rl_saliency.sweep import layout
from rl_saliency.sweep.aggregate import aggregate
from rl_saliency.sweep.grid import Grid, Task, load_grid
from rl_saliency.sweep.task import run_task

TaskFn = Callable[[Task, Path], dict[str, Any]]


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
    return layout.status(out, task.key)


def _settle(out: Path, task: Task, attempt: int, max_retries: int, result: dict[str, Any] | None,
            error: str | None, report: SweepReport) -> bool:
    """What follows one attempt, for both drivers: a result is stored and counted; an error is retried while
    attempts are left (True: run it again), then recorded and reported."""
    if error is None:
        layout.ensure_result(out, task.key, result or {})
        report.done.append(task.key)
        return False
    if attempt <= max_retries:
        return True
    layout.record_failure(out, task.key, error)
    report.failed[task.key] = layout.last_line(error)
    print(f"sweep: task {task.key} failed after {attempt} attempts: {report.failed[task.key]}", file=sys.stderr)
    return False


def _run_local(tasks: list[Task], out: Path, max_retries: int, task_fn: TaskFn, progress: bool,
               report: SweepReport) -> None:
    from tqdm import tqdm

    for task in tqdm(tasks, desc="sweep (local)", unit="task", disable=not progress):
        attempt, again = 0, True
        while again:
            attempt += 1
            try:
                result, error = task_fn(task, out), None
            except Exception:  # noqa: BLE001 - any task error is retried, then recorded; the sweep goes on
                result, error = None, traceback.format_exc()
            again = _settle(out, task, attempt, max_retries, result, error, report)


def _ray_worker(task_fn: TaskFn, task: dict[str, Any], out: str) -> dict[str, Any]:
    """What a Ray worker runs: torch threads matched to the task's CPU share, then ``task_fn``."""
    import ray
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    return task_fn(Task(**task), Path(out))


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


def _run_ray(tasks: list[Task], out: Path, grid: Grid, task_fn: TaskFn, progress: bool,
             report: SweepReport) -> None:
    import ray
    from tqdm import tqdm

    cluster_cpus = ray.cluster_resources().get("CPU", 0)
    if grid.resources.num_cpus > cluster_cpus:
        print(f"sweep: warning: each task asks for {grid.resources.num_cpus} CPUs but the cluster has "
              f"{cluster_cpus:g}; tasks wait until a node that large joins", file=sys.stderr)
    # no retries inside Ray: every failed attempt comes back here and _settle decides, as for --local
    remote = ray.remote(_ray_worker).options(max_retries=0, retry_exceptions=False,
                                             **grid.resources.ray_options())
    pending: dict[Any, Task] = {}
    attempts = dict.fromkeys((t.key for t in tasks), 0)

    def submit(task: Task) -> None:
        attempts[task.key] += 1
        pending[remote.remote(task_fn, asdict(task), str(out))] = task

    for task in tasks:
        submit(task)
    with tqdm(total=len(tasks), desc="sweep (ray)", unit="task", disable=not progress) as bar:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                task = pending.pop(ref)
                try:
                    result, error = ray.get(ref), None
                except ray.exceptions.RayError as err:  # the task raised, or its worker died
                    result, error = None, str(err) or repr(err)
                if _settle(out, task, attempts[task.key], grid.max_retries, result, error, report):
                    submit(task)
                else:
                    bar.update()


def run_sweep(grid: Grid | str | Path, out: str | Path, address: str | None = None, local: bool = False,
              num_cpus: int | None = None, task_fn: TaskFn | None = None, progress: bool = True) -> SweepReport:
    """Run every unfinished task of ``grid`` into ``out``, then aggregate all finished ones.

    ``address``: an existing Ray cluster (``auto``, ``ray://host:10001``); None starts a local Ray instance with
    ``num_cpus`` (default: all). ``local``: run serially in this process, without Ray. ``task_fn(task, out)``
    runs one attempt of a task (default :func:`rl_saliency.sweep.task.run_task`); with Ray it is pickled to the
    workers.
    """
    grid = grid if isinstance(grid, Grid) else load_grid(grid)
    out = Path(out).resolve()
    with io.output_lock(out):  # one driver per sweep folder (its workers write under .partial/ meanwhile)
        return _run_sweep_locked(grid, out, address, local, num_cpus, task_fn or run_task, progress)


def _check_done_config(out: Path, task: Task) -> None:
    stored = layout.read_json(out / layout.TASKS_DIR / task.key / layout.RESULT_FILE).get("config")
    if stored != task.config():
        raise SpecError(f"sweep {out}: task {task.key} finished with another configuration than grid now gives; "
                        f"use a new --out, or delete {out / layout.TASKS_DIR / task.key} to rerun it")


def prepare_out(grid: Grid, out: Path) -> None:
    """The sweep folder's sub-folders and ``grid.yaml`` (the games, agents and seeds, in order)."""
    layout.prepare(out, grid.name, grid.path, grid.games, list(grid.agents), grid.seeds)


def _run_sweep_locked(grid: Grid, out: Path, address: str | None, local: bool, num_cpus: int | None,
                      task_fn: TaskFn, progress: bool) -> SweepReport:
    prepare_out(grid, out)
    tasks = grid.tasks()
    report = SweepReport(out=out, done=[], skipped=[], failed={})
    todo = []
    for task in tasks:
        if task_status(out, task) == "done":
            _check_done_config(out, task)
            report.skipped.append(task.key)
        else:
            layout.clear_failure(out, task.key)  # a resume retries failed tasks
            todo.append(task)
    if progress:
        print(f"sweep {grid.name}: {len(tasks)} tasks, {len(report.skipped)} already done, {len(todo)} to run",
              file=sys.stderr)

    if todo and local:
        _run_local(todo, out, grid.max_retries, task_fn, progress, report)
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
