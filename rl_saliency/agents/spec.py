"""Declarative agent specs (``agents/*.yaml``, rl-zoo style) -> SB3 models.

A spec names the algorithm, the policy, an optional features extractor (a class exported by
``rl_saliency.agents`` or ``module:Class``), the hyperparameters (``lin_<x>`` is a linear schedule
from x to 0, as in rl-zoo), and optional ``env_wrapper`` (a VecEnvWrapper ``module:Class``) and
``explorer`` sections.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from rl_saliency import io
from rl_saliency.errors import SpecError
from rl_saliency.models import ALGOS
from rl_saliency.paths import AGENTS_DIR

DEFAULT_SPEC = "nature"


def linear_schedule(initial: float):
    """Linear decay from ``initial`` to 0 over training (SB3 passes progress_remaining 1 -> 0)."""

    def schedule(progress_remaining: float) -> float:
        return progress_remaining * initial

    schedule.initial = initial  # type: ignore[attr-defined]
    return schedule


def _parse_value(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        try:
            return linear_schedule(float(value[4:]))
        except ValueError:
            raise ValueError(f"{value!r} is not a linear schedule: expected lin_<number>, e.g. lin_2.5e-4") from None
    return value


def import_object(name: str, default_module: str | None = None) -> Any:
    """``module:attr`` (or a bare name looked up in ``default_module``) -> the object, with a clear error."""
    module_name, _, attr = name.rpartition(":") if ":" in name else (default_module or "", "", name)
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise SpecError(f"cannot import {name!r} (looked in module {module_name!r}): {err}") from err


@dataclass
class AgentSpec:
    name: str
    algo: str = "ppo"
    policy: str = "CnnPolicy"
    features_extractor: str | None = None
    features_extractor_kwargs: dict[str, Any] = field(default_factory=dict)
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    hyperparams: dict[str, Any] = field(default_factory=dict)
    n_envs: int = 8
    n_timesteps: int = 10_000_000
    env_wrapper: str | None = None
    env_wrapper_kwargs: dict[str, Any] = field(default_factory=dict)
    explorer: dict[str, Any] | None = None
    tensorboard: dict[str, Any] | None = None  # saliency images in TensorBoard (render/tensorboard.py)
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "path"
               and not (k == "tensorboard" and v is None)}  # absent: older runs' and sweeps' specs compare equal
        return out

    def resolved_policy(self) -> Any:
        if ":" in self.policy:
            return import_object(self.policy)
        return self.policy  # SB3 alias such as CnnPolicy

    def resolved_policy_kwargs(self) -> dict[str, Any]:
        kwargs = copy.deepcopy(self.policy_kwargs)
        if self.features_extractor:
            kwargs["features_extractor_class"] = import_object(self.features_extractor, "rl_saliency.agents")
            kwargs["features_extractor_kwargs"] = copy.deepcopy(self.features_extractor_kwargs)
        return kwargs

    def wrap_env(self, venv: VecEnv) -> VecEnv:
        """Apply the spec's VecEnv wrapper (e.g. Saccader's glimpse actions), if any."""
        if not self.env_wrapper:
            return venv
        return import_object(self.env_wrapper)(venv, **self.env_wrapper_kwargs)

    def parsed_hyperparams(self) -> dict[str, Any]:
        """The hyperparameters as the algorithm takes them (``lin_<x>`` -> schedule); a name the algorithm does
        not take or a malformed schedule is a SpecError naming the spec, before any env is built."""
        accepted = set(inspect.signature(ALGOS[self.algo].__init__).parameters) - {"self", "policy", "env"}
        unknown = sorted(set(self.hyperparams) - accepted)
        if unknown:
            raise SpecError(f"agent spec {self.path or self.name}: {self.algo.upper()} has no hyperparameters "
                            f"{unknown}")
        parsed = {}
        for key, value in self.hyperparams.items():
            try:
                parsed[key] = _parse_value(value)
            except ValueError as err:
                raise SpecError(f"agent spec {self.path or self.name}: hyperparameter {key}: {err}") from err
        return parsed

    def build_model(self, env: VecEnv, seed: int | None = None, device: str = "auto", verbose: int = 0,
                    **overrides: Any) -> BaseAlgorithm:
        algo_cls = ALGOS[self.algo]
        hyperparams = self.parsed_hyperparams()
        hyperparams.update(overrides)
        try:
            return algo_cls(self.resolved_policy(), env, policy_kwargs=self.resolved_policy_kwargs(), seed=seed,
                            device=device, verbose=verbose, **hyperparams)
        except (TypeError, AssertionError, ValueError) as err:  # SB3 checks its arguments with asserts
            raise SpecError(f"agent spec {self.path or self.name}: bad hyperparameter for {self.algo.upper()}: "
                            f"{err}") from err


def spec_path(name_or_path: str | Path) -> Path:
    """A spec by path, or by name in the project's ``agents/`` folder (``fls_sparse``)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise SpecError(f"agent spec {path} does not exist; available: {', '.join(available_specs())}")
        return path
    candidate = AGENTS_DIR / f"{name_or_path}.yaml"
    if not candidate.exists():
        raise SpecError(f"no agent spec named {name_or_path!r}; available: {', '.join(available_specs())}")
    return candidate


