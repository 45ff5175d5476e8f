"""The explorer's networks: the features encoders and the ensemble of Gaussian forward models."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from stable_baselines3.common.policies import BasePolicy
from torch import nn


class RandomCNNFeatures(nn.Module):
    """A fixed, randomly initialised Nature-CNN (Burda et al. 2018; Pathak et al. 2019): (N, 4, 84, 84)
    uint8-range pixels -> (N, features_dim). Orthogonal init as in RND; never trained."""

    def __init__(self, n_channels: int = 4, features_dim: int = 512):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(n_channels, 32, 8, stride=4), nn.LeakyReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.LeakyReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.LeakyReLU(),
            nn.Flatten(), nn.Linear(64 * 7 * 7, features_dim))
        for module in self.net:
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.orthogonal_(module.weight, gain=math.sqrt(2))
                nn.init.zeros_(module.bias)
        self.features_dim = features_dim
        self.requires_grad_(False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.float() / 255.0)


class RandomMLPFeatures(nn.Module):
    """A fixed random MLP for vector observations."""

    def __init__(self, in_dim: int, features_dim: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, 128), nn.LeakyReLU(), nn.Linear(128, features_dim))
        self.features_dim = features_dim
        self.requires_grad_(False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.float().flatten(1))


class IdentityFeatures(nn.Module):
    """Vector observations used as they are."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.features_dim = in_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.float().flatten(1)


class AgentFeatures(nn.Module):
    """The agent's own features (``policy.extract_features``); the explorer uses them detached."""

    def __init__(self, policy: BasePolicy):
        super().__init__()
        self.__dict__["policy"] = policy  # not a submodule: the explorer must not save or train it
        self.features_dim = policy.features_extractor.features_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        policy = self.__dict__["policy"]
        return policy.extract_features(obs.to(policy.device).float(), policy.features_extractor).float()


class GaussianEnsemble(nn.Module):
    """K MLPs run as one batched network: (features (B, d), one-hot action) -> mean and variance
    ``(K, B, d)`` of the (normalised) change of the features. Log-variances are squashed into
    ``[log var_min, log var_max]`` so no member becomes over- or under-confident."""

    def __init__(self, features_dim: int, action_dim: int, n_models: int = 5, hidden: int = 256, n_layers: int = 2,
                 var_min: float = 1e-2, var_max: float = 1.0, generator: torch.Generator | None = None):
        super().__init__()
        if not 0 < var_min < var_max:
            raise ValueError(f"need 0 < var_min < var_max, got {var_min}, {var_max}")
        self.n_models, self.features_dim, self.action_dim = n_models, features_dim, action_dim
        sizes = [features_dim + action_dim] + [hidden] * n_layers + [2 * features_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default init, drawn independently per member
            w = (torch.rand(n_models, fan_in, fan_out, generator=generator) * 2 - 1) * bound
            b = (torch.rand(n_models, 1, fan_out, generator=generator) * 2 - 1) * bound
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        self.register_buffer("log_var_min", torch.tensor(math.log(var_min)))
        self.register_buffer("log_var_max", torch.tensor(math.log(var_max)))
        # input / target normalisation (running stats of the transitions; a scalar scale so that rarely
        # active dimensions, e.g. far chain states, are not blown up)
        self.register_buffer("in_mean", torch.zeros(features_dim))
        self.register_buffer("in_scale", torch.ones(()))
        self.register_buffer("out_scale", torch.ones(()))

    def forward(self, features: torch.Tensor, actions_onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([(features - self.in_mean) / self.in_scale, actions_onehot], dim=-1)
        x = x.unsqueeze(0).expand(self.n_models, *x.shape)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = F.silu(x)
        mean, raw_log_var = x.chunk(2, dim=-1)
        # a sigmoid keeps the bounds strict (PETS's double softplus can overshoot the upper one)
        log_var = self.log_var_min + (self.log_var_max - self.log_var_min) * torch.sigmoid(raw_log_var)
        return mean, log_var.exp()

    def nll(self, features: torch.Tensor, actions_onehot: torch.Tensor, next_features: torch.Tensor,
            weights: torch.Tensor) -> torch.Tensor:
        """Bootstrap-weighted Gaussian negative log-likelihood, averaged over members; weights (B, K)."""
        mean, var = self(features, actions_onehot)
        target = (next_features - features) / self.out_scale
        per_sample = 0.5 * ((target - mean).pow(2) / var + var.log()).mean(-1)  # (K, B)
        w = weights.t()
        return ((per_sample * w).sum(1) / w.sum(1).clamp_min(1.0)).mean()
