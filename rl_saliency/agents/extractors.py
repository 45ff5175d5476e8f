"""Features extractors whose attention map is the saliency: Free-Lunch Saliency and its baselines.

The architectures of Nikulin et al., "Free-Lunch Saliency via Attention in Atari Agents" (2019), as SB3
``BaseFeaturesExtractor`` s (features_dim 512), drop-in replacements for ``NatureCNN``::

    PPO("CnnPolicy", env, policy_kwargs=dict(features_extractor_class=SparseFLS, net_arch=[]))

``net_arch=[]`` matters: SB3 gives NatureCNN no hidden MLP layers after the extractor but adds two 64-unit
layers per head for any other extractor; the paper's models (and their parameter counts) have none.
``paper_policy_kwargs(SparseFLS)`` builds these kwargs.

- ``SparseFLS``: Nature trunk (7x7x64) -> FLS module -> features * map -> flatten -> linear 512.
- ``SparseFLSPool``: the same, sum-pooled over the 7x7 positions -> 64 -> linear 512.
- ``DenseFLS``: stride-1 "same" trunk (84x84x64) -> FLS module -> sum-pool -> linear 512.
- ``DAQN``: 1x1 conv 256 -> tanh -> 1x1 conv 1 -> spatial softmax; attention-weighted sum -> linear 512.
- ``RSPPO``: (1-pixel input padding) Nature trunk -> L2-normalise over channels (TF's floor: norm >= 1e-6) ->
  1x1 conv 512 -> ELU -> 1x1 conv 2 -> per-head spatial softmax, heads summed -> features * map -> flatten ->
  linear 512.

Every forward pass stores its attention map, detached, in ``last_attention`` (``(N, h, w)`` at the map's
native resolution: 7x7 sparse, 84x84 dense); ``project_attention(raw)`` renders it onto the 84x84 input
with the reference's receptive-field transposed convolution (all-ones kernel), so reading the saliency
costs no second pass. The module computing the map that multiplies the features is ``self.attention``.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from rl_saliency.envs.frames import upsample_to_frame

__all__ = ["DAQN", "RSPPO", "AttentionExtractor", "DenseFLS", "FLSModule", "SparseFLS", "SparseFLSPool",
           "SpatialSoftmax", "attention_to_frame", "dense_trunk", "nature_trunk", "paper_policy_kwargs",
           "receptive_field_projection", "tf_l2_normalize", "upsample_to_frame"]


# ----------------------------------------------------------------------------------------------- building blocks
def nature_trunk(in_channels: int, relu_last: bool = True) -> nn.Sequential:
    """The "sparse block" (NatureCNN's convolutions): 84x84 -> 7x7x64, valid padding."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, 32, kernel_size=8, stride=4), nn.ReLU(),
        nn.Conv2d(32, 64, kernel_size=4, stride=2), nn.ReLU(),
        nn.Conv2d(64, 64, kernel_size=3, stride=1),
    ]
    if relu_last:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def dense_trunk(in_channels: int, relu_last: bool = True) -> nn.Sequential:
    """The "dense block": stride 1, "same" padding, so the map keeps the input's 84x84 resolution."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, 32, kernel_size=7, stride=1, padding=3), nn.ReLU(),
        nn.Conv2d(32, 64, kernel_size=5, stride=1, padding=2), nn.ReLU(),
        nn.Conv2d(64, 64, kernel_size=3, stride=1, padding=1),
    ]
    if relu_last:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class FLSModule(nn.Module):
    """conv 256 -> ReLU -> conv 1 -> softplus: a positive map ``(N, 1, H, W)`` at the features' resolution.

    Ablations of the paper: ``kernel_size=1`` (1x1 convs), ``softplus2`` (softplus(x ln2) / ln2, so that
    a zero logit gives weight 1), ``normalise`` (divide the map by its spatial sum).
    """

    def __init__(self, in_channels: int = 64, hidden: int = 256, kernel_size: int = 3, softplus2: bool = False,
                 normalise: bool = False):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"FLS kernel_size must be odd (\"same\" padding), got {kernel_size}")
        padding = kernel_size // 2
        self.conv1 = nn.Conv2d(in_channels, hidden, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(hidden, 1, kernel_size, padding=padding)
        # softplus with beta = ln 2 is exactly softplus(x ln2) / ln2
        self.beta = math.log(2.0) if softplus2 else 1.0
        self.normalise = normalise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.softplus(self.conv2(F.relu(self.conv1(x))), beta=self.beta)
        if self.normalise:
            h = h / h.sum(dim=(2, 3), keepdim=True)
        return h


def tf_l2_normalize(x: torch.Tensor, dim: int = 1, epsilon: float = 1e-12) -> torch.Tensor:
    """TensorFlow's ``tf.nn.l2_normalize`` (the RS-PPO reference's): ``x / sqrt(max(sum x^2, epsilon))``.

    TF floors the *squared* norm at 1e-12, i.e. the norm at 1e-6; torch's ``F.normalize(eps=1e-12)`` floors the
    norm itself at 1e-12, so near-zero feature vectors (all-dead ReLU positions) come out a million times
    larger there and are blown up to unit length.
    """
    return x * torch.rsqrt(x.pow(2).sum(dim=dim, keepdim=True).clamp_min(epsilon))


class SpatialSoftmax(nn.Module):
    """Softmax over the H*W positions, separately per channel (head)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return F.softmax(x.reshape(n, c, h * w), dim=2).reshape(n, c, h, w)


