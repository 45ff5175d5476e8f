"""Saliency methods by name. Importing this module imports every module that defines methods (each registers
its classes with :func:`rl_saliency.saliency.base.register`), so the registry is complete and nothing imports it
back."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.policies import BasePolicy

from rl_saliency.errors import OptionError
from rl_saliency.saliency import attention, baselines, methods, novelty, perturbation  # noqa: F401 - they register
from rl_saliency.saliency.base import _REGISTRY, SaliencyMethod


def available_methods() -> list[str]:
    return sorted(_REGISTRY)


def get_method(name: str, **kwargs: Any) -> SaliencyMethod:
    """A saliency method by name (``attention``, ``gradient``, ``centre_bias``, ...)."""
    if name not in _REGISTRY:
        raise OptionError(f"unknown saliency method {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)


def saliency(policy: BasePolicy, observations: np.ndarray | torch.Tensor, method: str = "attention",
             **kwargs: Any) -> np.ndarray:
    """Shortcut: ``get_method(method).attribute(policy, observations)``."""
    return get_method(method).attribute(policy, observations, **kwargs)
