"""Saliency methods on one contract: (policy, observations (N, 4, 84, 84)) -> maps (N, 84, 84) float32 >= 0."""

from rl_saliency.envs.frames import upsample_to_frame
from rl_saliency.saliency.base import SaliencyMethod, check_maps, register
from rl_saliency.saliency.registry import available_methods, get_method, saliency

__all__ = ["SaliencyMethod", "available_methods", "check_maps", "get_method", "register", "saliency",
           "upsample_to_frame"]
