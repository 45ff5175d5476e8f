"""Saccader: a hard-attention actor-critic policy for SB3 (Elsayed et al. 2019, adapted to RL).

The policy sees the frame stack only through K glimpses it chooses. A BagNet-like "what" network gives
features for each cell of a grid (receptive field = the cell, no overlap); a "where" network with wider
context mixes them into F; the Saccader cell picks glimpses one at a time from F, hard-masking visited
cells; the game action's logits are built from the glimpsed cells' features only. The value head may look
at the whole grid (it does not act).

PPO sees the glimpses as part of the action: ``MultiDiscrete([n_actions, G, ..., G])`` (G = grid cells, K
glimpse entries). Their log-probability enters the PPO ratio, so the glimpses are trained by a real policy
gradient. ``GlimpseActionWrapper`` exposes that action space and forwards only the game action to the env.

Saliency: every forward sets ``last_attention`` (N, grid, grid), the glimpsed cells weighted by order
(first glimpse 1, last 1/K); ``project_attention`` spreads each weight over its cell's receptive field.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import CategoricalDistribution, Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn
from torch import nn

from rl_saliency.errors import SpecError

MASK_PENALTY = 1e5  # the Saccader cell's hard mask on visited cells (REFERENCE section 7)
AGGREGATES = ("mean", "mlp")
GLIMPSE_MODES = ("learned", "random")


def glimpse_action_space(n_actions: int, n_glimpses: int, grid: int) -> spaces.MultiDiscrete:
    """``[game action, glimpse 1, ..., glimpse K]``, each glimpse a cell index in ``range(grid * grid)``."""
    return spaces.MultiDiscrete([n_actions] + [grid * grid] * n_glimpses)


class GlimpseActionWrapper(VecEnvWrapper):
    """Expose the Saccader action space on a VecEnv with a Discrete action space; forward only the game action.

    The glimpses of the last step are kept in ``last_glimpses`` (N, K) for videos and diagnostics.
    """

    def __init__(self, venv: VecEnv, n_glimpses: int = 6, grid: int = 7):
        if not isinstance(venv.action_space, spaces.Discrete):
            raise SpecError(f"GlimpseActionWrapper needs an env with a Discrete action space, got {venv.action_space}")
        if n_glimpses < 1 or n_glimpses > grid * grid:
            raise SpecError(f"GlimpseActionWrapper: n_glimpses must be in 1..{grid * grid} for a {grid}x{grid} grid, "
                            f"got {n_glimpses}")
        self.n_glimpses = int(n_glimpses)
        self.grid = int(grid)
        self.last_glimpses: np.ndarray | None = None
        super().__init__(venv, action_space=glimpse_action_space(int(venv.action_space.n), n_glimpses, grid))

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions)
        expected = (self.num_envs, self.n_glimpses + 1)
        if actions.shape != expected:
            raise ValueError(f"GlimpseActionWrapper expects actions of shape {expected} ([game action, "
                             f"{self.n_glimpses} glimpses] per env), got {actions.shape}")
        self.last_glimpses = actions[:, 1:].copy()
        self.venv.step_async(actions[:, 0])

    def step_wait(self) -> VecEnvStepReturn:
        return self.venv.step_wait()

    def reset(self):  # noqa: ANN201 - VecEnvObs
        self.last_glimpses = None
        return self.venv.reset()


class SaccaderNetwork(BaseFeaturesExtractor):
    """BagNet-like "what" features per grid cell (``trunk``) and the "where"-mixed features F, both
    (N, C, grid, grid). The policy's features extractor, so post-hoc methods (Grad-CAM) find its layers.

    The mixing layer is linear, as in the reference Saccader: F (and so the glimpse logits) can be negative.
    ``mix_relu=True`` restores this package's earlier ReLU there (for comparison only: benchmarks/saccader.py).
    """

    def __init__(self, observation_space: spaces.Box, grid: int = 7, channels: int = 64, mix_relu: bool = False):
        super().__init__(observation_space, features_dim=channels * grid * grid)
        in_channels, size = observation_space.shape[0], observation_space.shape[1]
        cell_size = size // grid
        if cell_size % 4 or cell_size * grid != size:
            raise SpecError(f"Saccader: the cell size (frame size / grid) must be a whole multiple of 4, got "
                            f"{size} / {grid}")
        # Receptive field and stride both equal the cell: each grid location sees only its own patch.
        self.trunk = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=4, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=cell_size // 4, stride=cell_size // 4), nn.ReLU(),
            nn.Conv2d(64, channels, kernel_size=1), nn.ReLU(),
        )
        # Where: 3x3 convs over the grid (5x5 cells of context) plus coordinates, so it can prefer places.
        self.where = nn.Sequential(
            nn.Conv2d(channels + 2, channels, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1), nn.ReLU(),
        )
        self.mix = nn.Sequential(nn.Conv2d(2 * channels, channels, kernel_size=1), *([nn.ReLU()] if mix_relu else []))
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, grid), torch.linspace(-1, 1, grid), indexing="ij")
        self.register_buffer("coords", torch.stack([ys, xs])[None], persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        what = self.trunk(x)
        coords = self.coords.expand(len(x), -1, -1, -1)
        where = self.where(torch.cat([what, coords], dim=1))
        return what, self.mix(torch.cat([what, where], dim=1))


class SaccaderCell(nn.Module):
    """The Saccader cell (REFERENCE section 7): glimpse logits from F given the visited mask m.

    a = softmax2d(w.F / sqrt(C) - 1e5 m); c = softmax_channels(sum_hw a F); l = sum_c c_c F - 1e5 m.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(channels) / math.sqrt(channels))

    def logits(self, features: torch.Tensor, visited: torch.Tensor) -> torch.Tensor:
        """features (N, L, C), visited (N, L) in {0, 1} -> glimpse logits (N, L)."""
        penalty = MASK_PENALTY * visited
        a = torch.softmax(features @ self.w / math.sqrt(features.shape[-1]) - penalty, dim=1)
        c = torch.softmax((a.unsqueeze(-1) * features).sum(dim=1), dim=-1)
        return (features * c.unsqueeze(1)).sum(dim=-1) - penalty


