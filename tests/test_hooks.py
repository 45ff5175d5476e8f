"""The optional hooks (rl_saliency/hooks.py) are declared where they are implemented: a renamed hook
breaks this test, not a consumer at run time."""

from __future__ import annotations

from stable_baselines3.common.torch_layers import NatureCNN

from rl_saliency.agents import SparseFLS
from rl_saliency.agents.exploration import NoveltyCallback
from rl_saliency.agents.saccader import SaccaderPolicy
from rl_saliency.hooks import (
    AttentionForward,
    AttentionReadout,
    OwnSaliencyOutputs,
    SavesState,
    SignedAttribution,
    WrapsEnv,
)
from rl_saliency.saliency import get_method


def test_the_implementations_declare_their_hooks():
    assert issubclass(SparseFLS, AttentionReadout) and not issubclass(NatureCNN, AttentionReadout)
    for hook in (AttentionReadout, AttentionForward, OwnSaliencyOutputs, WrapsEnv):
        assert issubclass(SaccaderPolicy, hook), hook.__name__
    assert issubclass(NoveltyCallback, SavesState)


def test_signed_methods_are_the_gradient_family_and_perturbation():
    signed = {name for name in ("gradient", "smoothgrad", "integrated_gradients", "gradcam", "perturbation",
                                "attention", "centre_bias") if isinstance(get_method(name), SignedAttribution)}
    assert signed == {"gradient", "smoothgrad", "integrated_gradients", "gradcam", "perturbation"}
