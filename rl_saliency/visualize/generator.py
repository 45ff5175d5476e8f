"""Activation maximisation with a learned prior (DGN-AM, Nguyen et al. 2016), on the agent's own feature layer.

1. A generator ``G`` learns to invert the agent's features extractor ``E`` (its output, the 512-d features of
   NatureCNN and this package's extractors): ``G(E(x)) ~ x`` on observations the agent itself played, with a pixel
   loss (squared error on 0..1 frames, summed over a stack's pixels) plus ``feature_weight`` times a
   feature-matching loss through the frozen extractor (``|E(G(E(x))) - E(x)|^2`` relative to ``|E(x)|^2``).
   The history records the pixel term as a mean squared error (``pixel_loss``, 0..1 scale). ``G``'s output is
   ``255 * sigmoid(.)``: always in 0..255. Training saves a checkpoint (weights, optimiser, step, random state,
   loss history) every ``checkpoint_every`` steps and resumes from it to exactly the same result.
2. Activation maximisation then optimises the code ``h`` instead of the pixels: ``s(G(h)) - l2 |h|^2 / |a|^2``,
   ``h`` clipped to ``[0, a]`` per component, ``a`` = mean + 3 standard deviations of that component over the real
   codes (floor 0: the features follow a ReLU). ``s`` is an action's score or a unit (``targets.py``).
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from torch import nn
from tqdm.auto import tqdm

from rl_saliency import io
from rl_saliency.errors import DataError, OptionError, check_count
from rl_saliency.visualize.base import (
    Visualization,
    as_float_frames,
    check_image_policy,
    check_positive,
    register,
)
from rl_saliency.visualize.targets import Objective, actor_extractor

CHECKPOINT = "generator.pt"
HISTORY = "history.csv"
INITS = ("mean", "observation")


# ------------------------------------------------------------------------------------------------ the encoder

def encode(policy: BasePolicy, frames: torch.Tensor) -> torch.Tensor:
    """``E(x)``: the actor's features extractor on frames in 0..255 (SB3's own preprocessing first), ``(N, D)``."""
    extractor = actor_extractor(policy)
    features = extractor(preprocess_obs(frames, policy.observation_space, normalize_images=policy.normalize_images))
    if not isinstance(features, torch.Tensor) or features.dim() != 2:
        raise OptionError(f"the generator prior inverts a flat feature vector; {type(extractor).__name__} gives "
                          f"{type(features).__name__} of shape {tuple(getattr(features, 'shape', ()))}")
    return features


def encode_all(policy: BasePolicy, observations: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """The codes of all observations, without gradients, in chunks."""
    with torch.no_grad():
        return torch.cat([encode(policy, as_float_frames(policy, observations[i:i + batch_size]))
                          for i in range(0, len(observations), batch_size)]).cpu()


def fingerprint(policy: BasePolicy, observations: np.ndarray) -> str:
    """A digest of the extractor's weights and the training observations: a checkpoint fits only these."""
    digest = hashlib.sha1()
    for name, tensor in sorted(actor_extractor(policy).state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(np.ascontiguousarray(observations).tobytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ the generator

class Generator(nn.Module):
    """Code ``(N, D)`` -> frames ``(N, 4, 84, 84)`` in 0..255: a linear layer to 64x7x7, then transposed
    convolutions mirroring the Nature trunk (3x3/1 -> 9x9, 4x4/2 -> 20x20, 8x8/4 -> 84x84)."""

    def __init__(self, code_dim: int, code_scale: torch.Tensor | None = None, width: int = 64,
                 pixel_mean: float | None = None):
        super().__init__()
        self.code_dim = code_dim
        self.width = width
        scale = torch.ones(code_dim) if code_scale is None else torch.as_tensor(code_scale, dtype=torch.float32)
        self.register_buffer("code_scale", scale.clone())  # codes are divided by it (per-component spread)
        self.fc = nn.Sequential(nn.Linear(code_dim, width * 7 * 7), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(width, width, 3, stride=1), nn.ReLU(),
            nn.ConvTranspose2d(width, 32, 4, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(32, 4, 8, stride=4))
        if pixel_mean is not None:  # start at the data's mean brightness, not mid-grey (Atari frames are dark)
            p = min(max(pixel_mean / 255.0, 0.01), 0.99)
            with torch.no_grad():
                self.net[-1].bias.fill_(float(np.log(p / (1 - p))))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        hidden = self.fc(code / self.code_scale).view(-1, self.width, 7, 7)
        return 255.0 * torch.sigmoid(self.net(hidden))


@dataclass
class GeneratorConfig:
    """How the generator is trained (a resumed run must keep these)."""

    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    feature_weight: float = 1.0
    checkpoint_every: int = 250
    seed: int = 0

    def check(self) -> GeneratorConfig:
        self.steps = check_count(self.steps, "generator steps", maximum=10_000_000)
        self.batch_size = check_count(self.batch_size, "generator batch size")
        self.lr = check_positive(self.lr, "generator lr")
        self.feature_weight = check_positive(self.feature_weight, "feature weight", allow_zero=True)
        self.checkpoint_every = check_count(self.checkpoint_every, "checkpoint every")
        return self


@dataclass
class GeneratorPrior:
    """A trained generator with the statistics of the real codes: ``a`` (the clip bound) and their mean."""

    generator: Generator
    code_mean: torch.Tensor
    code_std: torch.Tensor
    step: int
    history: pd.DataFrame

    @property
    def code_max(self) -> torch.Tensor:
        """``a``: mean + 3 standard deviations of each component over real codes, at least 0."""
        return (self.code_mean + 3.0 * self.code_std).clamp_min(0.0)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.generator(code)

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> GeneratorPrior:
        """The generator of ``folder/generator.pt`` (as trained so far) with its code statistics and history."""
        state = _read_checkpoint(Path(folder) / CHECKPOINT)
        generator = Generator(int(state["code_dim"]), state["code_std_scale"], int(state.get("width", 64)))
        generator.load_state_dict(state["generator"])
        history_path = Path(folder) / HISTORY
        history = pd.read_csv(history_path) if history_path.exists() else pd.DataFrame()
        history = history[history["step"] <= state["step"]] if len(history) else history
        return cls(generator.to(device).eval(), state["code_mean"].to(device), state["code_std"].to(device),
                   int(state["step"]), history)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"no generator checkpoint at {path}; train one first (rl-saliency visualize --what generator)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
        raise DataError(f"generator checkpoint {path} is unreadable (corrupt or truncated: {err}); remove it to "
                        f"train afresh") from err


def _save_checkpoint(folder: Path, state: dict[str, Any], history: list[dict[str, float]]) -> None:
    # history first: a checkpoint never points at steps the history lacks (extra rows are cut on load)
    io.write_csv(folder / HISTORY, pd.DataFrame(history))
    io.atomic_write(folder / CHECKPOINT, lambda tmp: torch.save(state, tmp))


def train_generator(policy: BasePolicy, observations: np.ndarray, folder: str | Path,
                    config: GeneratorConfig | None = None, progress: bool = False) -> GeneratorPrior:
    """Train (or resume, from ``folder/generator.pt``) a generator that inverts the policy's features.

    ``observations``: frames the agent played, ``(N, 4, 84, 84)`` uint8. A checkpoint made for another agent,
    other observations or other settings is a DataError (remove the folder or use another one).
    """
    check_image_policy(policy)
    config = (config or GeneratorConfig()).check()
    folder = Path(folder)
    observations = np.asarray(observations)
    if observations.ndim != 4 or observations.shape[1:] != (4, 84, 84) or len(observations) < 2:
        raise DataError(f"the generator needs at least 2 observations (N, 4, 84, 84); got {observations.shape}")
    policy.set_training_mode(False)
    device = policy.device
    codes = encode_all(policy, observations)
    code_mean, code_std = codes.mean(dim=0), codes.std(dim=0)
    scale = code_std + 1e-6 + 0.01 * float(code_std.mean())
    with torch.random.fork_rng(devices=[]):  # the same initial weights for the same seed, whatever ran before
        torch.manual_seed(config.seed)
        generator = Generator(codes.shape[1], scale, pixel_mean=float(observations.mean())).to(device)
    optimiser = torch.optim.Adam(generator.parameters(), lr=config.lr)
    rng = torch.Generator().manual_seed(config.seed)
    print_digest = fingerprint(policy, observations)
    step, history = 0, []
    path = folder / CHECKPOINT
    if path.exists():
        state = _read_checkpoint(path)
        saved = {k: v for k, v in state["config"].items() if k != "steps"}
        wanted = {k: v for k, v in asdict(config).items() if k != "steps"}
        if state.get("fingerprint") != print_digest or saved != wanted:
            raise DataError(f"{path} was trained for another agent, other observations or other settings "
                            f"({saved}); use another folder or remove it to train afresh")
        generator.load_state_dict(state["generator"])
        optimiser.load_state_dict(state["optimizer"])
        rng.set_state(state["rng"])
        step = int(state["step"])
        history_path = folder / HISTORY
        if history_path.exists():
            history = [r for r in pd.read_csv(history_path).to_dict("records") if r["step"] <= step]
    extractor = actor_extractor(policy)
    frozen = [(p, p.requires_grad) for p in extractor.parameters()]
    obs = torch.as_tensor(observations)
    bar = tqdm(total=config.steps, initial=min(step, config.steps), desc="generator", unit="step",
               disable=not progress)

    def state_now() -> dict[str, Any]:
        return {"generator": generator.state_dict(), "optimizer": optimiser.state_dict(), "step": step,
                "rng": rng.get_state(), "config": asdict(config), "fingerprint": print_digest,
                "code_dim": codes.shape[1], "width": generator.width, "code_mean": code_mean,
                "code_std": code_std, "code_std_scale": scale}

    try:
        for p, _ in frozen:
            p.requires_grad_(False)
        generator.train()
        while step < config.steps:
            index = torch.randint(len(obs), (config.batch_size,), generator=rng)
            x = obs[index].to(device, torch.float32)
            h = codes[index].to(device)
            with torch.enable_grad():
                y = generator(h)
                pixel = F.mse_loss(y / 255.0, x / 255.0)
                feature = F.mse_loss(encode(policy, y), h) / h.pow(2).mean().clamp_min(1e-8)
                # the pixel term summed over a stack's pixels (as in Dosovitskiy & Brox), the feature term relative:
                # with a mean over 28,224 pixels the feature gradient is ~1000x the pixel one and swamps it
                loss = pixel * y[0].numel() + config.feature_weight * feature
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
            optimiser.step()
            step += 1
            history.append({"step": step, "pixel_loss": float(pixel.detach()), "feature_loss": float(feature.detach()),
                            "loss": float(loss.detach())})
            bar.update()
            bar.set_postfix(pixel=f"{float(pixel.detach()):.4f}", feature=f"{float(feature.detach()):.3f}")
            if step % config.checkpoint_every == 0 or step == config.steps:
                _save_checkpoint(folder, state_now(), history)
    except KeyboardInterrupt:
        _save_checkpoint(folder, state_now(), history)  # Ctrl-C / SIGTERM: keep what was learned
        raise
    finally:
        bar.close()
        for p, flag in frozen:
            p.requires_grad_(flag)
        generator.eval()
    if not path.exists():  # nothing to train (steps already reached by a run without a checkpoint): save once
        _save_checkpoint(folder, state_now(), history)
    return GeneratorPrior(generator, code_mean.to(device), code_std.to(device), step, pd.DataFrame(history))


# ------------------------------------------------------------------------------------------------ maximisation

@register("generator")
class GeneratorVisualizer:
    """Maximise an action's score (or a unit, with ``units=True``) over the generator's code (module doc)."""

    name = "generator"

    def __init__(self, prior: GeneratorPrior, steps: int = 200, lr: float = 0.05, l2: float = 0.1,
                 init: str = "mean", objective: str = "logit", units: bool = False, seed: int = 0,
                 action_names: Sequence[str] | None = None, progress: bool = False):
        if not isinstance(prior, GeneratorPrior):
            raise OptionError("the generator visualisation needs a trained GeneratorPrior (train_generator or "
                              "GeneratorPrior.load)")
        if init not in INITS:
            raise OptionError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        self.prior = prior
        self.steps = check_count(steps, "steps")
        self.lr = check_positive(lr, "lr")
        self.l2 = check_positive(l2, "l2", allow_zero=True)
        self.init = init
        self.objective = objective
        self.units = units
        self.seed = int(seed)
        self.action_names = action_names
        self.progress = progress

    def start_codes(self, policy: BasePolicy, k: int, observations: np.ndarray | torch.Tensor | None
                    ) -> torch.Tensor:
        """(k, D): the mean real code, or the codes of the observations in turn, inside ``[0, a]``."""
        device = policy.device
        bound = self.prior.code_max.to(device)
        if self.init == "observation":
            if observations is None or len(observations) == 0:
                raise OptionError("init 'observation' needs observations to start from")
            with torch.no_grad():
                codes = encode(policy, as_float_frames(policy, observations))
            codes = codes[torch.arange(k, device=codes.device) % len(codes)]
        else:
            codes = self.prior.code_mean.to(device).expand(k, -1)
        return torch.minimum(codes.clamp_min(0.0), bound).clone()

    def visualize(self, policy: BasePolicy, targets: Sequence[Any] | None = None,
                  observations: np.ndarray | torch.Tensor | None = None) -> Visualization:
        check_image_policy(policy)
        policy.set_training_mode(False)
        objective = Objective(policy, targets, self.objective, self.action_names, units=self.units)
        generator = self.prior.generator.to(policy.device).eval()
        bound = self.prior.code_max.to(policy.device)
        if bound.numel() != generator.code_dim:
            raise OptionError(f"the generator inverts {generator.code_dim}-d codes; this policy's code has "
                              f"{bound.numel()} components")
        live = bound > 0
        safe = torch.where(live, bound, torch.ones_like(bound))
        h0 = self.start_codes(policy, len(objective), observations)
        u = (h0 / safe).clamp(0.0, 1.0).mul(live).requires_grad_(True)  # h = a * u, u in [0, 1]
        norm = bound.pow(2).sum().clamp_min(1e-12)
        optimiser = torch.optim.Adam([u], lr=self.lr)
        with torch.no_grad():
            start = generator(h0)
            before = objective(start)
        for _ in tqdm(range(self.steps), desc=f"generator ({len(objective)} rows)", unit="step",
                      disable=not self.progress, leave=False):
            optimiser.zero_grad(set_to_none=True)
            with torch.enable_grad():
                h = u * bound
                s, _ = objective(generator(h))
                loss = -(s - self.l2 * h.pow(2).sum(dim=1) / norm).sum()
                loss.backward()
            optimiser.step()
            with torch.no_grad():
                u.clamp_(0.0, 1.0).mul_(live)
        with torch.no_grad():
            code = u.detach() * bound
            frames = generator(code)
            after = objective(frames)
        rows = objective.rows(before, after)
        for row, c, f in zip(rows, code, frames, strict=True):
            row.update(init=self.init, code_norm=float(c.norm()), code_at_bound=float((c >= bound - 1e-6)[live]
                                                                                     .float().mean()),
                       mean_pixel_after=float(f.mean()))
        return Visualization(self.name, frames.cpu().numpy().astype(np.float32),
                             start.cpu().numpy().astype(np.float32), objective.labels, rows,
                             extra={"codes": code.cpu().numpy()})
