"""``attention``: the built-in attention of FLS, DAQN, RS-PPO extractors and Saccader policies."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.policies import BasePolicy

from rl_saliency.errors import OptionError
from rl_saliency.hooks import AttentionReadout
from rl_saliency.saliency.base import check_maps, obs_to_tensor, register


def attention_module(policy: BasePolicy) -> Any:
    """The object holding the attention readout: the policy itself or its features extractor."""
    q_net = getattr(policy, "q_net", None)  # DQN keeps its extractor inside the Q-network
    candidates = [policy, getattr(policy, "features_extractor", None), getattr(policy, "pi_features_extractor", None),
                  getattr(q_net, "features_extractor", None)]
    for candidate in candidates:
        if candidate is not None and isinstance(candidate, AttentionReadout):
            return candidate
    raise OptionError(
        f"the 'attention' method needs a policy with built-in attention (FLS, DAQN, RS-PPO, Saccader); "
        f"{type(policy).__name__} with extractor {type(getattr(policy, 'features_extractor', None)).__name__} has "
        f"none. Use a post-hoc method such as 'gradient' or 'perturbation'.")


def q_net_holds(policy: BasePolicy, holder: Any) -> bool:
    q_net = getattr(policy, "q_net", None)
    return q_net is not None and getattr(q_net, "features_extractor", None) is holder


@register("attention")
class Attention:
    """Read the attention map of the forward pass and project it onto the 84x84 input."""

    name = "attention"

    def attribute(self, policy: BasePolicy, observations: np.ndarray | torch.Tensor, **_: Any) -> np.ndarray:
        holder = attention_module(policy)
        obs = obs_to_tensor(policy, observations)
        with torch.no_grad():
            if holder is policy:
                policy.attention_forward(obs)
            elif q_net_holds(policy, holder):
                policy.q_net.extract_features(obs, holder)
            else:
                policy.extract_features(obs, holder)
            maps = holder.project_attention(holder.last_attention)
        return check_maps(maps.detach().cpu().numpy(), len(obs))
