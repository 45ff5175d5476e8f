"""The novelty explorer: its config, the ensemble and buffer behind the intrinsic reward, its saved state."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from torch import nn

from rl_saliency import io
from rl_saliency.agents.exploration.divergence import DIVERGENCES, jensen_renyi_divergence, jensen_shannon_mc
from rl_saliency.agents.exploration.networks import (
    AgentFeatures,
    GaussianEnsemble,
    IdentityFeatures,
    RandomCNNFeatures,
    RandomMLPFeatures,
)
from rl_saliency.errors import DataError, SpecError

DEFAULTS: dict[str, Any] = {
    "beta": 1.0,  # weight of the normalised intrinsic reward
    "n_models": 5,
    "features": "auto",  # auto | random_cnn | agent | identity | mlp
    "features_dim": 512,  # for random_cnn / mlp
    "hidden": 256,
    "n_layers": 2,
    "bootstrap": "poisson",  # poisson | bernoulli
    "lr": 1e-3,
    "buffer_size": 10_000,  # recent transitions the ensemble trains on
    "batch_size": 256,
    "train_steps": 32,  # gradient steps per rollout end
    # train the ensemble in a background thread beside the agent's own update (joined before the next rollout
    # starts: the same ensemble, rewards and random draws as training in place; see NoveltyExplorer.start_training)
    "train_async": True,
    "gamma": 0.99,  # discount of the intrinsic return whose std normalises the bonus
    "var_min": 1e-2,
    "var_max": 1.0,
    # MAX: in the utility, shrink variances towards var_max (1 = as predicted, 0 = all var_max). "auto": MAX's 0.1,
    # scaled by 64 / d for the joint divergence of d > 64 features (see ``var_decay_for``)
    "var_decay": "auto",
    "norm_updates": 1,  # training rounds (rollout ends) that update the input / target normalisation
    "divergence": "jrd",  # jrd (closed form) | mc (Monte-Carlo Shannon JSD)
    # the joint divergence (MAX's) by default; True: the mean of per-dimension divergences. None is the rule of
    # explorer states saved before the joint one became the default (per-dimension above 64 dimensions).
    "per_dimension": False,
    "mc_samples": 64,
    "device": "cpu",
}


def check_config(config: dict[str, Any] | None, where: str = "explorer config") -> dict[str, Any]:
    """The explorer config with defaults filled in; a SpecError names any bad key or value."""
    config = dict(config or {})
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise SpecError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **config}
    choices = {"features": ("auto", "random_cnn", "agent", "identity", "mlp"), "bootstrap": ("poisson", "bernoulli"),
               "divergence": tuple(DIVERGENCES)}
    for key, allowed in choices.items():
        if out[key] not in allowed:
            raise SpecError(f"{where}: {key} must be one of {', '.join(allowed)}, got {out[key]!r}")
    if int(out["n_models"]) < 2:
        raise SpecError(f"{where}: n_models must be >= 2 (disagreement needs several members), got {out['n_models']}")
    for key in ("lr", "buffer_size", "batch_size", "features_dim", "hidden", "var_min", "var_max", "mc_samples"):
        if not float(out[key]) > 0:
            raise SpecError(f"{where}: {key} must be > 0, got {out[key]!r}")
    if out["var_decay"] != "auto" and not (isinstance(out["var_decay"], int | float) and 0 <= out["var_decay"] <= 1):
        raise SpecError(f"{where}: var_decay must be a number in [0, 1] or auto, got {out['var_decay']!r}")
    if float(out["var_min"]) >= float(out["var_max"]):
        raise SpecError(f"{where}: var_min must be < var_max")
    if not isinstance(out["train_async"], bool):
        raise SpecError(f"{where}: train_async must be true or false, got {out['train_async']!r}")
    if out["per_dimension"] not in (True, False, None):
        raise SpecError(f"{where}: per_dimension must be true or false, got {out['per_dimension']!r}")
    if float(out["beta"]) < 0 or not 0 <= float(out["gamma"]) < 1:
        raise SpecError(f"{where}: need beta >= 0 and 0 <= gamma < 1")
    return out


MAX_VAR_DECAY, VAR_DECAY_DIMS = 0.1, 64


def var_decay_for(var_decay: float | str, features_dim: int, per_dimension: bool) -> float:
    """The variance shrinkage the utility uses: a number as given; ``auto``: MAX's 0.1, times 64 / d for the joint
    divergence of d > 64 features.

    With unequal member variances the order-2 divergence carries a term of about -(d/2) x (the spread of the
    members' log-variances), so it grows with d times the shrinkage: at d = 512 and MAX's 0.1 it outweighs the
    disagreement of the means (never-seen Atari frames scored below seen ones, benchmarks/explorer.py). Scaling
    the shrinkage by 64 / d keeps that term as large as at 64 dimensions. The per-dimension mean needs no
    scaling (each 1-D term is bounded alike)."""
    if var_decay != "auto":
        return float(var_decay)
    if per_dimension or features_dim <= VAR_DECAY_DIMS:
        return MAX_VAR_DECAY
    return MAX_VAR_DECAY * VAR_DECAY_DIMS / features_dim


def _action_dims(space: gym.Space) -> list[int]:
    if isinstance(space, gym.spaces.Discrete):
        return [int(space.n)]
    if isinstance(space, gym.spaces.MultiDiscrete):
        return [int(n) for n in space.nvec.ravel()]
    raise SpecError(f"the novelty explorer needs Discrete or MultiDiscrete actions, got {space}")


class NoveltyExplorer:
    """Features encoder + Gaussian ensemble + recent-transition buffer + intrinsic reward normaliser."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: dict[str, Any] | None = None,
                 seed: int = 0):
        self.config = check_config(config)
        self.observation_space, self.action_space = observation_space, action_space
        self.action_dims = _action_dims(action_space)
        self.device = torch.device(self.config["device"])
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.kind = self._features_kind()
        self.encoder: nn.Module | None = None
        self.ensemble: GaussianEnsemble | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._pending_state: dict[str, Any] | None = None
        self.return_rms = RunningMeanStd(shape=())
        self.in_rms: RunningMeanStd | None = None
        self.out_rms = RunningMeanStd(shape=())
        self.n_seen = 0  # transitions added so far
        self.n_norm_updates = 0
        self._training: threading.Thread | None = None  # a round of start_training under way
        self._round: dict[str, Any] = {}  # its statistics (or error), until finish_training hands them over
        if self.kind != "agent":
            self.set_encoder(self._make_encoder())

    # -- construction ------------------------------------------------------------------------------
    def _features_kind(self) -> str:
        kind, space = self.config["features"], self.observation_space
        is_image = isinstance(space, gym.spaces.Box) and len(space.shape) == 3
        if kind == "auto":
            kind = "random_cnn" if is_image else "identity"
        if kind in ("identity", "mlp") and (not isinstance(space, gym.spaces.Box) or len(space.shape) != 1):
            raise SpecError(f"explorer features {kind!r} need vector observations, got {space}")
        if kind == "random_cnn" and not is_image:
            raise SpecError(f"explorer features 'random_cnn' need image observations (C, H, W), got {space}")
        return kind

    def _make_encoder(self) -> nn.Module:
        shape = self.observation_space.shape
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 7919)  # the fixed random features depend on the seed only
            if self.kind == "random_cnn":
                return RandomCNNFeatures(shape[0], int(self.config["features_dim"]))
            if self.kind == "mlp":
                return RandomMLPFeatures(shape[0], int(self.config["features_dim"]))
        return IdentityFeatures(shape[0])

    def set_encoder(self, encoder: nn.Module) -> None:
        """Use ``encoder`` for features and build the ensemble, buffer and optimizer for its size."""
        self.encoder = encoder.to(self.device)
        self.encoder.eval()
        d, cfg = encoder.features_dim, self.config
        self.per_dimension = bool(cfg["per_dimension"]) if cfg["per_dimension"] is not None else d > 64
        self.var_decay = var_decay_for(cfg["var_decay"], d, self.per_dimension)
        self.ensemble = GaussianEnsemble(d, sum(self.action_dims), int(cfg["n_models"]), int(cfg["hidden"]),
                                         int(cfg["n_layers"]), float(cfg["var_min"]), float(cfg["var_max"]),
                                         generator=self.generator).to(self.device)
        self.optimizer = torch.optim.Adam(self.ensemble.parameters(), lr=float(cfg["lr"]))
        self.in_rms = RunningMeanStd(shape=(d,))
        size, k = int(cfg["buffer_size"]), int(cfg["n_models"])
        self.buffer = {"features": np.zeros((size, d), np.float32), "actions": np.zeros((size, len(self.action_dims)),
                       np.int64), "next_features": np.zeros((size, d), np.float32),
                       "weights": np.zeros((size, k), np.float32)}
        if self._pending_state is not None:
            state, self._pending_state = self._pending_state, None
            self.load_state_dict(state)

    def use_agent_features(self, policy: BasePolicy) -> None:
        """For ``features: agent``: take the agent's features extractor (detached) as the encoder."""
        if self.kind == "agent" and self.ensemble is None:
            self.set_encoder(AgentFeatures(policy))

    @property
    def ready(self) -> bool:
        return self.ensemble is not None

    # -- forward -----------------------------------------------------------------------------------
    def features(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        obs = torch.as_tensor(np.asarray(obs) if not isinstance(obs, torch.Tensor) else obs, device=self.device)
        return self.encoder(obs).float().to(self.device)  # agent features come from the policy's device

    def one_hot(self, actions: np.ndarray | torch.Tensor) -> torch.Tensor:
        actions = torch.as_tensor(np.asarray(actions), device=self.device).long().reshape(-1, len(self.action_dims))
        return torch.cat([F.one_hot(actions[:, i], n).float() for i, n in enumerate(self.action_dims)], dim=1)

    def utility(self, features: torch.Tensor, actions: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Disagreement of the members about the outcome of each (features, action): (B,)."""
        self.wait()
        mean, var = self.ensemble(features, self.one_hot(actions))
        # MAX's variance shrinkage: the order-2 divergence punishes members whose aleatoric variances differ
        # (it can go far below 0 over many dimensions), so they are pulled towards the common upper bound
        var_max = float(self.config["var_max"])
        var = var_max - self.var_decay * (var_max - var)
        if self.config["divergence"] == "mc":
            return jensen_shannon_mc(mean, var, int(self.config["mc_samples"]), generator=self.generator,
                                     per_dimension=self.per_dimension)
        return jensen_renyi_divergence(mean, var, per_dimension=self.per_dimension)

    # -- online data -------------------------------------------------------------------------------
    def add(self, features: torch.Tensor, actions: np.ndarray, next_features: torch.Tensor) -> None:
        """Store transitions (FIFO) with fresh bootstrap weights per member, and update the normalisers."""
        self.wait()
        f, nf = features.detach().cpu().numpy(), next_features.detach().cpu().numpy()
        n, size, k = len(f), int(self.config["buffer_size"]), int(self.config["n_models"])
        if self.config["bootstrap"] == "poisson":
            weights = self.rng.poisson(1.0, size=(n, k))
        else:
            weights = self.rng.random((n, k)) < 0.5
        idx = np.arange(self.n_seen, self.n_seen + n) % size
        self.buffer["features"][idx] = f
        self.buffer["actions"][idx] = np.asarray(actions).reshape(n, -1)
        self.buffer["next_features"][idx] = nf
        self.buffer["weights"][idx] = weights
        self.n_seen += n
        self.in_rms.update(f)
        self.out_rms.update((nf - f).reshape(-1))

    def normalise_return(self, intrinsic: np.ndarray, returns: np.ndarray) -> np.ndarray:
        """RND's trick: divide the bonus by the running std of the discounted intrinsic return."""
        self.return_rms.update(returns)
        return intrinsic / np.sqrt(self.return_rms.var + 1e-8)

    def train_ensemble(self, steps: int | None = None) -> dict[str, float]:
        """A few gradient steps on minibatches of the recent transitions; returns loss and disagreement."""
        self.wait()
        n = min(self.n_seen, int(self.config["buffer_size"]))
        if n == 0:
            return {}
        ens = self.ensemble
        if self.n_norm_updates < int(self.config["norm_updates"]):
            # normalisation from the first rollouts only: moving it later would shift every member's inputs
            # and make well-known transitions look novel again
            ens.in_mean.copy_(torch.as_tensor(self.in_rms.mean, dtype=torch.float32))
            ens.in_scale.fill_(float(np.sqrt(np.mean(self.in_rms.var)) + 1e-3))
            ens.out_scale.fill_(float(np.sqrt(self.out_rms.var) + 1e-3))
            self.n_norm_updates += 1
        losses = []
        batch = min(int(self.config["batch_size"]), n)
        for _ in range(int(steps if steps is not None else self.config["train_steps"])):
            idx = self.rng.integers(0, n, size=batch)
            f, a, nf, w = (torch.as_tensor(self.buffer[key][idx], device=self.device)
                           for key in ("features", "actions", "next_features", "weights"))
            loss = ens.nll(f, self.one_hot(a), nf, w)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(loss.item())
        with torch.no_grad():
            idx = self.rng.integers(0, n, size=batch)
            f = torch.as_tensor(self.buffer["features"][idx], device=self.device)
            disagreement = self.utility(f, self.buffer["actions"][idx]).mean().item()
        return {"ensemble_loss": float(np.mean(losses)), "disagreement": disagreement}

    # -- training beside the agent's update ---------------------------------------------------------
    def start_training(self, steps: int | None = None) -> None:
        """Run ``train_ensemble`` in a background thread and return at once; ``finish_training`` collects it.

        Called at a rollout end, the round runs while the agent's own update (which never touches the explorer)
        runs in the main thread, on the other core of a 2-core machine (torch releases the GIL inside its ops).
        Everything that reads or changes the ensemble, the buffer or the explorer's random generator waits for
        the round first (``utility``, ``add``, ``train_ensemble``, ``state_dict``, ``load_state_dict``), so the
        ensemble, the rewards and the random draws are exactly those of training in place; only the time it
        takes moves off the critical path."""
        self.wait()

        def round_() -> None:  # torch gives a new thread the intra-op thread count set with torch.set_num_threads
            try:
                self._round["stats"] = self.train_ensemble(steps)
            except BaseException as err:  # noqa: BLE001 - handed to the main thread by wait()
                self._round["error"] = err

        self._round = {}
        self._training = threading.Thread(target=round_, name="novelty-explorer-training", daemon=True)
        self._training.start()

    def wait(self) -> None:
        """Wait for a round of ``start_training`` under way, if any (re-raising its error); a no-op inside it."""
        thread = self._training
        if thread is None or thread is threading.current_thread():
            return
        thread.join()
        self._training = None
        if "error" in self._round:
            error, self._round = self._round["error"], {}
            raise error

    def finish_training(self) -> dict[str, float] | None:
        """Wait for the round started by ``start_training`` and return its statistics (None if none is pending;
        each round's are returned once)."""
        self.wait()
        stats, self._round = self._round.get("stats"), {}
        return stats

    # -- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self.wait()
        n = min(self.n_seen, int(self.config["buffer_size"]))
        rms = {name: (r.mean, r.var, r.count) for name, r in
               (("return", self.return_rms), ("in", self.in_rms), ("out", self.out_rms))}
        return {"config": self.config, "seed": self.seed, "kind": self.kind,
                "observation_space": self.observation_space, "action_space": self.action_space,
                "encoder": self.encoder.state_dict(), "ensemble": self.ensemble.state_dict(),
                "optimizer": self.optimizer.state_dict(), "rms": rms, "n_seen": self.n_seen,
                "n_norm_updates": self.n_norm_updates,
                "buffer": {key: value[:n].copy() for key, value in self.buffer.items()},
                "rng": self.rng.bit_generator.state, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wait()
        if not self.ready:  # agent features: the ensemble is built when the policy is known
            self._pending_state = state
            return
        try:
            self.encoder.load_state_dict(state["encoder"])
            self.ensemble.load_state_dict(state["ensemble"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError) as err:
            raise DataError(f"explorer state does not fit this explorer (saved with config {state['config']}): "
                            f"{err}") from err
        for name, rms in (("return", self.return_rms), ("in", self.in_rms), ("out", self.out_rms)):
            rms.mean, rms.var, rms.count = state["rms"][name]
        self.n_seen = int(state["n_seen"])
        self.n_norm_updates = int(state["n_norm_updates"])
        for key, value in state["buffer"].items():
            self.buffer[key][: len(value)] = value
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])

    def save(self, path: str | Path) -> None:
        """Write the whole explorer state (atomically: tmp file then rename)."""
        path = Path(path)
        if not self.ready:
            raise RuntimeError("the explorer has no ensemble yet (features: agent builds it when training starts)")
        io.atomic_write(path, lambda tmp: torch.save(self.state_dict(), tmp))

    @classmethod
    def load(cls, path: str | Path, policy: BasePolicy | None = None) -> NoveltyExplorer:
        """Rebuild an explorer from a state file (``policy`` is needed for ``features: agent``)."""
        state = read_state(path)
        explorer = cls(state["observation_space"], state["action_space"], state["config"], seed=state["seed"])
        if explorer.kind == "agent":
            if policy is None:
                raise ValueError(f"explorer {path} uses the agent's features: pass the trained policy")
            explorer.use_agent_features(policy)
        explorer.load_state_dict(state)
        return explorer


STATE_KEYS = ("config", "observation_space", "action_space", "encoder", "ensemble", "optimizer", "rms", "buffer")


def read_state(path: str | Path) -> dict[str, Any]:
    """An explorer state file's contents, or a DataError naming the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"explorer state {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise DataError(f"{path} is not a novelty explorer state file (corrupt or another format: {err})") from err
    if not isinstance(state, dict) or any(key not in state for key in STATE_KEYS):
        raise DataError(f"{path} is not a novelty explorer state file (missing entries)")
    return state
