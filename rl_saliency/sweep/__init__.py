"""Experiment sweeps: a grid of games x agents x seeds, each cell trained, evaluated and scored against gaze.

One task per (game, agent, seed) runs on Ray (a local instance by default, or an existing cluster), or serially
in this process (``local=True``, Ray not needed). Finished tasks are never run again and a killed one resumes
from its last finished step; results are aggregated into one table in the FLS paper's layout plus plots.
The command is ``rl_saliency.cli.sweep``; the grid format and the sweep folder are described in docs/sweeps.md.

Modules, one job each: :mod:`~rl_saliency.sweep.sections` (the grid's option sections as dataclasses),
:mod:`~rl_saliency.sweep.grid` (the grid file and its tasks), :mod:`~rl_saliency.sweep.layout` (the sweep
folder: status, event logs, atomic placement), :mod:`~rl_saliency.sweep.task` (one task: train -> evaluate ->
gaze), :mod:`~rl_saliency.sweep.drivers` (local and Ray drivers, one failure path),
:mod:`~rl_saliency.sweep.aggregate` (table and plots).
"""

from __future__ import annotations

from rl_saliency.sweep.aggregate import aggregate, collect_results, summary_table
from rl_saliency.sweep.drivers import SweepReport, prepare_out, run_sweep, task_status
from rl_saliency.sweep.grid import Grid, Task, load_grid
from rl_saliency.sweep.layout import FAILED_DIR, LOGS_DIR, PARTIAL_DIR, RESULT_FILE, TASKS_DIR, read_log
from rl_saliency.sweep.sections import EvaluateOptions, GazeOptions, Resources, TrainOptions
from rl_saliency.sweep.task import Steps, run_task

__all__ = ["FAILED_DIR", "LOGS_DIR", "PARTIAL_DIR", "RESULT_FILE", "TASKS_DIR", "EvaluateOptions", "GazeOptions",
           "Grid", "Resources", "Steps", "SweepReport", "Task", "TrainOptions", "aggregate", "collect_results",
           "load_grid", "prepare_out", "read_log", "run_sweep", "run_task", "summary_table", "task_status"]
