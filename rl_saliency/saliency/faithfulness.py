"""Does a saliency map explain the decision? Deletion and insertion curves, and robustness to small noise.

- Deletion (Petsiuk et al. 2018, RISE): replace the most salient pixels first by a fill (the frame blurred, or
  each stacked frame's mean), in ``steps`` equal steps up to ``max_fraction`` of the pixels, and track the
  probability the policy gives to the action it chose on the clean observation. A map that marks what the
  decision rests on makes the probability fall early: a low area under the curve (AUC). Insertion starts from
  the filled frame and puts the original pixels back, most salient first: a high AUC is good. Each map is
  compared with random pixel orders on the same observations (the baseline: a map no better than random has
  the random AUC). A pixel is all four stacked frames at that position. Ties in a map are broken at random, so a
  constant map behaves like the random order.
- Robustness: the rank correlation (Spearman) of a method's map with its map of the same observation plus small
  Gaussian noise that leaves the chosen action unchanged; 1 = the map does not move.

Probabilities: the softmax of an actor's logits, or of a DQN's Q-values (the convention of SARFA). The AUC is
the mean probability over the curve (trapezoid rule over the fractions, divided by ``max_fraction``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.policies import BasePolicy

from rl_saliency.errors import DataError, OptionError, check_count
from rl_saliency.saliency.base import OBS_SHAPE
from rl_saliency.saliency.methods import policy_outputs
from rl_saliency.saliency.perturbation import FILLS, fill_frames
from rl_saliency.saliency.sanity import spearman

MODES = ("deletion", "insertion")


@dataclass
class Curves:
    """Probability of the originally chosen action after each step: ``probabilities`` (N, steps + 1) at
    ``fractions`` (steps + 1,) of the pixels replaced (deletion) or restored (insertion)."""

    mode: str
    fractions: np.ndarray
    probabilities: np.ndarray

    @property
    def auc(self) -> np.ndarray:
        """Area under each observation's curve, per unit of fraction (N,): the mean probability along it."""
        span = self.fractions[-1] - self.fractions[0]
        return np.trapezoid(self.probabilities, self.fractions, axis=1) / span

    def mean_curve(self) -> np.ndarray:
        return self.probabilities.mean(axis=0)


# ------------------------------------------------------------------------------------------------ checks

def check_observations(observations: Any, what: str = "observations") -> np.ndarray | torch.Tensor:
    """A batch (N >= 1, 4, 84, 84) or a DataError saying what was given."""
    shape = tuple(getattr(observations, "shape", ()))
    if len(shape) != 4 or shape[1:] != OBS_SHAPE or shape[0] < 1:
        raise DataError(f"{what} must have shape (N, 4, 84, 84) (stacked grey frames, channels first); got {shape}")
    return observations


def check_maps(maps: Any, n: int) -> np.ndarray:
    maps = np.asarray(maps, dtype=np.float64)
    if maps.shape != (n, *OBS_SHAPE[1:]):
        raise DataError(f"maps must have shape ({n}, 84, 84), one per observation; got {maps.shape}")
    if not np.isfinite(maps).all():
        raise DataError("maps must be finite")
    return maps


def check_steps(steps: Any, option: str = "steps") -> int:
    """An integer from 2 to the number of pixels, or an OptionError naming ``option``."""
    steps = check_count(steps, option, minimum=2)
    if steps > OBS_SHAPE[1] * OBS_SHAPE[2]:
        raise OptionError(f"{option} must be at most {OBS_SHAPE[1] * OBS_SHAPE[2]} (one pixel per step), got {steps}")
    return steps


