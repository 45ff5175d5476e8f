"""What every visualisation returns, and the one call they share.

Each technique is an object with ``visualize(policy, targets, observations=None) -> Visualization``, in the style
of the saliency methods' ``attribute``: action visualisation (``action``), internal units (``unit``), the
generator prior (``generator``) and fooling frames (``fooling``). Frames are ``(K, 4, 84, 84)`` float32 in
0..255, one stack per target (or per observation for fooling), as the policy sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from stable_baselines3.common.policies import BasePolicy

from rl_saliency.envs.frames import OBS_SHAPE
from rl_saliency.errors import OptionError


@dataclass
class Visualization:
    """The result of one technique: the frames it made, where each began, a label and a table row per stack."""

    what: str  # action, unit, generator or fooling
    frames: np.ndarray  # (K, 4, 84, 84) float32 in 0..255
    start: np.ndarray  # (K, 4, 84, 84) float32: the noise, observation or generator sample each began from
    labels: list[str]
    rows: list[dict[str, Any]]  # scores before and after, one per stack
    extra: dict[str, Any] = field(default_factory=dict)  # technique-specific results (e.g. fooling summaries)

    @property
    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def frames_uint8(self) -> np.ndarray:
        """The frames as the env would give them: rounded to integer grey levels."""
        return np.clip(np.rint(self.frames), 0, 255).astype(np.uint8)


class Visualizer(Protocol):
    """What every technique is: ``visualize(policy, targets, observations=None) -> Visualization``."""

    name: str

    def visualize(self, policy: BasePolicy, targets: Sequence[Any] | None = None,
                  observations: np.ndarray | None = None) -> Visualization: ...


_REGISTRY: dict[str, Callable[..., Visualizer]] = {}


def register(name: str) -> Callable:
    """Class decorator adding a technique to the registry under ``name``."""

    def wrap(cls: Callable[..., Visualizer]) -> Callable[..., Visualizer]:
        _REGISTRY[name] = cls
        return cls

    return wrap


def check_image_policy(policy: BasePolicy) -> None:
    """An OptionError unless the policy takes stacked 84x84 frames (what every technique optimises)."""
    shape = tuple(getattr(policy.observation_space, "shape", None) or ())
    if shape != OBS_SHAPE:
        raise OptionError(f"visualisation needs a policy with image observations (4, 84, 84) (stacked Atari frames); "
                          f"this {type(policy).__name__} takes {policy.observation_space}")


def as_float_frames(policy: BasePolicy, observations: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Observations ``(N, 4, 84, 84)`` (uint8 or float, 0..255) as float32 on the policy's device."""
    shape = tuple(observations.shape)
    if len(shape) != 4 or shape[1:] != OBS_SHAPE:
        raise OptionError(f"observations must have shape (N, 4, 84, 84) (stacked grey frames); got {shape}")
    tensor = torch.as_tensor(np.asarray(observations) if not isinstance(observations, torch.Tensor)
                             else observations)
    return tensor.to(policy.device, torch.float32)


def check_positive(value: Any, option: str, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``), else an OptionError naming ``option``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not np.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise OptionError(f"{option} must be a number {bound}, got {value!r}")
    return number
