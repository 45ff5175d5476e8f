"""The ``novelty`` saliency method: which pixels drive an ensemble-novelty explorer's bonus
(:mod:`rl_saliency.agents.exploration`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.policies import BasePolicy

from rl_saliency.agents.exploration import NoveltyExplorer
from rl_saliency.saliency.base import check_maps, check_observations, register


@register("novelty")
class NoveltySaliency:
    """Which pixels drive the novelty: ``|d utility / d observation|``, max over the 4 stacked frames.

    The explorer comes from ``explorer=`` (constructor or ``attribute`` kwarg) or ``policy.explorer``
    (set while training with the explorer). The action of each (observation, action) utility is
    ``actions=`` if given, else the policy's deterministic action.
    """

    name = "novelty"

    def __init__(self, explorer: NoveltyExplorer | None = None):
        self.explorer = explorer

    def attribute(self, policy: BasePolicy, observations: np.ndarray | torch.Tensor,
                  explorer: NoveltyExplorer | None = None, actions: np.ndarray | None = None,
                  **_: Any) -> np.ndarray:
        explorer = explorer or self.explorer or getattr(policy, "explorer", None)
        if explorer is None:
            raise ValueError("the 'novelty' method needs a novelty explorer: pass explorer=NoveltyExplorer.load(path) "
                             "(a checkpoint's .NoveltyCallback.pt file) or train with an explorer: section")
        check_observations(observations)
        if explorer.kind not in ("random_cnn", "agent"):
            raise ValueError(f"the 'novelty' method needs image features; this explorer uses {explorer.kind!r}")
        obs_np = observations.detach().cpu().numpy() if isinstance(observations, torch.Tensor) else observations
        if actions is None:
            actions, _ = policy.predict(np.asarray(obs_np), deterministic=True)
        obs = torch.as_tensor(np.asarray(obs_np), dtype=torch.float32, device=explorer.device).requires_grad_(True)
        utility = explorer.utility(explorer.encoder(obs), actions)
        (grad,) = torch.autograd.grad(utility.sum(), obs)
        maps = grad.abs().amax(dim=1)
        return check_maps(maps.cpu().numpy(), len(obs))
