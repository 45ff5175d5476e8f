"""Post-hoc saliency for any SB3 Atari policy, on the one contract (``saliency/base.py``).

Methods: ``gradient`` (Simonyan et al. 2014), ``smoothgrad`` (Smilkov et al. 2017), ``integrated_gradients``
(Sundararajan et al. 2017), ``gradcam`` (Selvaraju et al. 2017, last conv layer) and ``perturbation``
(Greydanus et al. 2018). They work on stock SB3 ``CnnPolicy`` (PPO, A2C: actor logits and critic value; DQN:
Q-values) and on any features extractor of this package, because they only go through the policy's own
``extract_features`` (which divides uint8 images by 255): gradients are taken w.r.t. the float 0..255 input.

Target (``target=``): ``"action"`` (default) the logit (DQN: the Q-value) of the action the policy takes
(greedy), an ``int`` or one action per observation, or ``"value"`` the critic's value (DQN: max Q).
``perturbation`` also accepts ``"logits"`` (its default, as in Greydanus: the whole logit vector).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from torch import nn

from rl_saliency.errors import OptionError
from rl_saliency.hooks import OwnSaliencyOutputs
from rl_saliency.saliency.base import check_maps, obs_to_tensor, register

Target = str | int | np.ndarray | list | torch.Tensor | None
_ACTIVATIONS = (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid)


# ---------------------------------------------------------------------------------------------------------------
# Policy outputs and targets
# ---------------------------------------------------------------------------------------------------------------


def policy_outputs(policy: BasePolicy, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable ``(logits (N, A), value (N,))`` of a policy for float observations in 0..255.

    Actor-critic policies give action logits and the critic's value; DQN gives Q-values and max Q. A custom
    policy (e.g. Saccader) can define ``saliency_outputs(obs) -> (logits, value)``.
    """
    if isinstance(policy, OwnSaliencyOutputs):
        return policy.saliency_outputs(obs)
    if isinstance(policy, ActorCriticPolicy):
        features = policy.extract_features(obs)
        if policy.share_features_extractor:
            latent_pi, latent_vf = policy.mlp_extractor(features)
        else:
            pi_features, vf_features = features
            latent_pi = policy.mlp_extractor.forward_actor(pi_features)
            latent_vf = policy.mlp_extractor.forward_critic(vf_features)
        return policy.action_net(latent_pi), policy.value_net(latent_vf).squeeze(-1)
    q_net = getattr(policy, "q_net", None)
    if q_net is not None:  # DQN: the greedy action's Q-value plays the logit's role, max Q the value's
        q_values = q_net(obs)
        return q_values, q_values.max(dim=1).values
    raise TypeError(f"post-hoc saliency supports SB3 actor-critic (PPO, A2C) and DQN policies; "
                    f"{type(policy).__name__} is neither and defines no saliency_outputs(obs)")


def resolve_target(policy: BasePolicy, obs: torch.Tensor, target: Target, greedy_in_pass: bool = False
                   ) -> np.ndarray | str:
    """Fix the target once on the clean observations: ``"value"``, ``"logits"`` or one action per observation.

    Noisy copies (SmoothGrad), path points (integrated gradients) and randomised networks (sanity checks) must
    score the same action as the clean input, so ``"action"`` becomes the greedy actions here.
    """
    n = len(obs)
    if target is None or (isinstance(target, str) and target == "action"):
        if greedy_in_pass:  # a method scoring the clean input itself reads the action off its own forward pass
            return "greedy"
        with torch.no_grad():
            logits, _ = policy_outputs(policy, obs)
        return logits.argmax(dim=1).cpu().numpy()
    if isinstance(target, str):
        if target in ("value", "logits"):
            return target
        raise OptionError(f"unknown saliency target {target!r}; use 'action', 'value', 'logits' or an action index")
    actions = np.asarray(target.cpu() if isinstance(target, torch.Tensor) else target).astype(np.int64).reshape(-1)
    if actions.size == 1:
        actions = np.full(n, int(actions[0]), dtype=np.int64)
    if actions.size != n:
        raise OptionError(f"target has {actions.size} actions for {n} observations")
    n_actions = getattr(policy.action_space, "n", None)
    if n_actions is not None and (actions.min() < 0 or actions.max() >= n_actions):
        raise OptionError(f"target action out of range for an action space of {n_actions} actions: {actions}")
    return actions


