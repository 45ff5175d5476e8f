"""Policy-free reference maps, on the saliency contract: centre bias, uniform, frame intensity."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.policies import BasePolicy

from rl_saliency.saliency.base import check_observations, register


def _as_numpy(observations: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(observations, torch.Tensor):
        return observations.detach().cpu().numpy()
    return np.asarray(observations)


@register("centre_bias")
class CentreBias:
    """A fixed Gaussian centred on the frame (sigma as a fraction of the side)."""

    name = "centre_bias"

    def __init__(self, sigma_fraction: float = 0.25):
        ys, xs = np.mgrid[0:84, 0:84].astype(np.float32)
        sigma = sigma_fraction * 84
        self.map = np.exp(-((ys - 41.5) ** 2 + (xs - 41.5) ** 2) / (2 * sigma**2)).astype(np.float32)

    def attribute(self, policy: BasePolicy | None, observations: Any, **_: Any) -> np.ndarray:
        check_observations(observations)
        return np.repeat(self.map[None], len(observations), axis=0)


@register("uniform")
class Uniform:
    """A constant map: carries no information (NSS 0, AUC 0.5)."""

    name = "uniform"

    def attribute(self, policy: BasePolicy | None, observations: Any, **_: Any) -> np.ndarray:
        check_observations(observations)
        return np.ones((len(observations), 84, 84), dtype=np.float32)


@register("intensity")
class Intensity:
    """The newest frame's own grey level (bright objects on dark backgrounds)."""

    name = "intensity"

    def attribute(self, policy: BasePolicy | None, observations: Any, **_: Any) -> np.ndarray:
        check_observations(observations)
        return _as_numpy(observations)[:, -1].astype(np.float32)
