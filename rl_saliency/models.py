"""Load any SB3 Atari model zip (PPO, A2C, DQN; this package's or plain SB3 / rl-zoo) with clear errors."""

from __future__ import annotations

import base64
import json
import re
import weakref
import zipfile
from pathlib import Path
from typing import Any

import cloudpickle
import gymnasium as gym
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm

from rl_saliency.errors import ModelLoadError, OptionError

ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN}




def read_model_data(path: str | Path) -> dict[str, Any]:
    """The JSON ``data`` entry of an SB3 zip, without unpickling anything."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model file {path} does not exist")
    if path.is_dir():
        hint = f" (did you mean {path / 'model.zip'}?)" if (path / "model.zip").is_file() else ""
        raise ModelLoadError(f"model {path} is a folder, not a model zip{hint}")
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as err:
        raise ModelLoadError(f"{path} is not a Stable-Baselines3 model zip (corrupt or truncated: {err})") from err
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} is not a Stable-Baselines3 model zip (its data entry is not a mapping)")
    check_model_kind(path, data)
    return data


# ------------------------------------------------------------------------------ what kind of model a zip holds

_SB3_POLICY_MODULE = re.compile(r"^(stable_baselines3|sb3_contrib)\.(\w+)\.policies$")
_NAMES = {"ppo": "PPO", "a2c": "A2C", "dqn": "DQN", "sac": "SAC", "td3": "TD3", "ddpg": "DDPG", "qrdqn": "QR-DQN",
          "tqc": "TQC", "trpo": "TRPO", "ars": "ARS", "crossq": "CrossQ"}


def _policy_name(data: dict[str, Any]) -> str | None:
    entry = data.get("policy_class")
    if not isinstance(entry, dict):
        return None
    match = re.search(r"<function (\w+)\.__init__", str(entry.get("__init__", "")))
    return match.group(1) if match else None


def model_kind(data: dict[str, Any]) -> str | None:
    """The algorithm that saved a zip's ``data`` (ppo, a2c, dqn, sac, td3, ...), from the policy's module and the
    algorithm's own settings; None when neither tells."""
    entry = data.get("policy_class")
    module = str(entry.get("__module__", "")) if isinstance(entry, dict) else ""
    match = _SB3_POLICY_MODULE.match(module)
    if match and match.group(2) not in ("common", "ppo", "a2c"):  # PPO and A2C share common.policies
        return "dqn" if match.group(2) == "dqn" else match.group(2)
    if "target_entropy" in data:
        return "sac"
    if "policy_delay" in data:
        return "td3"
    if "buffer_size" in data or "exploration_rate" in data or "target_update_interval" in data:
        return "dqn"
    if "n_epochs" in data or "clip_range" in data:
        return "ppo"
    if "n_steps" in data:
        return "a2c"
    return None


def detect_algo(data: dict[str, Any]) -> str:
    """PPO has epochs and clipping, DQN a replay buffer, A2C neither (SAC, TD3 and others are named)."""
    kind = model_kind(data)
    if kind is None:
        raise ModelLoadError("cannot tell whether the model is PPO, A2C or DQN; pass --algo")
    return kind


def _space(entry: Any) -> tuple[str, tuple[int, ...] | None, str | None]:
    """(type name, shape, dtype) of a space as SB3 stores it in ``data`` (readable without unpickling)."""
    if not isinstance(entry, dict):
        return "", None, None
    kind = re.sub(r"^<class '(?:.*\.)?(\w+)'>$", r"\1", str(entry.get(":type:", "")))
    shape = entry.get("_shape", entry.get("shape"))
    try:
        shape = tuple(int(n) for n in shape) if shape is not None else None
    except (TypeError, ValueError):
        shape = None
    dtype = entry.get("dtype")
    return kind, shape, str(dtype) if dtype is not None else None


