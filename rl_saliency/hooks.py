"""The optional hooks a policy, a features extractor, a saliency method or a training callback may implement,
declared once. Consumers test for them with ``isinstance`` (runtime-checkable Protocols: the names are
checked, not the signatures) instead of looking attribute names up by string.

Implemented by: :class:`AttentionReadout` the attention extractors (FLS, DAQN, RS-PPO) and the Saccader policy;
:class:`AttentionForward`, :class:`OwnSaliencyOutputs` and :class:`WrapsEnv` the Saccader policy;
:class:`SignedAttribution` the gradient-family and perturbation saliency methods; :class:`SavesState` the novelty
explorer's callback (saved with every checkpoint).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class AttentionReadout(Protocol):
    """Built-in attention: ``last_attention``, the raw map of the last forward pass (set by that pass), and its
    projection onto the 84x84 input."""

    def project_attention(self, raw: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class AttentionForward(Protocol):
    """A policy that is its own attention holder: one forward pass that sets ``last_attention``."""

    def attention_forward(self, obs: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class OwnSaliencyOutputs(Protocol):
    """A policy that is neither SB3 actor-critic nor DQN: the differentiable ``(logits, value)`` post-hoc
    saliency explains."""

    def saliency_outputs(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...


@runtime_checkable
class WrapsEnv(Protocol):
    """A policy that needs a VecEnv wrapper to act in a plain Atari env (the Saccader's glimpse actions)."""

    def wrap_env(self, venv: Any) -> Any: ...


@runtime_checkable
class SignedAttribution(Protocol):
    """A saliency method that also gives its maps before the absolute value / ReLU (the sanity checks use it)."""

    def signed_attribute(self, policy: Any, observations: np.ndarray | torch.Tensor, *args: Any,
                         **kwargs: Any) -> np.ndarray: ...


@runtime_checkable
class SavesState(Protocol):
    """A training callback whose state is saved beside every checkpoint and loaded on resume."""

    def save_state(self, path: str | Path) -> None: ...

    def load_state(self, path: str | Path) -> None: ...
