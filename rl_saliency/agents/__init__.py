"""Agents: features extractors with built-in attention, policies, exploration, and agent specs."""

from rl_saliency.agents.extractors import (
    DAQN,
    RSPPO,
    AttentionExtractor,
    DenseFLS,
    SparseFLS,
    SparseFLSPool,
    attention_to_frame,
    paper_policy_kwargs,
)
from rl_saliency.agents.spec import AgentSpec, available_specs, load_spec

__all__ = ["DAQN", "RSPPO", "AgentSpec", "AttentionExtractor", "DenseFLS", "SparseFLS", "SparseFLSPool",
           "attention_to_frame", "available_specs", "load_spec", "paper_policy_kwargs"]
