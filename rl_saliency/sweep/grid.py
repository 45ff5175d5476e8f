"""The grid file: games x agents x seeds and the option sections, read and checked before anything runs."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rl_saliency import io
from rl_saliency.errors import SpecError
from rl_saliency.sweep.sections import EvaluateOptions, GazeOptions, Resources, TrainOptions

GRID_KEYS = {"name", "games", "agents", "seeds", "train", "evaluate", "gaze", "resources", "max_retries"}
SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class Task:
    """One cell of the grid: everything a worker needs, as plain data (Ray ships it by value)."""

    game: str
    agent: str
    seed: int
    spec: dict[str, Any]  # the agent spec with the grid's overrides applied
    train: dict[str, Any]  # the options the grid sets (TrainOptions.kwargs), likewise evaluate
    evaluate: dict[str, Any]
    gaze: dict[str, Any] | None  # data folder, method and options; None: no Atari-HEAD data for this game

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
    train: TrainOptions = field(default_factory=TrainOptions)
    evaluate: EvaluateOptions = field(default_factory=EvaluateOptions)
    gaze: GazeOptions | None = None
    resources: Resources = field(default_factory=Resources)
    max_retries: int = 2

    def tasks(self) -> list[Task]:
        """Tasks in grid order: game, then agent, then seed."""
        return [Task(game=game, agent=agent, seed=seed, spec=copy.deepcopy(spec), train=self.train.kwargs(),
                     evaluate=self.evaluate.kwargs(), gaze=self.gaze_for(game, agent))
                for game in self.games for agent, spec in self.agents.items() for seed in self.seeds]

    def gaze_for(self, game: str, agent: str | None = None) -> dict[str, Any] | None:
        """Gaze-eval settings for one cell: its game's Atari-HEAD folder, the agent's saliency method and the
        options of gaze_eval. None when the grid gives no Atari-HEAD data for the game."""
        folder = self.gaze.folder_for(game) if self.gaze else None
        if not folder:
            return None
        return {"data": folder, "method": self.gaze.method_for(agent), **self.gaze.kwargs()}


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
    """An ``agents`` entry (a spec name or path, or a mapping with ``spec``/``name`` and spec overrides) as its
    column name and merged spec dict, checked as a spec (hyperparameters included) now, not in a worker."""
    from rl_saliency.agents.spec import load_spec, spec_from_dict

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
    spec_from_dict(merged, f"in grid {path}: agent {name}").parsed_hyperparams()
    return name, merged


def _seeds(value: Any, path: Path) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        if len(set(value)) != len(value):
            raise SpecError(f"grid {path}: seeds {value} repeat a seed")
        return list(value)
    raise SpecError(f"grid {path}: seeds must be a positive count or a list of integers, got {value!r}")


def _games(raw: list[Any], path: Path) -> list[str]:
    from rl_saliency.envs.registry import UnknownGameError, resolve_game

    try:
        games = [resolve_game(str(g)).name for g in raw]
    except UnknownGameError as err:
        raise UnknownGameError(f"grid {path}: {err}") from err
    if len(set(games)) != len(games):
        raise SpecError(f"grid {path}: games {raw} name a game twice")
    return games


def load_grid(path: str | Path) -> Grid:
    """Read and validate a grid file; every problem is a SpecError (or UnknownGameError) naming the file."""
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

    games = _games(raw["games"], path)
    agents: dict[str, dict[str, Any]] = {}
    for entry in raw["agents"]:
        name, spec = _load_agent(entry, path)
        if name in agents:
            raise SpecError(f"grid {path}: two agents are named {name!r}; give one a 'name'")
        agents[name] = spec
    train = TrainOptions.read(raw.get("train"), path)
    evaluate = EvaluateOptions.read(raw.get("evaluate"), path)
    gaze = GazeOptions.read(raw["gaze"], path, tuple(agents)) if raw.get("gaze") is not None else None
    resources = Resources.read(raw.get("resources"), path)
    max_retries = raw.get("max_retries", 2)
    if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
        raise SpecError(f"grid {path}: max_retries must be an integer >= 0, got {max_retries!r}")
    return Grid(path=path, name=str(raw.get("name") or path.stem), games=games, agents=agents,
                seeds=_seeds(raw.get("seeds", 1), path), train=train, evaluate=evaluate, gaze=gaze,
                resources=resources, max_retries=max_retries)
