"""Agents: features extractors with built-in attention, policies, exploration, and agent specs."""

from rl_saliency.agents.extractors import DAQN, RSPPO, AttentionExtractor, DenseFLS, SparseFLS, SparseFLSPool
from rl_saliency.agents.spec import AgentSpec, available_specs, load_spec

__all__ = ["DAQN", "RSPPO", "AgentSpec", "AttentionExtractor", "DenseFLS", "SparseFLS", "SparseFLSPool",
           "available_specs", "load_spec"]
