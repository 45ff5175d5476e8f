"""The one saliency contract.

Every method maps a policy and a batch of observations ``(N, 4, 84, 84)`` (uint8 or float, as the
env produces them) to maps ``(N, 84, 84)`` float32 >= 0. Gaze evaluation, rendering and sanity checks
use nothing else, so attention readouts, gradients and perturbation are interchangeable.

Attention readouts: an extractor (or a policy) that has attention sets ``last_attention`` (its raw
map at native resolution, ``(N, h, w)``) on every forward pass and implements
``project_attention(raw) -> (N, 84, 84)``; the map comes from the same forward pass that produced
the features.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
from stable_baselines3.common.policies import BasePolicy

from rl_saliency.envs.frames import FRAME_SHAPE, OBS_SHAPE, upsample_to_frame  # noqa: F401 - re-exported


class SaliencyMethod(Protocol):
    """What every method is: ``attribute(policy, observations) -> (N, 84, 84) float32 >= 0``."""

    name: str

    def attribute(self, policy: BasePolicy, observations: np.ndarray | torch.Tensor, **kwargs: Any) -> np.ndarray: ...


_REGISTRY: dict[str, Callable[..., SaliencyMethod]] = {}


def register(name: str) -> Callable:
    """Class decorator adding a method to the registry under ``name``."""

    def wrap(cls: Callable[..., SaliencyMethod]) -> Callable[..., SaliencyMethod]:
        _REGISTRY[name] = cls
        return cls

    return wrap


def check_observations(observations: np.ndarray | torch.Tensor) -> None:
    """Raise a clear error unless observations are a batch ``(N, 4, 84, 84)``."""
    shape = tuple(observations.shape)
    if len(shape) != 4 or shape[1:] != OBS_SHAPE:
        raise ValueError(f"saliency expects observations of shape (N, 4, 84, 84) (stacked grey frames, channels "
                         f"first); got {shape}")


def check_maps(maps: np.ndarray, n: int) -> np.ndarray:
    """Assert the contract on a method's output and return it as float32."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape != (n, 84, 84):
        raise AssertionError(f"saliency maps must have shape ({n}, 84, 84), got {maps.shape}")
    if not np.isfinite(maps).all() or (maps < 0).any():
        raise AssertionError("saliency maps must be finite and >= 0")
    return maps


def obs_to_tensor(policy: BasePolicy, observations: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Observations as the policy's float input tensor on its device (uint8 stays 0..255 here; the
    policy's own preprocessing divides by 255)."""
    check_observations(observations)
    if isinstance(observations, torch.Tensor):
        return observations.to(policy.device)
    tensor, _ = policy.obs_to_tensor(np.asarray(observations))
    return tensor