def score(policy: BasePolicy, obs: torch.Tensor, target: np.ndarray | str) -> torch.Tensor:
    """One scalar per observation: the target action's logit (or Q-value), the greedy action's, or the value."""
    logits, value = policy_outputs(policy, obs)
    if isinstance(target, str):
        if target == "value":
            return value
        if target == "greedy":
            return logits.gather(1, logits.detach().argmax(dim=1, keepdim=True)).squeeze(1)
        raise ValueError(f"target {target!r} has no scalar score; gradient methods take 'action', 'value' or an int")
    index = torch.as_tensor(target, device=logits.device).long()[:, None]
    return logits.gather(1, index).squeeze(1)


def input_gradient(policy: BasePolicy, obs: torch.Tensor, target: np.ndarray | str) -> torch.Tensor:
    """d score / d input for float observations (N, 4, 84, 84); parameters get no gradient."""
    x = obs.detach().requires_grad_(True)
    with torch.enable_grad():
        s = score(policy, x, target)
        # Samples are independent (no batch norm), so the gradient of the sum is each sample's own gradient.
        (grad,) = torch.autograd.grad(s.sum(), x)
    return grad


def _float_input(policy: BasePolicy, observations: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Observations as a float tensor in 0..255 (uint8 becomes float32; float64 stays, for exact checks)."""
    obs = obs_to_tensor(policy, observations)
    return obs if obs.is_floating_point() else obs.float()


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _take(target: np.ndarray | str, index: slice | np.ndarray) -> np.ndarray | str:
    return target if isinstance(target, str) else target[index]


def reduce_channels(attribution: torch.Tensor, reduce: str) -> torch.Tensor:
    """(N, 4, 84, 84) attributions -> (N, 84, 84) maps >= 0: abs, then max or sum over the stacked frames."""
    if reduce == "max":
        return attribution.abs().amax(dim=1)
    if reduce == "sum":
        return attribution.abs().sum(dim=1)
    raise ValueError(f"reduce must be 'max' or 'sum', got {reduce!r}")


# ---------------------------------------------------------------------------------------------------------------
# Gradient methods
# ---------------------------------------------------------------------------------------------------------------


class _GradientMethod:
    """Shared plumbing: prepare the input, fix the target, chunk the batch, reduce channels."""

    name = "gradient"
    scores_clean_input = False  # True: one pass gives the action and its gradient (no separate forward)

    def __init__(self, target: Target = "action", reduce: str = "max", batch_size: int = 64):
        if reduce not in ("max", "sum"):
            raise ValueError(f"reduce must be 'max' or 'sum', got {reduce!r}")
        self.target = target
        self.reduce = reduce
        self.batch_size = batch_size

    def attributions(self, policy: BasePolicy, obs: torch.Tensor, target: np.ndarray | str) -> torch.Tensor:
        """Signed per-pixel attributions (N, 4, 84, 84)."""
        raise NotImplementedError

    def _run(self, policy: BasePolicy, observations: np.ndarray | torch.Tensor, target: Target) -> torch.Tensor:
        policy.set_training_mode(False)
        obs = _float_input(policy, observations)
        fixed = resolve_target(policy, obs, self.target if target is None else target, self.scores_clean_input)
        parts = [self.attributions(policy, obs[s], _take(fixed, s)) for s in _chunks(len(obs), self.batch_size)]
        return torch.cat(parts).detach()

    def attribute(self, policy: BasePolicy, observations: np.ndarray | torch.Tensor, target: Target = None,
                  **_: Any) -> np.ndarray:
        attribution = self._run(policy, observations, target)
        return check_maps(reduce_channels(attribution, self.reduce).cpu().numpy(), len(attribution))

    def signed_attribute(self, policy: BasePolicy, observations: np.ndarray | torch.Tensor,
                         target: Target = None) -> np.ndarray:
        """Signed maps (N, 84, 84), summed over the stacked frames (for the signed rank correlation)."""
        return self._run(policy, observations, target).sum(dim=1).cpu().numpy().astype(np.float32)


@register("gradient")
class Gradient(_GradientMethod):
    """|d score / d input| (vanilla gradient, Simonyan et al.)."""

    name = "gradient"
    scores_clean_input = True

    def attributions(self, policy: BasePolicy, obs: torch.Tensor, target: np.ndarray | str) -> torch.Tensor:
        return input_gradient(policy, obs, target)


@register("smoothgrad")
class SmoothGrad(_GradientMethod):
    """Mean gradient over ``n_samples`` copies with Gaussian noise of ``noise_level`` x the 0..255 input range."""

    name = "smoothgrad"

    def __init__(self, n_samples: int = 20, noise_level: float = 0.15, seed: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        if n_samples < 1:
            raise OptionError(f"smoothgrad needs n_samples >= 1, got {n_samples}")
        self.n_samples = n_samples
        self.sigma = noise_level * 255.0
        self.seed = seed

    def attributions(self, policy: BasePolicy, obs: torch.Tensor, target: np.ndarray | str) -> torch.Tensor:
        generator = torch.Generator(device=obs.device).manual_seed(self.seed)
        n = len(obs)
        # All noisy copies of the chunk go through the network together: (n_samples * n, 4, 84, 84).
        noisy = obs.repeat(self.n_samples, 1, 1, 1)
        noisy = noisy + self.sigma * torch.randn(noisy.shape, generator=generator, device=obs.device)
        repeated = target if isinstance(target, str) else np.tile(target, self.n_samples)
        grads = torch.cat([input_gradient(policy, noisy[s], _take(repeated, s))
                           for s in _chunks(len(noisy), self.batch_size)])
        # The mean of the signed gradients (Smilkov et al.); attribute() then takes its absolute value.
        return grads.view(self.n_samples, n, *obs.shape[1:]).mean(dim=0)


@register("integrated_gradients")
class IntegratedGradients(_GradientMethod):
    """(input - baseline) x the mean gradient along the straight path from a black frame (``n_steps``,
    midpoint Riemann sum)."""

    name = "integrated_gradients"

    def __init__(self, n_steps: int = 32, baseline: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        if n_steps < 1:
            raise OptionError(f"integrated_gradients needs n_steps >= 1, got {n_steps}")
        self.n_steps = n_steps
        self.baseline = baseline

    def attributions(self, policy: BasePolicy, obs: torch.Tensor, target: np.ndarray | str) -> torch.Tensor:
        n = len(obs)
        alphas = (torch.arange(self.n_steps, device=obs.device, dtype=obs.dtype) + 0.5) / self.n_steps
        baseline = torch.full_like(obs, self.baseline)
        path = baseline[None] + alphas[:, None, None, None, None] * (obs - baseline)[None]  # (steps, n, 4, 84, 84)
        path = path.reshape(self.n_steps * n, *obs.shape[1:])
        repeated = target if isinstance(target, str) else np.tile(target, self.n_steps)
        grads = torch.cat([input_gradient(policy, path[s], _take(repeated, s))
                           for s in _chunks(len(path), self.batch_size)])
        return (obs - baseline) * grads.view(self.n_steps, n, *obs.shape[1:]).mean(dim=0)


# ---------------------------------------------------------------------------------------------------------------
# Grad-CAM
# ---------------------------------------------------------------------------------------------------------------


def target_extractor(policy: BasePolicy, target: np.ndarray | str) -> nn.Module:
    """The features extractor that computes the target: the critic's for 'value', else the actor's (or q_net's)."""
    if isinstance(policy, ActorCriticPolicy):
        return policy.vf_features_extractor if isinstance(target, str) and target == "value" \
            else policy.pi_features_extractor
    q_net = getattr(policy, "q_net", None)
    if q_net is not None:
        return q_net.features_extractor
    return policy  # custom policies: search the whole policy


def last_conv_layer(module: nn.Module, layer: str | None = None) -> tuple[str, nn.Module, nn.Module | None]:
    """(name, layer to read A from, the activation module right after it or None).

    Default: the last ``Conv2d`` of the extractor's ``trunk`` when it has one (this package's attention
    extractors: their attention branch has convs too, but the features are the trunk's) or of the whole module.
    ``layer`` names a module (``module.named_modules()`` name) to use instead.
    """
    named = list(module.named_modules())
    if layer is not None:
        names = dict(named)
        if layer not in names:
            convs = [n for n, m in named if isinstance(m, nn.Conv2d)]
            raise OptionError(f"gradcam layer {layer!r} not found in {type(module).__name__}; conv layers: {convs}")
        return layer, names[layer], None
    trunk = getattr(module, "trunk", None)
    prefix = "trunk." if isinstance(trunk, nn.Module) else ""
    search = trunk if isinstance(trunk, nn.Module) else module
    named = list(search.named_modules())
    convs = [i for i, (_, m) in enumerate(named) if isinstance(m, nn.Conv2d)]
    if not convs:
        raise OptionError(f"gradcam needs a convolutional layer; {type(module).__name__} has none")
    i = convs[-1]
    activation = named[i + 1][1] if i + 1 < len(named) and isinstance(named[i + 1][1], _ACTIVATIONS) else None
    return prefix + named[i][0], named[i][1], activation


@register("gradcam")
class GradCAM:
    """ReLU(sum_c mean_spatial(d score / d A_c) A_c) at the last conv layer (after its activation), upsampled
    bilinearly to 84x84."""

    name = "gradcam"

    def __init__(self, target: Target = "action", layer: str | None = None, batch_size: int = 64):
        self.target = target
        self.layer = layer
        self.batch_size = batch_size

    def _cam(self, policy: BasePolicy, obs: torch.Tensor, target: np.ndarray | str) -> torch.Tensor:
        _, conv, activation = last_conv_layer(target_extractor(policy, target), self.layer)
        captured: dict[str, torch.Tensor] = {}
        armed = [False]

        def on_conv(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
            captured["A"] = out
            armed[0] = activation is not None

        def on_activation(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
            # An activation instance may be shared by several layers: take only the call right after the conv.
            if armed[0]:
                captured["A"] = out
                armed[0] = False

        handles = [conv.register_forward_hook(on_conv)]
        if activation is not None:
            handles.append(activation.register_forward_hook(on_activation))
        try:
            with torch.enable_grad():
                s = score(policy, obs.detach(), target)
                feature_maps = captured["A"]
                (grad,) = torch.autograd.grad(s.sum(), feature_maps)
        finally:
            for handle in handles:
                handle.remove()
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = (weights * feature_maps).sum(dim=1, keepdim=True).detach()
        return F.interpolate(cam, size=obs.shape[-2:], mode="bilinear", align_corners=False)[:, 0]

    def _run(self, policy: BasePolicy, observations: np.ndarray | torch.Tensor, target: Target) -> torch.Tensor:
        policy.set_training_mode(False)
        obs = _float_input(policy, observations)
        fixed = resolve_target(policy, obs, self.target if target is None else target, greedy_in_pass=True)
        return torch.cat([self._cam(policy, obs[s], _take(fixed, s)) for s in _chunks(len(obs), self.batch_size)])

    def attribute(self, policy: BasePolicy, observations: np.ndarray | torch.Tensor, target: Target = None,
                  **_: Any) -> np.ndarray:
        cam = self._run(policy, observations, target)
        return check_maps(cam.clamp_min(0).cpu().numpy(), len(cam))

    def signed_attribute(self, policy: BasePolicy, observations: np.ndarray | torch.Tensor,
                         target: Target = None) -> np.ndarray:
        """The map before the ReLU."""
        return self._run(policy, observations, target).cpu().numpy().astype(np.float32)


POST_HOC_METHODS = ("gradient", "smoothgrad", "integrated_gradients", "gradcam", "perturbation")
