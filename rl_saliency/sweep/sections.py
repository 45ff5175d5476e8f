"""The grid's option sections as explicit dataclasses: each field typed and checked when the grid is read.

``train``, ``evaluate`` and ``gaze`` hold the options of ``rl_saliency.train.train``, ``rl_saliency.evaluate.
evaluate`` and ``rl_saliency.gaze.evaluator.gaze_eval`` that a grid may set; the arguments the sweep sets itself
for each task (model, game, seed, out, ...) are ``reserved``. A field left out (None) is not passed on, so the
command's default applies. ``tests/test_sweep.py`` checks the fields against those functions' signatures.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from rl_saliency.errors import OptionError, SpecError, check_count

DEVICES = ("auto", "cpu", "cuda")  # as rl_saliency.cli.options.DEVICES (tests/test_sweep.py checks they agree)
_BACKENDS = "rl_saliency.envs:BACKENDS"  # choice lists living in heavy modules, imported when a grid is checked
_PROTOCOLS = "rl_saliency.gaze.protocol:PROTOCOLS"
_RESOLUTIONS = "rl_saliency.gaze.protocol:RESOLUTIONS"
_POOLS = "rl_saliency.envs.replay:POOLS"


def _count(minimum: int = 1) -> Any:
    return field(default=None, metadata={"count": minimum})


def _choice(choices: tuple | str, extra: tuple = ()) -> Any:
    return field(default=None, metadata={"choices": choices, "extra": extra})


def _flag() -> Any:
    return field(default=None, metadata={"flag": True})


def _choices(spec: tuple | str) -> tuple:
    if isinstance(spec, tuple):
        return spec
    module, attr = spec.split(":")
    return tuple(getattr(importlib.import_module(module), attr))


def _check(section: str, key: str, value: Any, meta: Any, path: Path) -> Any:
    """One option's value, checked by its field's kind; counts come back as ints (``1.0e7`` -> 10000000)."""
    name = f"{section}.{key}"
    if "count" in meta:
        try:
            return check_count(value, name, meta["count"])
        except OptionError as err:
            raise SpecError(f"grid {path}: {err}") from err
    if "choices" in meta:
        choices = (*meta["extra"], *_choices(meta["choices"]))
        if value not in choices:
            raise SpecError(f"grid {path}: {name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    if "flag" in meta and not isinstance(value, bool):
        raise SpecError(f"grid {path}: {name} must be true or false, got {value!r}")
    return value


S = TypeVar("S", bound="Section")


@dataclass(frozen=True)
class Section:
    """Base of the option sections: ``read`` checks a grid's mapping, ``kwargs`` gives the options set."""

    name: ClassVar[str] = ""
    reserved: ClassVar[tuple[str, ...]] = ()  # arguments of the command the sweep sets itself, per task
    extra: ClassVar[tuple[str, ...]] = ()  # keys read by the sweep, not passed on

    @classmethod
    def options(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def read(cls: type[S], raw: Any, path: Path) -> S:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise SpecError(f"grid {path}: '{cls.name}' must be a mapping, got {raw!r}")
        allowed = sorted(cls.options())
        bad = sorted(set(raw) - set(allowed))
        if bad:
            what = "unknown or reserved" if cls.reserved else "unknown"
            sets = f" (the sweep sets {', '.join(cls.reserved)} itself)" if cls.reserved else ""
            raise SpecError(f"grid {path}: {what} {cls.name} options {bad}; allowed: {allowed}{sets}")
        meta = {f.name: f.metadata for f in fields(cls)}
        values = {k: _check(cls.name, k, v, meta[k], path) for k, v in raw.items() if v is not None}
        section = cls(**values)
        section.validate(path)
        return section

    def validate(self, path: Path) -> None:
        """Checks across fields (subclasses)."""

    def kwargs(self) -> dict[str, Any]:
        """The options the grid sets (None fields left out), as keyword arguments of the command."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None and f.name not in self.extra}


@dataclass(frozen=True)
class TrainOptions(Section):
    """``train``: options of ``rl_saliency.train.train``; ``timesteps`` defaults to each spec's n_timesteps."""

    name: ClassVar[str] = "train"
    timesteps: int | None = _count()
    n_envs: int | None = _count()
    backend: str | None = _choice(_BACKENDS)
    device: str | None = _choice(DEVICES)
    checkpoint_freq: int | None = _count()


@dataclass(frozen=True)
class EvaluateOptions(Section):
    """``evaluate``: options of ``rl_saliency.evaluate.evaluate``; ``episodes`` defaults to
    ``rl_saliency.sweep.task.EVAL_EPISODES`` (10)."""

    name: ClassVar[str] = "evaluate"
    reserved: ClassVar[tuple[str, ...]] = ("model_path", "game", "seed", "out", "progress")
    episodes: int | None = _count()
    n_envs: int | None = _count()
    max_frames: int | None = _count()
    backend: str | None = _choice(_BACKENDS)
    deterministic: bool | None = _flag()
    device: str | None = _choice(DEVICES)


@dataclass(frozen=True)
class GazeOptions(Section):
    """``gaze``: ``data`` (an Atari-HEAD root, or game -> folder of trials), ``method`` (default attention),
    ``agent_methods`` (agent -> method) and options of ``rl_saliency.gaze.evaluator.gaze_eval``."""

    name: ClassVar[str] = "gaze"
    reserved: ClassVar[tuple[str, ...]] = ("model", "atari_head", "out", "methods", "games", "game", "seed",
                                           "progress")
    extra: ClassVar[tuple[str, ...]] = ("data", "method", "agent_methods")
    data: str | dict[str, str] | None = None
    method: str | None = None
    agent_methods: dict[str, str] | None = None
    trials: list[str] | None = None
    max_frames: int | None = _count(14)
    batch_size: int | None = _count()
    stride: int | None = _count()
    resolution: int | None = _choice(_RESOLUTIONS)
    protocol: str | None = _choice(_PROTOCOLS)
    pool: str | None = _choice(_POOLS, extra=("auto",))
    strict: bool | None = _flag()
    device: str | None = _choice(DEVICES)

    @classmethod
    def read(cls, raw: Any, path: Path, agents: tuple[str, ...] = ()) -> GazeOptions:
        """Also resolves ``data`` (game names, absolute folders that exist) and checks ``agent_methods`` names
        agents of the grid."""
        if not isinstance(raw, dict) or not raw.get("data"):
            raise SpecError(f"grid {path}: 'gaze' needs 'data': an Atari-HEAD root folder, or a mapping "
                            f"game -> folder of trials")
        raw = {**raw, "data": _resolve_data(raw["data"], path)}
        agent_methods = raw.get("agent_methods") or {}
        if not isinstance(agent_methods, dict) or set(agent_methods) - set(agents):
            raise SpecError(f"grid {path}: gaze.agent_methods must map agents of the grid ({', '.join(agents)}) "
                            f"to saliency methods, got {agent_methods!r}")
        return super().read(raw, path)

    def validate(self, path: Path) -> None:
        if self.trials is not None and not (isinstance(self.trials, list)
                                            and all(isinstance(t, str | int) for t in self.trials)):
            raise SpecError(f"grid {path}: gaze.trials must be a list of trial names, got {self.trials!r}")
        from rl_saliency.saliency.registry import available_methods

        methods = available_methods()
        used = [self.method or "attention", *(self.agent_methods or {}).values()]
        bad = sorted({str(m) for m in used} - set(methods))
        if bad:
            raise SpecError(f"grid {path}: unknown saliency methods {bad} in gaze; available: {', '.join(methods)}")

    def folder_for(self, game: str) -> str | None:
        """The folder of ``game``'s Atari-HEAD trials; None when the data lacks the game."""
        if isinstance(self.data, dict):  # game -> folder of trials
            return self.data.get(game)
        from rl_saliency.envs.registry import resolve_game

        # an Atari-HEAD root holding <atari_head name>/<trial>.txt; games it lacks are not gaze-evaluated
        atari_head = resolve_game(game).atari_head
        folder = Path(str(self.data)) / atari_head if atari_head else None
        return str(folder) if folder is not None and folder.is_dir() else None

    def method_for(self, agent: str | None) -> str:
        return (self.agent_methods or {}).get(agent, self.method or "attention")


def _resolve_data(data: Any, path: Path) -> str | dict[str, str]:
    """``gaze.data`` with absolute folders (relative to the working directory) and registry game names."""
    from rl_saliency.envs.registry import resolve_game

    if isinstance(data, dict):
        resolved = {resolve_game(str(g)).name: str(Path(str(d)).expanduser().resolve()) for g, d in data.items()}
        folders = list(resolved.values())
    else:
        resolved = str(Path(str(data)).expanduser().resolve())
        folders = [resolved]
    missing = [f for f in folders if not Path(f).exists()]
    if missing:
        raise SpecError(f"grid {path}: gaze data {', '.join(missing)} does not exist")
    return resolved


@dataclass(frozen=True)
class Resources:
    """``resources``: what each task asks of Ray (``num_cpus`` default 1, ``num_gpus``, ``memory``, custom
    ``resources``)."""

    num_cpus: float = 1
    num_gpus: float | None = None
    memory: float | None = None
    resources: dict[str, float] | None = None

    @classmethod
    def read(cls, raw: Any, path: Path) -> Resources:
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise SpecError(f"grid {path}: 'resources' must be a mapping, got {raw!r}")
        allowed = sorted(f.name for f in fields(cls))
        if set(raw) - set(allowed):
            raise SpecError(f"grid {path}: unknown resources {sorted(set(raw) - set(allowed))}; allowed: {allowed}")
        for key in ("num_cpus", "num_gpus", "memory"):
            value = raw.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise SpecError(f"grid {path}: resources.{key} must be a number >= 0, got {value!r}")
        if raw.get("resources") is not None and not isinstance(raw["resources"], dict):
            raise SpecError(f"grid {path}: resources.resources must be a mapping of custom Ray resources, "
                            f"got {raw['resources']!r}")
        return cls(**{k: v for k, v in raw.items() if v is not None})

    def ray_options(self) -> dict[str, Any]:
        """Keyword arguments of ``ray.remote(...).options``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