class SaccaderPolicy(ActorCriticPolicy):
    """Actor-critic whose action distribution depends only on K glimpsed grid cells.

    :param aggregate: ``mean``: mean of the glimpsed cells' own action logits (Saccader's BagNet head;
        cells do not know where they are); ``mlp``: a small network over the glimpsed features plus a
        location embedding, mean-pooled over glimpses (order-invariant, knows positions: better for Atari).
    :param glimpse_mode: ``learned`` (the Saccader cell) or ``random`` (uniform over unvisited cells,
        also at evaluation: the control that shows the learned glimpses matter).
    :param glimpse_entropy_coef: weight of the glimpse choices' entropy in the entropy PPO maximises.
    :param mix_relu: end the what/where mixing layer in a ReLU (not the reference's; for comparison only).
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Schedule,
                 channels: int = 64, aggregate: str = "mean", glimpse_mode: str = "learned",
                 glimpse_entropy_coef: float = 1.0, hidden_dim: int = 256, mix_relu: bool = False, **kwargs: Any):
        if aggregate not in AGGREGATES:
            raise SpecError(f"SaccaderPolicy: aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        if glimpse_mode not in GLIMPSE_MODES:
            raise SpecError(f"SaccaderPolicy: glimpse_mode must be one of {GLIMPSE_MODES}, got {glimpse_mode!r}")
        self.n_actions, self.n_glimpses, self.grid, self.cell_size = self._read_spaces(observation_space,
                                                                                       action_space)
        self.channels = channels
        self.aggregate = aggregate
        self.glimpse_mode = glimpse_mode
        self.glimpse_entropy_coef = glimpse_entropy_coef
        self.hidden_dim = hidden_dim
        self.mix_relu = mix_relu
        self.last_attention: torch.Tensor | None = None
        self.last_glimpses: torch.Tensor | None = None
        kwargs.pop("net_arch", None)  # the architecture is fixed here
        kwargs["features_extractor_class"] = SaccaderNetwork
        kwargs["features_extractor_kwargs"] = dict(grid=self.grid, channels=channels, mix_relu=mix_relu)
        kwargs["share_features_extractor"] = True
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    @staticmethod
    def _read_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> tuple[int, int, int, int]:
        """Game actions, glimpses, grid and cell size, from the wrapped action space and the frame size."""
        if not isinstance(action_space, spaces.MultiDiscrete) or len(action_space.nvec) < 2:
            raise SpecError(
                f"SaccaderPolicy needs the MultiDiscrete [game action, glimpses...] action space of "
                f"GlimpseActionWrapper, got {action_space}; set env_wrapper: "
                f"rl_saliency.agents.saccader:GlimpseActionWrapper in the agent spec")
        nvec = [int(n) for n in action_space.nvec]
        cells = nvec[1]
        grid = math.isqrt(cells)
        if grid * grid != cells or any(n != cells for n in nvec[1:]):
            raise SpecError(f"SaccaderPolicy: glimpse entries must all be grid*grid cells, got {nvec[1:]}")
        shape = observation_space.shape
        if shape is None or len(shape) != 3 or shape[1] != shape[2] or shape[1] % grid:
            raise SpecError(f"SaccaderPolicy needs square channel-first frames divisible by the {grid}x{grid} grid, "
                            f"got observation shape {shape}")
        return nvec[0], len(nvec) - 1, grid, shape[1] // grid

    def _build(self, lr_schedule: Schedule) -> None:
        cells = self.grid * self.grid
        self.cell = SaccaderCell(self.channels)
        if self.aggregate == "mean":
            self.action_net = nn.Conv2d(self.channels, self.n_actions, kernel_size=1)  # per-cell logits ("what")
        else:
            self.location_embedding = nn.Embedding(cells, 16)
            self.glimpse_net = nn.Sequential(nn.Linear(self.channels + 16, self.hidden_dim), nn.ReLU())
            self.action_net = nn.Linear(self.hidden_dim, self.n_actions)
        self.value_trunk = nn.Sequential(nn.Flatten(), nn.Linear(self.channels * cells, self.hidden_dim), nn.ReLU())
        self.value_net = nn.Linear(self.hidden_dim, 1)
        if self.ortho_init:
            gains = {self.features_extractor: np.sqrt(2), self.value_trunk: np.sqrt(2), self.action_net: 0.01,
                     self.value_net: 1.0}
            if self.aggregate == "mlp":
                gains[self.glimpse_net] = np.sqrt(2)
            for module, gain in gains.items():
                module.apply(lambda m, g=gain: self.init_weights(m, gain=g))
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(channels=self.channels, aggregate=self.aggregate, glimpse_mode=self.glimpse_mode,
                    glimpse_entropy_coef=self.glimpse_entropy_coef, hidden_dim=self.hidden_dim, mix_relu=self.mix_relu)
        return data

    # ---- the glimpse forward pass -------------------------------------------------------------------

    def _run(self, obs: torch.Tensor, deterministic: bool = False, glimpses: torch.Tensor | None = None,
             game_actions: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Glimpse K times (sampling, argmax, or replaying ``glimpses``), then the game action and the value.

        Returns glimpses (N, K), their log-probs and entropies (N, K), the game action distribution's
        logits (N, A), and values (N, 1). Sets ``last_attention`` and ``last_glimpses``.
        """
        x = preprocess_obs(obs, self.observation_space, normalize_images=self.normalize_images)
        what, mixed = self.features_extractor(x)
        n, cells = len(x), self.grid * self.grid
        features = mixed.flatten(2).transpose(1, 2)  # (N, L, C)
        visited = torch.zeros(n, cells, device=x.device)
        chosen, log_probs, entropies = [], [], []
        for k in range(self.n_glimpses):
            if self.glimpse_mode == "learned":
                logits = self.cell.logits(features, visited)
            else:
                logits = -MASK_PENALTY * visited
            dist = torch.distributions.Categorical(logits=logits)
            if glimpses is not None:
                g = glimpses[:, k]
            elif deterministic and self.glimpse_mode == "learned":
                g = logits.argmax(dim=1)
            else:
                g = dist.sample()
            chosen.append(g)
            log_probs.append(dist.log_prob(g))
            entropies.append(dist.entropy())
            visited = torch.clamp(visited + nn.functional.one_hot(g, cells).float(), 0, 1)
        glimpse_idx = torch.stack(chosen, dim=1)
        action_logits = self._action_logits(what, glimpse_idx)
        values = self.value_net(self.value_trunk(mixed))

        order = torch.linspace(1.0, 1.0 / self.n_glimpses, self.n_glimpses, device=x.device).expand(n, -1)
        attention = torch.zeros(n, cells, device=x.device).scatter(1, glimpse_idx, order)
        self.last_attention = attention.view(n, self.grid, self.grid).detach()
        self.last_glimpses = glimpse_idx.detach()
        return {"glimpses": glimpse_idx, "glimpse_log_prob": torch.stack(log_probs, dim=1),
                "glimpse_entropy": torch.stack(entropies, dim=1), "action_logits": action_logits, "values": values}

    def _action_logits(self, what: torch.Tensor, glimpse_idx: torch.Tensor) -> torch.Tensor:
        """Game action logits from the glimpsed cells only."""
        if self.aggregate == "mean":
            per_cell = self.action_net(what).flatten(2)  # (N, A, L)
            index = glimpse_idx.unsqueeze(1).expand(-1, self.n_actions, -1)
            return per_cell.gather(2, index).mean(dim=2)
        feats = what.flatten(2).transpose(1, 2)  # (N, L, C)
        index = glimpse_idx.unsqueeze(-1).expand(-1, -1, self.channels)
        glimpsed = torch.cat([feats.gather(1, index), self.location_embedding(glimpse_idx)], dim=-1)
        return self.action_net(self.glimpse_net(glimpsed).mean(dim=1))

    # ---- the SB3 interface ---------------------------------------------------------------------------

    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, ...]:
        out = self._run(obs, deterministic=deterministic)
        dist = torch.distributions.Categorical(logits=out["action_logits"])
        game_action = out["action_logits"].argmax(dim=1) if deterministic else dist.sample()
        log_prob = dist.log_prob(game_action) + out["glimpse_log_prob"].sum(dim=1)
        actions = torch.cat([game_action.unsqueeze(1), out["glimpses"]], dim=1)
        return actions, out["values"], log_prob

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Joint log-prob of the stored [game action, glimpses] (the cell replayed with the stored glimpses
        so the visited mask evolves as it did), the value, and the entropy of each conditional."""
        actions = actions.long()
        out = self._run(obs, glimpses=actions[:, 1:])
        dist = torch.distributions.Categorical(logits=out["action_logits"])
        log_prob = dist.log_prob(actions[:, 0]) + out["glimpse_log_prob"].sum(dim=1)
        entropy = dist.entropy() + self.glimpse_entropy_coef * out["glimpse_entropy"].sum(dim=1)
        return out["values"], log_prob, entropy

    def get_distribution(self, obs: torch.Tensor) -> Distribution:
        """The game action's distribution given the deterministic (argmax) glimpses; differentiable in the
        glimpsed pixels, for post-hoc saliency methods."""
        out = self._run(obs, deterministic=True)
        return CategoricalDistribution(self.n_actions).proba_distribution(action_logits=out["action_logits"])

    def saliency_outputs(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable (game action logits (N, A), value (N,)) under the argmax glimpses, for post-hoc
        saliency: gradients reach the input only through the glimpsed cells (and the critic's view)."""
        out = self._run(obs, deterministic=True)
        return out["action_logits"], out["values"].squeeze(-1)

    def predict_values(self, obs: torch.Tensor) -> torch.Tensor:
        return self._run(obs, deterministic=True)["values"]

    def _predict(self, observation: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self.forward(observation, deterministic=deterministic)[0]

    # ---- saliency contract and env hook --------------------------------------------------------------

    def attention_forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic glimpse pass (sets ``last_attention``); returns the actions it takes."""
        return self.forward(obs, deterministic=True)[0]

    def project_attention(self, raw: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(N, grid, grid) cell weights -> (N, H, W): each glimpsed cell lit over its receptive field."""
        raw = torch.as_tensor(raw, dtype=torch.float32)
        return raw.repeat_interleave(self.cell_size, dim=1).repeat_interleave(self.cell_size, dim=2)

    def wrap_env(self, venv: VecEnv) -> VecEnv:
        """Let this policy act in a plain env with the game's Discrete actions."""
        if isinstance(venv.action_space, spaces.MultiDiscrete):
            return venv  # already wrapped
        return GlimpseActionWrapper(venv, n_glimpses=self.n_glimpses, grid=self.grid)
