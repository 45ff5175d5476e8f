"""Load any SB3 Atari model zip (PPO, A2C, DQN; this package's or plain SB3 / rl-zoo) with clear errors."""

from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path
from typing import Any

import cloudpickle
import gymnasium as gym
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm

ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN}


class ModelLoadError(RuntimeError):
    """A model zip that cannot be used: corrupt, missing classes, or not fitting the game."""


def _resolve_zoo(path: str | Path) -> str | Path:
    from rl_saliency.agents.zoo import resolve_model  # local: the zoo imports errors, which imports this module

    return resolve_model(path)


def read_model_data(path: str | Path) -> dict[str, Any]:
    """The JSON ``data`` entry of an SB3 zip, without unpickling anything."""
    path = Path(_resolve_zoo(path))
    if not path.exists():
        raise ModelLoadError(f"model file {path} does not exist")
    if path.is_dir():
        hint = f" (did you mean {path / 'model.zip'}?)" if (path / "model.zip").is_file() else ""
        raise ModelLoadError(f"model {path} is a folder, not a model zip{hint}")
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as err:
        raise ModelLoadError(f"{path} is not a Stable-Baselines3 model zip (corrupt or truncated: {err})") from err


def detect_algo(data: dict[str, Any]) -> str:
    """PPO has epochs and clipping, DQN a replay buffer, A2C neither."""
    if "buffer_size" in data or "exploration_rate" in data or "target_update_interval" in data:
        return "dqn"
    if "n_epochs" in data or "clip_range" in data:
        return "ppo"
    if "n_steps" in data:
        return "a2c"
    raise ModelLoadError("cannot tell whether the model is PPO, A2C or DQN; pass --algo")


def _check_importable(path: Path, data: dict[str, Any]) -> None:
    """Unpickle the stored classes ourselves so a missing one is named, not a deep traceback."""
    for key in ("policy_class", "policy_kwargs"):
        entry = data.get(key)
        if not isinstance(entry, dict) or ":serialized:" not in entry:
            continue
        try:
            cloudpickle.loads(base64.b64decode(entry[":serialized:"].encode()))
        except (ModuleNotFoundError, AttributeError, ImportError) as err:
            raise ModelLoadError(
                f"model {path} was saved with a custom class that cannot be imported here ({key}: {err}). Install "
                f"the package that defines it, or pass custom_objects to replace it.") from err


def load_model(path: str | Path, algo: str | None = None, device: str = "auto",
               custom_objects: dict[str, Any] | None = None) -> BaseAlgorithm:
    """Load a model zip (or ``zoo:<name>``), choosing the algorithm from its contents unless ``algo`` is given."""
    path = Path(_resolve_zoo(path))
    data = read_model_data(path)
    algo = (algo or detect_algo(data)).lower()
    if algo not in ALGOS:
        raise ModelLoadError(f"unknown algorithm {algo!r}; expected one of {', '.join(ALGOS)}")
    _check_importable(path, data)
    try:
        return ALGOS[algo].load(path, device=device, custom_objects=custom_objects)
    except (zipfile.BadZipFile, EOFError, RuntimeError, ValueError, KeyError) as err:
        raise ModelLoadError(f"could not load {path} as {algo.upper()}: {err}") from err


def check_model_fits(model: BaseAlgorithm, observation_space: gym.Space, action_space: gym.Space,
                     what: str = "the game") -> None:
    """Raise unless the model's spaces match the env's."""
    if model.observation_space.shape != observation_space.shape:
        raise ModelLoadError(f"model expects observations of shape {model.observation_space.shape} but {what} "
                             f"gives {observation_space.shape}")
    if model.action_space != action_space:
        raise ModelLoadError(f"model's action space {model.action_space} does not fit the action space "
                             f"{action_space} of {what} (was it trained on another game?)")


def wrap_env_for_model(model: BaseAlgorithm, venv: Any) -> Any:
    """Apply the env wrapper a policy needs to act in a plain Atari VecEnv (e.g. Saccader's glimpse
    actions): a policy class may define ``wrap_env(venv) -> VecEnv``; others act on the env as is."""
    hook = getattr(model.policy, "wrap_env", None)
    return hook(venv) if callable(hook) else venv
