"""Constructed policies with known answers for the visualisation tests."""

from __future__ import annotations

import gymnasium as gym
import torch
from fake_atari import FakeAtari  # noqa: F401 - the tests import it from here too
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

# (rows, cols) of the patches the constructed policy reads: action 2 reads PATCH_A, action 1 reads PATCH_B
PATCH_A = (slice(20, 32), slice(50, 62))
PATCH_B = (slice(60, 72), slice(10, 22))


def patch_mask(patch: tuple[slice, slice]) -> torch.Tensor:
    mask = torch.zeros(4, 84, 84)
    mask[:, patch[0], patch[1]] = 1.0
    return mask


class PatchBrightness(BaseFeaturesExtractor):
    """features = ReLU(mean brightness (0..1) of each patch - 0.3): a linear layer whose weights are the masks."""

    def __init__(self, observation_space: gym.Space, features_dim: int = 2):
        super().__init__(observation_space, features_dim)
        self.linear = nn.Linear(4 * 84 * 84, features_dim)
        self.relu = nn.ReLU()
        self.construct()

    def construct(self) -> None:
        """Set the weights (again after SB3's orthogonal initialisation)."""
        with torch.no_grad():
            self.linear.weight.zero_()
            for k, patch in enumerate((PATCH_A, PATCH_B)):
                mask = patch_mask(patch)
                self.linear.weight[k] = (mask / mask.sum()).flatten()
            self.linear.bias.fill_(-0.3)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.relu(self.linear(observations.flatten(1)))


def patch_policy(algo: str = "ppo"):
    """A policy whose action 2 fires when PATCH_A is bright and action 1 when PATCH_B is (logit 10 x feature)."""
    env = FakeAtari(4)
    kwargs = dict(features_extractor_class=PatchBrightness, net_arch=[])
    if algo == "dqn":
        policy = DQN("CnnPolicy", env, buffer_size=16, learning_starts=0, seed=0, device="cpu",
                     policy_kwargs=kwargs).policy
        heads = [policy.q_net.q_net[-1], policy.q_net_target.q_net[-1]]
        extractors = [policy.q_net.features_extractor, policy.q_net_target.features_extractor]
    else:
        policy = PPO("CnnPolicy", env, n_steps=8, batch_size=8, seed=0, device="cpu", policy_kwargs=kwargs).policy
        heads = [policy.action_net]
        extractors = [policy.features_extractor]
    for extractor in extractors:
        extractor.construct()
    with torch.no_grad():
        for head in heads:
            head.weight.zero_()
            head.bias.zero_()
            head.weight[2, 0] = 10.0
            head.weight[1, 1] = 10.0
    policy.set_training_mode(False)
    return policy
