"""Action and unit visualisation in pixel space (Simonyan et al. 2014; Yosinski et al. 2015).

Gradient ascent on a stack of 4 frames ``x`` (float, 0..255) to maximise ``s(x) - l2 * mean(((x - r) / 255)^2)``,
``s`` an action's score (``logit``, ``log_prob``, DQN ``q``) or one internal unit (``targets.py``), ``r`` the
reference frame: black when starting from noise (``init="noise"``: Gaussian grey noise, mean 128, std 32), the
observation itself when starting from real observations (``init="observation"``: row k starts from observation
k mod N), so that the result is the observation plus the change the target wants. Adam steps of ``lr`` grey
levels; implicit regularisation: every step the frames are shifted by a random jitter of up to ``jitter`` pixels
before the forward pass (the gradient comes back through the shift), every ``blur_every`` steps the change
``x - r`` is blurred with a Gaussian of ``blur_sigma`` pixels, and after every step pixels are clipped to 0..255.
The L2 term pulls pixels the score ignores back to the reference (black, the usual Atari background, from noise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.policies import BasePolicy
from tqdm.auto import tqdm

from rl_saliency.errors import OptionError, check_count
from rl_saliency.visualize.base import (
    Visualization,
    as_float_frames,
    check_image_policy,
    check_positive,
    register,
)
from rl_saliency.visualize.targets import Objective

INITS = ("noise", "observation")
NOISE_MEAN, NOISE_STD = 128.0, 32.0


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each frame of ``(N, C, H, W)`` with a separable Gaussian of ``sigma`` pixels (reflected borders)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    n, c, h, w = x.shape
    flat = F.pad(x.reshape(n * c, 1, h, w), (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel.view(1, 1, 1, -1))
    flat = F.conv2d(flat, kernel.view(1, 1, -1, 1))
    return flat.view(n, c, h, w)


def random_jitter(x: torch.Tensor, jitter: int, generator: torch.Generator) -> torch.Tensor:
    """``x`` rolled by one random (dy, dx) in [-jitter, jitter] (the same for the whole batch)."""
    if jitter <= 0:
        return x
    dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=generator))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


class PixelAscent:
    """The shared optimiser of ``action`` and ``unit`` visualisation (settings: see the module doc)."""

    name = "pixel"
    units = False

    def __init__(self, steps: int = 200, lr: float = 4.0, l2: float = 1.0, blur_every: int = 4,
                 blur_sigma: float = 0.5, jitter: int = 2, init: str = "noise", objective: str = "logit",
                 seed: int = 0, action_names: Sequence[str] | None = None, progress: bool = False):
        self.steps = check_count(steps, "steps")
        self.lr = check_positive(lr, "lr")
        self.l2 = check_positive(l2, "l2", allow_zero=True)
        self.blur_every = check_count(blur_every, "blur_every", minimum=0)
        self.blur_sigma = check_positive(blur_sigma, "blur_sigma")
        self.jitter = check_count(jitter, "jitter", minimum=0, maximum=20)
        if init not in INITS:
            raise OptionError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        self.init = init
        self.objective = objective
        self.seed = int(seed)
        self.action_names = action_names
        self.progress = progress

    def start_frames(self, policy: BasePolicy, k: int, observations: np.ndarray | torch.Tensor | None,
                     generator: torch.Generator) -> torch.Tensor:
        """(k, 4, 84, 84) float starting frames: grey noise, or the observations in turn."""
        if self.init == "observation":
            if observations is None or len(observations) == 0:
                raise OptionError("init 'observation' needs observations to start from")
            obs = as_float_frames(policy, observations)
            return obs[torch.arange(k, device=obs.device) % len(obs)].clone()
        noise = NOISE_MEAN + NOISE_STD * torch.randn((k, 4, 84, 84), generator=generator)
        return noise.clamp(0, 255).to(policy.device)

    def reference(self, x0: torch.Tensor) -> torch.Tensor:
        """What the L2 term and the blur measure the change from: black, or the observation started from."""
        return x0.detach().clone() if self.init == "observation" else torch.zeros_like(x0)

    def ascend(self, score: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, generator: torch.Generator,
               desc: str = "visualize") -> torch.Tensor:
        """Maximise ``score(x).sum() - l2 * sum_k mean(((x_k - r_k) / 255)^2)`` from ``x0``; returns the frames."""
        # Adam works on u = x / 255 in 0..1: gradients w.r.t. 0..255 pixels are so small that Adam's epsilon would
        # swallow the L2 term's; w.r.t. u, a change of 1/30 grey level still gets a full step.
        ref = self.reference(x0) / 255.0
        u = (x0.detach() / 255.0).clone().requires_grad_(True)
        optimiser = torch.optim.Adam([u], lr=self.lr / 255.0, eps=1e-8)
        for step in tqdm(range(self.steps), desc=desc, unit="step", disable=not self.progress, leave=False):
            optimiser.zero_grad(set_to_none=True)
            with torch.enable_grad():
                s = score(random_jitter(u * 255.0, self.jitter, generator))
                penalty = self.l2 * (u - ref).pow(2).mean(dim=(1, 2, 3))
                loss = -(s - penalty).sum()
                loss.backward()
            optimiser.step()
            with torch.no_grad():
                if self.blur_every and (step + 1) % self.blur_every == 0 and step + 1 < self.steps:
                    u.copy_(ref + gaussian_blur(u - ref, self.blur_sigma))
                u.clamp_(0.0, 1.0)
        return (u.detach() * 255.0).clamp_(0.0, 255.0)

    def visualize(self, policy: BasePolicy, targets: Sequence[Any] | None = None,
                  observations: np.ndarray | torch.Tensor | None = None) -> Visualization:
        """One stack per target (actions: default all; units: names such as ``features:7``)."""
        check_image_policy(policy)
        policy.set_training_mode(False)
        objective = Objective(policy, targets, self.objective, self.action_names, units=self.units)
        generator = torch.Generator().manual_seed(self.seed)
        x0 = self.start_frames(policy, len(objective), observations, generator)
        with torch.no_grad():
            before = objective(x0)
        frames = self.ascend(lambda x: objective(x)[0], x0, generator, desc=f"{self.name} ({len(objective)} rows)")
        with torch.no_grad():
            after = objective(frames)
        rows = objective.rows(before, after)
        for row, f in zip(rows, frames, strict=True):
            row.update(init=self.init, mean_pixel_after=float(f.mean()))
        return Visualization(self.name, frames.cpu().numpy().astype(np.float32), x0.cpu().numpy().astype(np.float32),
                             objective.labels, rows)


@register("action")
class ActionVisualizer(PixelAscent):
    """The frames that maximise each action's score (its logit, log-probability or Q-value)."""

    name = "action"


@register("unit")
class UnitVisualizer(PixelAscent):
    """The frames that maximise internal units: conv channels, features, attention cells (``targets.py``)."""

    name = "unit"
    units = True