def check_model_kind(path: str | Path, data: dict[str, Any], algo: str | None = None) -> None:
    """The one check of what a zip holds, for every command: an algorithm this package can explain (PPO, A2C,
    DQN), Atari frames as observations (a uint8 image stack) and discrete actions. A model of another kind
    (SAC, TD3, a CartPole agent) is a ModelLoadError naming the file and what it holds."""
    kind = model_kind(data)
    policy = _policy_name(data)
    held = f"{_NAMES.get(kind, kind.upper())} model" if kind else "model"
    held += f" ({policy})" if policy else ""
    if kind is not None and kind not in ALGOS:
        raise ModelLoadError(f"{path} is a {held}; rl-saliency explains PPO, A2C and DQN agents of Atari games")
    if algo is not None and kind is not None and algo.lower() != kind:
        raise ModelLoadError(f"{path} is a {held}, not {algo.upper()}")
    obs_kind, obs_shape, obs_dtype = _space(data.get("observation_space"))
    if obs_kind and (obs_kind != "Box" or obs_shape is None or len(obs_shape) != 3 or obs_dtype != "uint8"):
        shape = f"observations of shape {obs_shape}" if obs_shape is not None else "observations"
        described = f"{shape} ({' '.join(x for x in (obs_dtype, obs_kind) if x)})"
        raise ModelLoadError(f"{path} is a {held} taking {described}, not Atari frames (a stack of 84x84 uint8 "
                             f"images): it was trained on another kind of environment")
    act_kind, act_shape, _ = _space(data.get("action_space"))
    if act_kind and act_kind not in ("Discrete", "MultiDiscrete"):
        shape = f" of shape {act_shape}" if act_shape else ""
        raise ModelLoadError(f"{path} is a {held} with {act_kind} actions{shape}; Atari agents choose discrete actions")


def resolve_device(device: str | None) -> str:
    """``auto`` -> ``cuda`` where CUDA is available, else ``cpu``; an explicit CUDA device on a machine without
    one is an OptionError (torch would fall back on the CPU without a word)."""
    import torch

    device = str(device or "auto")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise OptionError(f"--device must be auto, cpu or cuda (or cuda:N), got {device!r}") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch is a CPU build" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise OptionError(f"--device {device}: CUDA is not available on this machine ({build}); use --device "
                              f"cpu or auto")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise OptionError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


_SOURCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loaded model -> its zip, for messages


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
    """Load a model zip, choosing the algorithm from its contents unless ``algo`` is given (a zoo agent by name:
    :func:`rl_saliency.runs.open_agent`)."""
    path = Path(path)
    data = read_model_data(path)
    algo = (algo or detect_algo(data)).lower()
    if algo not in ALGOS:
        raise ModelLoadError(f"unknown algorithm {algo!r}; expected one of {', '.join(ALGOS)}")
    check_model_kind(path, data, algo)
    _check_importable(path, data)
    device = resolve_device(device)
    try:
        model = ALGOS[algo].load(path, device=device, custom_objects=custom_objects)
    except (zipfile.BadZipFile, EOFError, RuntimeError, ValueError, KeyError, AttributeError) as err:
        raise ModelLoadError(f"could not load {path} as {algo.upper()}: {err}") from err
    _SOURCES[model] = path
    return model


def check_model_fits(model: BaseAlgorithm, observation_space: gym.Space, action_space: gym.Space,
                     what: str = "the game") -> None:
    """Raise unless the model's spaces match the env's; the message names the model's zip when it was loaded
    with ``load_model``."""
    name = f"model {_SOURCES[model]}" if model in _SOURCES else "model"
    if model.observation_space.shape != observation_space.shape:
        raise ModelLoadError(f"{name} expects observations of shape {model.observation_space.shape} but {what} "
                             f"gives {observation_space.shape}")
    if model.action_space != action_space:
        raise ModelLoadError(f"{name}'s action space {model.action_space} does not fit the action space "
                             f"{action_space} of {what} (was it trained on another game?)")


def wrap_env_for_model(model: BaseAlgorithm, venv: Any) -> Any:
    """Apply the env wrapper a policy needs to act in a plain Atari VecEnv (e.g. Saccader's glimpse
    actions): a policy class may define ``wrap_env(venv) -> VecEnv``; others act on the env as is."""
    from rl_saliency.hooks import WrapsEnv

    return model.policy.wrap_env(venv) if isinstance(model.policy, WrapsEnv) else venv


def rollout_steps(model: Any) -> int:
    """Agent steps per rollout: learning happens between rollouts, so runs advance in these units."""
    if hasattr(model, "n_steps") and hasattr(model, "rollout_buffer"):
        return int(model.n_steps) * int(model.n_envs)
    train_freq = getattr(model, "train_freq", None)
    if train_freq is not None and getattr(train_freq.unit, "value", "step") == "step":
        return int(train_freq.frequency) * int(model.n_envs)
    return int(model.n_envs)
