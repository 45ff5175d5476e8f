"""Visualisation techniques by name. Importing this module imports every module that defines techniques (each
registers with :func:`rl_saliency.visualize.base.register`), so nothing imports the registry back."""

from __future__ import annotations

from typing import Any

from rl_saliency.errors import OptionError
from rl_saliency.visualize import actions, fooling, generator  # noqa: F401 - they register
from rl_saliency.visualize.base import _REGISTRY, Visualizer


def available_visualizers() -> list[str]:
    return sorted(_REGISTRY)


def get_visualizer(name: str, **kwargs: Any) -> Visualizer:
    """A technique by name (``action``, ``unit``, ``generator``, ``fooling``) with its options."""
    if name not in _REGISTRY:
        raise OptionError(f"unknown visualisation {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)
