"""The zoo: trained agents shipped in the repository (``agents/zoo/``), addressed as ``zoo:<name>``.

Each agent is a folder ``agents/zoo/<name>/`` holding a compact ``model.zip`` (policy weights, no optimizer
state; it loads with plain ``PPO.load``), the training run's ``config.yaml`` and ``metrics.csv``, and the
exact command that trained it. ``agents/zoo/index.yaml`` lists them with their scores and gaze metrics.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import io as _io
import json
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl_saliency import io
from rl_saliency.errors import DataError, OptionError
from rl_saliency.paths import AGENTS_DIR

ZOO_DIR = AGENTS_DIR / "zoo"
INDEX_FILE = "index.yaml"
PREFIX = "zoo:"


class ZooError(DataError):
    """A zoo name that is not in the index, or an index that names a missing or corrupt file."""


@dataclass
class ZooAgent:
    """One entry of the zoo index."""

    name: str
    path: Path
    game: str
    spec: str
    algo: str = "ppo"
    agent_steps: int = 0
    seed: int = 0
    device: str = "cpu"
    date: str = ""
    command: str = ""
    score: dict[str, float] = field(default_factory=dict)
    gaze: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, root: Path) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "path"}
        out["path"] = self.path.relative_to(root).as_posix()
        return out


def is_zoo_ref(model: Any) -> bool:
    return isinstance(model, str) and model.startswith(PREFIX)


def load_index(zoo_dir: Path | None = None) -> list[ZooAgent]:
    """The zoo's agents, in index order (a model file is checked when its agent is asked for)."""
    zoo_dir = zoo_dir or ZOO_DIR
    index_path = zoo_dir / INDEX_FILE
    if not index_path.exists():
        return []
    raw = io.read_yaml(index_path, "zoo index", ZooError)
    entries = raw.get("agents") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise ZooError(f"zoo index {index_path} has no 'agents:' list")
    agents = []
    for i, entry in enumerate(entries):
        missing = [k for k in ("name", "path", "game", "spec") if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise ZooError(f"zoo index {index_path}: entry {i + 1} lacks {', '.join(missing)}")
        known = {k: v for k, v in entry.items() if k in ZooAgent.__dataclass_fields__}
        known["path"] = zoo_dir / entry["path"]
        agents.append(ZooAgent(**known))
    return agents


def get_agent(name: str, zoo_dir: Path | None = None) -> ZooAgent:
    """The index entry of ``name`` (with or without the ``zoo:`` prefix); its model file must exist."""
    zoo_dir = zoo_dir or ZOO_DIR
    name = name[len(PREFIX):] if name.startswith(PREFIX) else name
    agents = load_index(zoo_dir)
    by_name = {a.name: a for a in agents}
    if name not in by_name:
        close = difflib.get_close_matches(name, list(by_name), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        known = ", ".join(by_name) or f"none: {zoo_dir / INDEX_FILE} lists no agents"
        raise OptionError(f"unknown zoo agent {name!r}{hint}; known: {known}")
    agent = by_name[name]
    if not agent.path.is_file():
        raise ZooError(f"zoo index {zoo_dir / INDEX_FILE} names {agent.path} for {name!r}, but that file is missing")
    return agent


def resolve_model(model: str | Path, zoo_dir: Path | None = None) -> Path | str:
    """``zoo:<name>`` -> the zoo agent's model zip; anything else unchanged."""
    return get_agent(str(model), zoo_dir).path if is_zoo_ref(model) else model


def zoo_name_of(path: str | Path, zoo_dir: Path | None = None) -> str | None:
    """The zoo name of a model zip inside the zoo folder, else None."""
    zoo_dir = zoo_dir or ZOO_DIR
    try:
        relative = Path(path).resolve().relative_to(zoo_dir.resolve())
    except ValueError:
        return None
    return relative.parts[0] if len(relative.parts) > 1 else None


def export_compact(model_path: str | Path, out: str | Path) -> Path:
    """Write ``model_path`` (an SB3 zip) as a compact zip: weights kept, the optimizer's state dropped.

    The optimizer's parameter groups (learning rate, betas) stay so that ``PPO.load`` accepts the file as is;
    only its moment estimates (2x the weights for Adam) go.
    """
    import torch

    model_path, out = Path(model_path), Path(out)
    try:
        with zipfile.ZipFile(model_path) as src:
            members = {name: src.read(name) for name in src.namelist()}
    except (zipfile.BadZipFile, OSError) as err:
        raise ZooError(f"{model_path} is not a model zip ({err})") from err
    for name, blob in list(members.items()):
        if name.endswith("optimizer.pth"):
            state = torch.load(_io.BytesIO(blob), map_location="cpu", weights_only=False)
            buffer = _io.BytesIO()
            torch.save({"state": {}, "param_groups": state["param_groups"]}, buffer)
            members[name] = buffer.getvalue()
        elif name.endswith(".pth") and name != "pytorch_variables.pth":
            # channels-last training tensors -> plain contiguous tensors (smaller, portable)
            state = torch.load(_io.BytesIO(blob), map_location="cpu", weights_only=False)
            buffer = _io.BytesIO()
            torch.save({k: v.contiguous() if torch.is_tensor(v) else v for k, v in state.items()}, buffer)
            members[name] = buffer.getvalue()

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as dst:
            for name, blob in members.items():
                dst.writestr(name, blob)

    io.atomic_write(out, write)
    return out


def add_agent(run_dir: str | Path, name: str, evaluation: str | Path | None = None,
              gaze: dict[str, Any] | None = None, model: str | Path | None = None, device: str = "cpu",
              command: str | None = None, zoo_dir: Path | None = None) -> ZooAgent:
    """Copy a training run into the zoo (compact weights, config, metrics, command) and index it.

    :param model: the zip to ship (default ``<run>/model.zip``; a checkpoint for a run stopped early).
    :param evaluation: an ``evaluation.json`` written by ``rl-saliency evaluate`` for that zip.
    """
    zoo_dir = zoo_dir or ZOO_DIR
    from rl_saliency.models import read_model_data

    run_dir = Path(run_dir)
    config = io.read_yaml(run_dir / "config.yaml", "run config", DataError)
    model = Path(model) if model else run_dir / "model.zip"
    data = read_model_data(model)
    folder = zoo_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    export_compact(model, folder / "model.zip")
    shutil.copyfile(run_dir / "config.yaml", folder / "config.yaml")
    if (run_dir / "metrics.csv").exists():
        shutil.copyfile(run_dir / "metrics.csv", folder / "metrics.csv")
    if command is None:
        command_file = run_dir.with_suffix(".cmd")
        command = command_file.read_text().strip() if command_file.exists() else ""
    score = {}
    if evaluation:
        summary = json.loads(Path(evaluation).read_text())
        score = {k: round(float(summary[f"score_{k}"]), 1) for k in ("mean", "std", "min", "max")}
        score["episodes"] = int(summary["episodes"])
    agent = ZooAgent(name=name, path=folder / "model.zip", game=config["game"],
                     spec=config["spec"].get("name", ""), algo=config.get("algo", "ppo"),
                     agent_steps=int(data.get("num_timesteps", 0)), seed=int(config["seed"]), device=device,
                     date=_dt.date.today().isoformat(), command=command, score=score, gaze=gaze or {})
    agents = [a for a in load_index(zoo_dir) if a.name != name] + [agent]
    io.write_yaml(zoo_dir / INDEX_FILE, {"agents": [a.to_dict(zoo_dir) for a in agents]})
    return agent


def format_index(agents: list[ZooAgent]) -> str:
    if not agents:
        return "the zoo is empty"
    rows = [f"{'name':28s} {'game':12s} {'spec':12s} {'steps':>9s}  {'score (mean ± std, n)':>24s}  "
            "gaze NSS, whole trial (centre bias)"]
    for a in agents:
        s = a.score
        score = f"{s['mean']:.0f} ± {s['std']:.0f}, {s.get('episodes', '?')}" if s else "-"
        rows.append(f"{'zoo:' + a.name:28s} {a.game:12s} {a.spec:12s} {a.agent_steps:>9d}  {score:>24s}  "
                    f"{_gaze_summary(a.gaze)}")
    return "\n".join(rows)


def _gaze_summary(gaze: dict[str, Any]) -> str:
    """The agent's own map's NSS under the package's default protocol, next to the centre-bias baseline's."""
    method = gaze.get("method")
    table = gaze.get("default", {})
    if not method or method not in table or "centre_bias" not in table:
        return "-"
    return f"{method} {table[method]['nss']:.3f} ({table['centre_bias']['nss']:.3f})"