class SumHeads(nn.Module):
    """Sum attention heads into one map ``(N, 1, H, W)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=1, keepdim=True)


# ------------------------------------------------------------------------------------------------------- helpers
def attention_to_frame(maps: np.ndarray | torch.Tensor) -> np.ndarray:
    """Any (84, 84) or (N, 84, 84) map(s) onto the (210, 160) Atari frame, bilinearly, >= 0."""
    if isinstance(maps, torch.Tensor):
        maps = maps.detach().cpu().numpy()
    return upsample_to_frame(maps)


def paper_policy_kwargs(extractor_class: type[BaseFeaturesExtractor], **extractor_kwargs) -> dict:
    """``policy_kwargs`` for an ActorCriticPolicy shaped like the paper's: extractor -> linear heads, no MLP."""
    return dict(features_extractor_class=extractor_class, features_extractor_kwargs=extractor_kwargs, net_arch=[])


def _axis_spread(n_in: int, kernel: int, stride: int, padding: int, like: torch.Tensor) -> torch.Tensor:
    """0/1 matrix (n_out, n_in): output pixel y lies in the receptive field of map cell i."""
    n_out = (n_in - 1) * stride + kernel - 2 * padding
    y = torch.arange(n_out, device=like.device)[:, None] + padding
    start = torch.arange(n_in, device=like.device)[None] * stride
    return ((y >= start) & (y < start + kernel)).to(like.dtype)