def available_specs() -> list[str]:
    return sorted(p.stem for p in AGENTS_DIR.glob("*.yaml"))


def load_spec(name_or_path: str | Path = DEFAULT_SPEC) -> AgentSpec:
    path = spec_path(name_or_path)
    raw = io.read_yaml(path, "agent spec", SpecError)
    if raw is None or raw == {}:
        # an empty spec would train SB3's default PPO (2048-step rollouts, no rl-zoo recipe), not what anyone meant
        raise SpecError(f"agent spec {path} is empty; a spec names at least its algo, policy and hyperparams (copy "
                        f"{AGENTS_DIR / (DEFAULT_SPEC + '.yaml')}, the rl-zoo Atari recipe, and change what differs)")
    return spec_from_dict(raw, path)


# the expected type of each spec key (None may also be given where the default is None)
_TYPES: dict[str, type] = {
    "name": str, "algo": str, "policy": str, "features_extractor": str, "features_extractor_kwargs": dict,
    "policy_kwargs": dict, "hyperparams": dict, "env_wrapper": str, "env_wrapper_kwargs": dict, "explorer": dict,
    "tensorboard": dict}


def _spec_count(value: Any, key: str, path: str | Path | None) -> int:
    """A count in a spec (``n_timesteps: 1e7``, ``n_envs: 8``) as an int >= 1, or a SpecError naming it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not number.is_integer() or number < 1:
        raise SpecError(f"agent spec {path}: {key} must be a whole number >= 1 (e.g. 1e7), got {value!r}")
    return int(number)


def spec_from_dict(raw: dict[str, Any], path: str | Path | None = None) -> AgentSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"agent spec {path} must be a mapping")
    known = set(AgentSpec.__dataclass_fields__) - {"path"}
    unknown = set(raw) - known
    if unknown:
        raise SpecError(f"agent spec {path}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    for key, kind in _TYPES.items():
        if key in raw and raw[key] is not None and not isinstance(raw[key], kind):
            raise SpecError(f"agent spec {path}: {key} must be {'text' if kind is str else 'a mapping'}, got "
                            f"{raw[key]!r}")
    raw = dict(raw)
    raw["name"] = raw.get("name") or (Path(path).stem if path else "agent")
    for key in ("features_extractor_kwargs", "policy_kwargs", "hyperparams", "env_wrapper_kwargs"):
        if key in raw and raw[key] is None:
            raw[key] = {}
    spec = AgentSpec(**raw, path=str(path) if path else None)
    spec.algo = spec.algo.lower()
    if spec.algo not in ALGOS:
        raise SpecError(f"agent spec {path}: algo must be one of {', '.join(ALGOS)}, got {spec.algo!r}")
    spec.n_timesteps = _spec_count(spec.n_timesteps, "n_timesteps", path)
    spec.n_envs = _spec_count(spec.n_envs, "n_envs", path)
    return spec
