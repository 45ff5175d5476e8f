"""Agents: features extractors with built-in attention, policies, exploration, and agent specs."""

from rl_saliency.agents.spec import AgentSpec, available_specs, load_spec

__all__ = ["AgentSpec", "available_specs", "load_spec"]