def check_fraction(value: Any, option: str, upper: float = 1.0) -> float:
    """A number in (0, upper] or an OptionError naming ``option``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not (0.0 < number <= upper):
        raise OptionError(f"{option} must be a fraction in (0, {upper:g}], got {value!r}")
    return number


def check_fill(fill: str, option: str = "fill") -> str:
    if fill not in FILLS:
        raise OptionError(f"{option} must be one of {', '.join(FILLS)}, got {fill!r}")
    return fill


# ------------------------------------------------------------------------------------------------ policy side

def _float_obs(policy: BasePolicy, observations: np.ndarray | torch.Tensor) -> torch.Tensor:
    check_observations(observations)
    obs = torch.as_tensor(np.asarray(observations) if not isinstance(observations, torch.Tensor) else observations)
    return obs.to(policy.device).float()


def greedy_actions(policy: BasePolicy, observations: np.ndarray | torch.Tensor) -> np.ndarray:
    """The action each observation's scores rank first (N,)."""
    policy.set_training_mode(False)
    with torch.no_grad():
        return policy_outputs(policy, _float_obs(policy, observations))[0].argmax(dim=1).cpu().numpy()


def action_probability(policy: BasePolicy, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Softmax probability of ``actions`` (M,) on float observations (M, 4, 84, 84)."""
    with torch.no_grad():
        logits = policy_outputs(policy, obs)[0]
    return F.softmax(logits.double(), dim=1).gather(1, actions.long()[:, None]).squeeze(1)


# ------------------------------------------------------------------------------------------------ orders

def salience_order(maps: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, H * W) pixel indices, most salient first; equal values in random order (seeded)."""
    maps = np.asarray(maps, dtype=np.float64)
    flat = maps.reshape(len(maps), -1)
    tie_break = np.random.default_rng(seed).random(flat.shape)
    return np.lexsort((tie_break, -flat), axis=1)


def random_order(n: int, n_pixels: int, seed: int = 0) -> np.ndarray:
    """(n, n_pixels) random pixel orders."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n_pixels) for _ in range(n)])


# ------------------------------------------------------------------------------------------------ curves

def curves(policy: BasePolicy, observations: np.ndarray | torch.Tensor, orders: np.ndarray, mode: str,
           steps: int = 20, fill: str = "blur", blur_sigma: float = 5.0, max_fraction: float = 1.0,
           actions: np.ndarray | None = None, batch_size: int = 256) -> Curves:
    """Deletion or insertion curves of ``observations`` (N, 4, 84, 84) with pixel ``orders`` (N, 84 * 84).

    ``actions``: the action whose probability is tracked (default: each observation's greedy action)."""
    if mode not in MODES:
        raise OptionError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    steps, fill = check_steps(steps), check_fill(fill)
    max_fraction = check_fraction(max_fraction, "max_fraction")
    batch_size = check_count(batch_size, "batch_size")
    policy.set_training_mode(False)
    obs = _float_obs(policy, observations)
    n, _, height, width = obs.shape
    n_pixels = height * width
    orders = np.asarray(orders)
    if orders.shape != (n, n_pixels):
        raise DataError(f"orders must have shape ({n}, {n_pixels}); got {orders.shape}")
    actions = greedy_actions(policy, obs) if actions is None else np.asarray(actions).reshape(-1)
    filled = fill_frames(obs, fill, blur_sigma)
    fractions = np.linspace(0.0, max_fraction, steps + 1)
    counts = torch.as_tensor(np.round(fractions * n_pixels).astype(np.int64), device=obs.device)
    ranks = np.empty_like(orders)
    np.put_along_axis(ranks, orders, np.arange(n_pixels)[None].repeat(n, 0), axis=1)
    ranks_t = torch.as_tensor(ranks, device=obs.device)
    probabilities = np.empty((n, steps + 1))
    per_pass = max(1, batch_size // (steps + 1))
    for start in range(0, n, per_pass):
        index = slice(start, min(start + per_pass, n))
        # (k, steps + 1, 1, H, W): True where the pixel is replaced at that step
        replaced = (ranks_t[index, None, :] < counts[None, :, None]).view(-1, steps + 1, 1, height, width)
        begin, end = (obs[index], filled[index]) if mode == "deletion" else (filled[index], obs[index])
        images = torch.where(replaced, end[:, None], begin[:, None]).reshape(-1, *obs.shape[1:])
        tracked = torch.as_tensor(actions[index], device=obs.device).repeat_interleave(steps + 1)
        probabilities[index] = action_probability(policy, images, tracked).view(-1, steps + 1).cpu().numpy()
    return Curves(mode, fractions, probabilities)


def deletion_insertion(policy: BasePolicy, observations: np.ndarray | torch.Tensor, maps: np.ndarray | None,
                       steps: int = 20, fill: str = "blur", blur_sigma: float = 5.0, max_fraction: float = 1.0,
                       seed: int = 0, batch_size: int = 256) -> dict[str, Curves]:
    """Both curves for ``maps`` (N, 84, 84), or for random pixel orders when ``maps`` is None (the baseline)."""
    check_observations(observations)
    n = len(observations)
    if maps is None:
        orders = random_order(n, OBS_SHAPE[1] * OBS_SHAPE[2], seed)
    else:
        orders = salience_order(check_maps(maps, n), seed)
    actions = greedy_actions(policy, observations)
    return {mode: curves(policy, observations, orders, mode, steps=steps, fill=fill, blur_sigma=blur_sigma,
                         max_fraction=max_fraction, actions=actions, batch_size=batch_size) for mode in MODES}


# ------------------------------------------------------------------------------------------------ robustness

@dataclass
class Robustness:
    """Spearman correlation of each (clean, noisy) map pair, the observations used and the noise level."""

    correlations: np.ndarray
    used: int
    skipped: int
    noise: float

    @property
    def mean(self) -> float:
        finite = self.correlations[np.isfinite(self.correlations)]
        return float(finite.mean()) if finite.size else float("nan")


def robustness(attribute: Callable[[BasePolicy, np.ndarray], np.ndarray], policy: BasePolicy,
               observations: np.ndarray | torch.Tensor, maps: np.ndarray | None = None, noise: float = 0.01,
               n_samples: int = 1, seed: int = 0, max_tries: int = 5) -> Robustness:
    """How much maps move under noise that does not change the action.

    ``attribute(policy, obs) -> maps``; ``noise``: the Gaussian noise's std as a fraction of the 0..255 range
    (clipped to it); each observation gets ``n_samples`` noisy copies, each redrawn up to ``max_tries`` times until
    the greedy action is the clean one's (observations where it never is are skipped)."""
    noise = check_fraction(noise, "noise", upper=0.5)
    n_samples, max_tries = check_count(n_samples, "n_samples"), check_count(max_tries, "max_tries")
    obs = np.asarray(observations.cpu() if isinstance(observations, torch.Tensor) else observations,
                     dtype=np.float32)
    check_observations(obs)
    clean_maps = attribute(policy, obs) if maps is None else check_maps(maps, len(obs))
    actions = greedy_actions(policy, obs)
    rng = np.random.default_rng(seed)
    noisy, source = [], []
    skipped = 0
    for _ in range(n_samples):
        pending = np.arange(len(obs))
        for _ in range(max_tries):
            if not len(pending):
                break
            candidate = np.clip(obs[pending] + rng.normal(0.0, noise * 255.0, obs[pending].shape), 0, 255)
            candidate = candidate.astype(np.float32)
            same = greedy_actions(policy, candidate) == actions[pending]
            noisy.extend(candidate[same])
            source.extend(pending[same])
            pending = pending[~same]
        skipped += len(pending)
    if not noisy:
        return Robustness(np.array([]), 0, skipped, noise)
    noisy_maps = attribute(policy, np.stack(noisy))
    correlations = np.array([spearman(clean_maps[i], m) for i, m in zip(source, noisy_maps, strict=True)])
    return Robustness(correlations, len(set(source)), skipped, noise)
