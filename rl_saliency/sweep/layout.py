"""The sweep folder: where each file lives, a task's status and event log, and the atomic placement of results.

A task works in ``<out>/.partial/<key>/`` and moves its folder into ``<out>/tasks/<key>/`` with one
``os.replace`` when it is done, so ``tasks/<key>/result.json`` existing is what "finished" means.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from rl_saliency import io

TASKS_DIR = "tasks"
PARTIAL_DIR = ".partial"
FAILED_DIR = "failed"
LOGS_DIR = "logs"
RESULT_FILE = "result.json"
GRID_FILE = "grid.yaml"  # the grid as resolved: row and column order of the table


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def prepare(out: Path, name: str, source: Path, games: list[str], agents: list[str], seeds: list[int]) -> None:
    """Create the sweep folder's sub-folders and write ``grid.yaml`` (for aggregation and for the record)."""
    for sub in (TASKS_DIR, PARTIAL_DIR, FAILED_DIR, LOGS_DIR):
        (out / sub).mkdir(parents=True, exist_ok=True)
    io.write_yaml(out / GRID_FILE, {"name": name, "source": str(Path(source).resolve()), "games": games,
                                    "agents": agents, "seeds": seeds})


def status(out: str | Path, key: str) -> str:
    """``done``, ``partial`` (started, not finished), ``failed`` (retries exhausted) or ``pending``."""
    out = Path(out)
    if (out / TASKS_DIR / key / RESULT_FILE).exists():
        return "done"
    if (out / FAILED_DIR / f"{key}.json").exists():
        return "failed"
    return "partial" if (out / PARTIAL_DIR / key).exists() else "pending"


def log(out: Path, key: str, event: str, **fields: Any) -> None:
    """Append one line to the task's event log (attempts, steps, failures): the sweep's audit trail."""
    line = {"time": time.time(), "event": event, "host": socket.gethostname(), "pid": os.getpid(), **fields}
    with open(out / LOGS_DIR / f"{key}.jsonl", "a") as handle:
        handle.write(json.dumps(line, default=str) + "\n")


def read_log(out: str | Path, key: str) -> list[dict[str, Any]]:
    """The event log of one task (``start``, ``train``, ``evaluate``, ``gaze``, ``done``, ``failed`` lines)."""
    path = Path(out) / LOGS_DIR / f"{key}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def place(work: Path, final: Path) -> None:
    """Move a finished task folder into place in one rename (a half-moved folder never exists)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # a folder without result.json: an interrupted driver-side copy, not a result
        shutil.rmtree(final)
    os.replace(work, final)


def ensure_result(out: Path, key: str, result: dict[str, Any]) -> None:
    """Store a result returned by a worker whose filesystem is not this one (no shared --out on the cluster);
    a finished task is never overwritten."""
    final = out / TASKS_DIR / key
    if (final / RESULT_FILE).exists():
        return
    staging = out / PARTIAL_DIR / f"{key}.from-{result.get('host', 'worker')}"
    staging.mkdir(parents=True, exist_ok=True)
    io.write_json(staging / RESULT_FILE, result)
    place(staging, final)


def record_failure(out: Path, key: str, error: str) -> None:
    """A task whose retries ran out: a ``failed`` event and ``failed/<key>.json`` with the whole error."""
    log(out, key, "failed", error=last_line(error))
    io.write_json(out / FAILED_DIR / f"{key}.json", {"key": key, "error": error, "time": time.time()})


def clear_failure(out: Path, key: str) -> None:
    """Forget a recorded failure: a resume retries failed tasks."""
    (out / FAILED_DIR / f"{key}.json").unlink(missing_ok=True)


def last_line(error: str) -> str:
    return error.strip().splitlines()[-1] if error.strip() else error