def receptive_field_projection(maps: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """Transposed convolution of ``(..., h, w)`` maps with an all-ones ``kernel x kernel`` filter.

    The all-ones kernel is separable, so this is ``rows @ map @ cols.T`` with two 0/1 band matrices: the
    same numbers as ``conv_transpose2d``, 5-10x faster on CPU.
    """
    rows = _axis_spread(maps.shape[-2], kernel, stride, padding, maps)
    cols = _axis_spread(maps.shape[-1], kernel, stride, padding, maps)
    return rows @ maps @ cols.T


def _check_image_space(observation_space: gym.Space, name: str) -> int:
    """Number of input channels; a clear error unless the space is a channels-first image batch."""
    shape = getattr(observation_space, "shape", None)
    if not isinstance(observation_space, gym.spaces.Box) or shape is None or len(shape) != 3:
        raise ValueError(f"{name} needs image observations (C, H, W), got {observation_space}")
    if shape[0] > shape[1] or shape[0] > shape[2]:
        raise ValueError(f"{name} needs channels-first images (C, H, W) such as (4, 84, 84), got {shape}; "
                         f"wrap the env with VecTransposeImage")
    return int(shape[0])


# ---------------------------------------------------------------------------------------------------- extractors
class AttentionExtractor(BaseFeaturesExtractor):
    """Shared attention readout: ``last_attention`` and the receptive-field projection onto 84x84.

    Subclasses set the projection of their map (``rf_kernel``, ``rf_stride``, ``rf_padding``, and
    ``rf_shift`` pixels when the input was padded before the trunk) and store ``last_attention`` in forward.
    """

    rf_kernel: int = 36
    rf_stride: int = 8
    rf_padding: int = 0
    rf_shift: int = 0

    def __init__(self, observation_space: gym.Space, features_dim: int = 512):
        super().__init__(observation_space, features_dim)
        self.last_attention: torch.Tensor | None = None

    def _store(self, h: torch.Tensor) -> None:
        # detached: the readout must not keep a training graph alive between forward passes
        self.last_attention = h[:, 0].detach()

    def project_attention(self, raw: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """Raw maps ``(N, h, w)`` (default: the last forward's) -> ``(N, 84, 84)`` >= 0.

        Each map cell spreads its weight over its receptive field in the input (a transposed convolution
        with an all-ones kernel); no per-run rescaling, so the output keeps the map's own scale.
        """
        if raw is None:
            if self.last_attention is None:
                raise RuntimeError(f"{type(self).__name__} has no attention yet: run a forward pass first")
            raw = self.last_attention
        raw = torch.as_tensor(raw, dtype=torch.float32)
        if raw.ndim == 2:
            raw = raw[None]
        if raw.ndim != 3:
            raise ValueError(f"attention maps must be (N, h, w), got shape {tuple(raw.shape)}")
        out = receptive_field_projection(raw[:, None], self.rf_kernel, self.rf_stride, self.rf_padding)
        if self.rf_shift:
            # the trunk saw a padded input: move back to unpadded coordinates (negative pad crops)
            s = self.rf_shift
            out = F.pad(out, (-s, s, -s, s))
        return out[:, 0].clamp_min(0.0)

    def frame_attention(self, raw: torch.Tensor | np.ndarray | None = None) -> np.ndarray:
        """The projected maps on the (210, 160) frame (``project_attention`` then bilinear resize)."""
        return attention_to_frame(self.project_attention(raw))


class SparseFLS(AttentionExtractor):
    """Sparse Free-Lunch Saliency: the paper's main model (PPO, 4 actions: 1,836,710 parameters).

    :param pool: sum-pool ``features * map`` over the 7x7 positions instead of flattening (``SparseFLSPool``).
    :param kernel_size: FLS conv size (3; 1 is the "1x1 convs" ablation).
    :param softplus2: SoftPlus2 ablation. :param normalise: divide the map by its spatial sum.
    :param relu_before_fls: False drops the trunk's last ReLU (the "no ReLU before FLS" ablation).
    """

    def __init__(self, observation_space: gym.Space, features_dim: int = 512, pool: bool = False,
                 kernel_size: int = 3, softplus2: bool = False, normalise: bool = False,
                 relu_before_fls: bool = True):
        super().__init__(observation_space, features_dim)
        in_channels = _check_image_space(observation_space, type(self).__name__)
        self.pool = pool
        self.trunk = nature_trunk(in_channels, relu_last=relu_before_fls)
        self.attention = FLSModule(64, 256, kernel_size=kernel_size, softplus2=softplus2, normalise=normalise)
        with torch.no_grad():
            sample = torch.as_tensor(observation_space.sample()[None]).float()
            n_features = 64 if pool else self.trunk(sample).flatten(1).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_features, features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = self.trunk(observations)
        h = self.attention(x)
        self._store(h)
        x = x * h
        x = x.sum(dim=(2, 3)) if self.pool else x.flatten(1)
        return self.linear(x)


class SparseFLSPool(SparseFLS):
    """Sparse FLS with sum-pooling over the 7x7 positions (64 features into the linear layer)."""

    def __init__(self, observation_space: gym.Space, features_dim: int = 512, **kwargs):
        kwargs.setdefault("pool", True)
        super().__init__(observation_space, features_dim, **kwargs)


class DenseFLS(AttentionExtractor):
    """Dense FLS: the higher-fidelity variant, attention at full 84x84 resolution, always sum-pooled.

    The map's receptive field in the input is 13x13 (7 + 5 + 3 - 2), hence the projection kernel 13, pad 6.
    """

    rf_kernel, rf_stride, rf_padding = 13, 1, 6

    def __init__(self, observation_space: gym.Space, features_dim: int = 512, kernel_size: int = 3,
                 softplus2: bool = False, normalise: bool = False, relu_before_fls: bool = True):
        super().__init__(observation_space, features_dim)
        in_channels = _check_image_space(observation_space, type(self).__name__)
        self.trunk = dense_trunk(in_channels, relu_last=relu_before_fls)
        self.attention = FLSModule(64, 256, kernel_size=kernel_size, softplus2=softplus2, normalise=normalise)
        self.linear = nn.Sequential(nn.Linear(64, features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = self.trunk(observations)
        h = self.attention(x)
        self._store(h)
        # sum-pool of features * map without materialising the (N, 64, 84, 84) product
        x = torch.einsum("bchw,bhw->bc", x, h[:, 0])
        return self.linear(x)


class DAQN(AttentionExtractor):
    """Non-recurrent DARQN attention: softmax over the 49 positions, attention-weighted sum of the features."""

    def __init__(self, observation_space: gym.Space, features_dim: int = 512):
        super().__init__(observation_space, features_dim)
        in_channels = _check_image_space(observation_space, type(self).__name__)
        self.trunk = nature_trunk(in_channels)
        self.attention = nn.Sequential(nn.Conv2d(64, 256, 1), nn.Tanh(), nn.Conv2d(256, 1, 1), SpatialSoftmax())
        self.linear = nn.Sequential(nn.Linear(64, features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = self.trunk(observations)
        h = self.attention(x)
        self._store(h)
        return self.linear(torch.einsum("bchw,bhw->bc", x, h[:, 0]))


class RSPPO(AttentionExtractor):
    """Region-sensitive attention (Yang et al. 2018) with PPO, as in the FLS paper's comparison.

    :param pad_input: pad the input by 1 pixel on every side before the trunk, as the reference did
        (``cnn_rsppo``); False is ``cnn_rsppo_nopad``. With padding the projection is shifted back by
        one pixel so the map lands on the unpadded frame.
    """

    def __init__(self, observation_space: gym.Space, features_dim: int = 512, pad_input: bool = True):
        super().__init__(observation_space, features_dim)
        in_channels = _check_image_space(observation_space, type(self).__name__)
        self.pad_input = pad_input
        self.rf_shift = 1 if pad_input else 0
        self.trunk = nature_trunk(in_channels)
        self.attention = nn.Sequential(nn.Conv2d(64, 512, 1), nn.ELU(), nn.Conv2d(512, 2, 1), SpatialSoftmax(),
                                       SumHeads())
        with torch.no_grad():
            sample = torch.as_tensor(observation_space.sample()[None]).float()
            n_features = self.trunk(self._pad(sample)).flatten(1).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_features, features_dim), nn.ReLU())

    def _pad(self, observations: torch.Tensor) -> torch.Tensor:
        return F.pad(observations, (1, 1, 1, 1)) if self.pad_input else observations

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = tf_l2_normalize(self.trunk(self._pad(observations)), dim=1)  # the reference's TF floor
        h = self.attention(x)
        self._store(h)
        return self.linear((x * h).flatten(1))
