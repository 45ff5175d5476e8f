"""Bootstrapped-ensemble Jensen-Shannon novelty explorer (MAX-style disagreement bonus for SB3).

An ensemble of K Gaussian forward models predicts the change of the observation's features given
(features, action); each member trains on its own bootstrap weights of the transitions. The
intrinsic reward of a transition is the disagreement among the members' predictive Gaussians,
measured by the Jensen-Renyi divergence (closed form, Shyam et al. 2019, "MAX") or, for checking, a
Monte-Carlo estimate of the Shannon Jensen-Shannon divergence.

Pieces, as ``train`` wires them (``make_explorer(config, venv, seed) -> (venv, callback)``):

- :class:`NoveltyExplorer` holds the features encoder (fixed random CNN for images, identity or a
  fixed random MLP for vectors, or the agent's own detached features), the ensemble, a buffer of
  recent transitions and the intrinsic-return normaliser.
- :class:`NoveltyRewardWrapper` (a VecEnvWrapper) adds ``beta * r_int / std(discounted r_int
  return)`` to the env reward; ``info["episode"]`` (written below it by Monitor) stays untouched, the
  raw bonus goes to ``info["intrinsic_reward"]``.
- :class:`NoveltyCallback` trains the ensemble at each rollout end, logs ``explorer/*`` to the SB3
  logger and saves / loads the explorer with the checkpoints.
- Saliency method ``novelty`` (``rl_saliency/saliency/novelty.py``): the gradient of the utility w.r.t. the
  observation, on the saliency contract; give it the explorer with ``explorer=`` or let it read
  ``policy.explorer`` (set by the callback during training, and by ``rl_saliency.runs.open_agent`` for a
  trained run).

Modules: ``divergence`` (the divergences), ``networks`` (features encoders, the Gaussian ensemble),
``explorer`` (:class:`NoveltyExplorer`, its config and saved state), ``training`` (the SB3 wrapper and callback).
"""

from rl_saliency.agents.exploration.divergence import (
    DIVERGENCES,
    jensen_renyi_divergence,
    jensen_shannon_mc,
)
from rl_saliency.agents.exploration.explorer import (
    DEFAULTS,
    STATE_KEYS,
    NoveltyExplorer,
    check_config,
    read_state,
    var_decay_for,
)
from rl_saliency.agents.exploration.networks import (
    AgentFeatures,
    GaussianEnsemble,
    IdentityFeatures,
    RandomCNNFeatures,
    RandomMLPFeatures,
)
from rl_saliency.agents.exploration.training import NoveltyCallback, NoveltyRewardWrapper, make_explorer

__all__ = ["DEFAULTS", "DIVERGENCES", "STATE_KEYS", "AgentFeatures", "GaussianEnsemble", "IdentityFeatures",
           "NoveltyCallback", "NoveltyExplorer", "NoveltyRewardWrapper", "RandomCNNFeatures", "RandomMLPFeatures",
           "check_config", "jensen_renyi_divergence", "jensen_shannon_mc", "make_explorer", "read_state",
           "var_decay_for"]
