"""Attention in TensorBoard: an SB3 callback that, every N updates, logs the agent's saliency over a fixed set of
observations as one overlay image, so a user watches attention form during training.

The images go through SB3's own logger (``stable_baselines3.common.logger.Image``), so the run needs a logger with
SB3's ``TensorBoardOutputFormat`` (``rl-saliency train --tensorboard DIR`` sets one up; in plain SB3,
``PPO(..., tensorboard_log=DIR)``). Each image is a strip of ``n_obs`` observations: the newest frame of each
stack, enlarged ``scale`` times, with the map laid on as a jet heat map, each map scaled from its own minimum to
its maximum (where the agent looks, not how strongly: FLS attention, a softplus, sits well above 0 everywhere).
The observations are taken once, spread over the first four rollouts (not just the games' openings) and over the
envs, and kept in ``observations.npy`` beside the event files, so that a resumed run shows the same ones; the first
image comes at the first update due once they are taken.

With the novelty explorer (``agents/exploration.py``), the intrinsic rewards of each rollout are logged as a
histogram (``explorer/intrinsic_reward``; the explorer's own ``explorer/*`` scalars come through the same logger)
and the ``novelty`` saliency as a second strip.

Spec section (all keys optional)::

    tensorboard:
      every: 10          # updates (rollouts) between images
      method: attention  # or any saliency method; default: attention where the policy has it, else gradient
      method_kwargs: {}  # options of the method, e.g. {stride: 5} for perturbation
      n_obs: 8           # observations in the strip
      scale: 2           # enlargement of each 84x84 frame
      dir: null          # event folder (default: --tensorboard DIR, else <run>/tensorboard)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Image

from rl_saliency import io
from rl_saliency.errors import OptionError, SpecError

DEFAULTS: dict[str, Any] = {"every": 10, "method": None, "method_kwargs": {}, "n_obs": 8, "scale": 2, "dir": None}
NOT_TENSORBOARD = ("stdout", "log", "json", "csv")  # images and histograms go to TensorBoard only
OBS_FILE = "observations.npy"
SEPARATOR = 2  # white pixels between the observations of a strip
COLLECT_ROLLOUTS = 4  # the fixed observations are spread over this many rollouts


def check_config(config: dict[str, Any] | None, where: str = "tensorboard config") -> dict[str, Any]:
    """The spec's ``tensorboard:`` section with defaults filled in; a SpecError names a bad key or value."""
    config = dict(config or {})
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise SpecError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **config}
    for key in ("every", "n_obs", "scale"):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"{where}: {key} must be an integer >= 1, got {value!r}")
    if out["method"] is not None and not isinstance(out["method"], str):
        raise SpecError(f"{where}: method must be a saliency method's name, got {out['method']!r}")
    if not isinstance(out["method_kwargs"] or {}, dict):
        raise SpecError(f"{where}: method_kwargs must be a mapping, got {out['method_kwargs']!r}")
    out["method_kwargs"] = dict(out["method_kwargs"] or {})
    if out["method"] is not None:
        from rl_saliency.saliency import get_method

        try:
            get_method(out["method"], **out["method_kwargs"])
        except (OptionError, TypeError) as err:
            raise SpecError(f"{where}: {err}") from err
    return out


def tensorboard_available() -> bool:
    """Whether SB3 can write TensorBoard event files (the ``tensorboard`` package is installed)."""
    from stable_baselines3.common import logger

    return getattr(logger, "SummaryWriter", None) is not None


def overlay_strip(observations: np.ndarray, maps: np.ndarray, scale: int = 2, alpha: float = 0.6) -> np.ndarray:
    """``(N, 4, 84, 84)`` observations and ``(N, 84, 84)`` maps -> one RGB uint8 image ``(H, W, 3)``: the newest
    frame of each stack with its map (scaled from its own minimum to its maximum) as a heat map, side by side."""
    from rl_saliency.render.video import overlay

    panels = []
    for obs, saliency in zip(np.asarray(observations), np.asarray(maps, dtype=np.float32), strict=True):
        grey = np.asarray(obs[-1], dtype=np.uint8)
        panel = overlay(np.repeat(grey[..., None], 3, axis=2), min_max(saliency), scale=scale, alpha=alpha)
        panels += [panel, np.full((panel.shape[0], SEPARATOR, 3), 255, np.uint8)]
    return np.concatenate(panels[:-1], axis=1)


def min_max(saliency: np.ndarray) -> np.ndarray:
    """A map scaled to [0, 1] from its minimum to its maximum (all zeros for a constant map)."""
    low, high = float(saliency.min()), float(saliency.max())
    return (saliency - low) / (high - low) if high > low else np.zeros_like(saliency)


def default_method(policy: Any) -> str:
    """``attention`` where the policy has built-in attention, else ``gradient``."""
    from rl_saliency.saliency.attention import attention_module

    try:
        attention_module(policy)
    except OptionError:
        return "gradient"
    return "attention"


class SaliencyTensorBoardCallback(BaseCallback):
    """Every ``every`` updates, log the saliency of ``method`` over a fixed set of observations as an overlay strip
    (``saliency/<method>``), plus the explorer's intrinsic-reward histogram where there is one.

    ``observations``: the fixed set ``(N, 4, 84, 84)``; default: taken from the first rollouts (and kept in
    ``<obs_dir>/observations.npy`` when ``obs_dir`` is given, reused from there on a resume).
    """

    def __init__(self, every: int = 10, method: str | None = None, method_kwargs: dict[str, Any] | None = None,
                 n_obs: int = 8, scale: int = 2, observations: np.ndarray | None = None,
                 obs_dir: str | Path | None = None, verbose: int = 0):
        super().__init__(verbose)
        config = check_config({"every": every, "method": method, "method_kwargs": method_kwargs or {},
                               "n_obs": n_obs, "scale": scale}, "tensorboard callback")
        self.every, self.method_name, self.n_obs = config["every"], config["method"], config["n_obs"]
        self.method_kwargs, self.scale = config["method_kwargs"], config["scale"]
        self.obs_dir = Path(obs_dir) if obs_dir is not None else None
        self.observations = None if observations is None else np.asarray(observations)
        self.method: Any = None
        self.images_logged = 0
        self._collected: list[np.ndarray] = []
        self._calls = 0
        self._intrinsic: list[float] = []

    @classmethod
    def from_config(cls, config: dict[str, Any] | None, obs_dir: str | Path | None = None
                    ) -> SaliencyTensorBoardCallback:
        """From a spec's ``tensorboard:`` section (``dir`` is the caller's business)."""
        c = check_config(config)
        return cls(every=c["every"], method=c["method"], method_kwargs=c["method_kwargs"], n_obs=c["n_obs"],
                   scale=c["scale"], obs_dir=obs_dir)

    # -------------------------------------------------------------------------------------------- SB3 hooks

    def _init_callback(self) -> None:
        from rl_saliency.saliency import get_method
        from rl_saliency.saliency.attention import attention_module

        policy = self.model.policy
        self.method_name = self.method_name or default_method(policy)
        if self.method_name == "attention":
            attention_module(policy)  # a policy without attention: the OptionError says which methods to use
        self.method = get_method(self.method_name, **self.method_kwargs)
        if self.observations is None and self.obs_dir is not None and (self.obs_dir / OBS_FILE).exists():
            self.observations = np.load(self.obs_dir / OBS_FILE)

    def _on_step(self) -> bool:
        infos = self.locals.get("infos") or []
        self._intrinsic += [float(i["intrinsic_reward"]) for i in infos if "intrinsic_reward" in i]
        if self.observations is None:
            self._collect(self.locals.get("new_obs"))
        return True

    def _on_rollout_end(self) -> None:
        if self._intrinsic:
            self.logger.record("explorer/intrinsic_reward", np.asarray(self._intrinsic), exclude=NOT_TENSORBOARD)
            self._intrinsic = []
        per_rollout = _rollout_steps(self.model)
        updates = max(self.model.num_timesteps // per_rollout - 1, 0)  # updates before this rollout's
        if self.observations is not None and updates % self.every == 0:
            self.log_images()

    # -------------------------------------------------------------------------------------------- internals

    def _collect(self, new_obs: Any) -> None:
        """Keep one observation every few steps (spread over ``COLLECT_ROLLOUTS`` rollouts), cycling over the envs,
        until there are ``n_obs``."""
        if not isinstance(new_obs, np.ndarray) or new_obs.ndim != 4:
            return
        per_rollout = max(getattr(self.model, "n_steps", 0) or 128, 1)
        gap = max(COLLECT_ROLLOUTS * per_rollout // self.n_obs, 1)
        if self._calls % gap == 0:
            self._collected.append(np.array(new_obs[len(self._collected) % len(new_obs)]))
        self._calls += 1
        if len(self._collected) >= self.n_obs:
            self._fix_observations()

    def _fix_observations(self) -> None:
        self.observations = np.stack(self._collected[: self.n_obs])
        self._collected = []
        if self.obs_dir is not None:
            with io.atomic_path(self.obs_dir / OBS_FILE) as tmp:
                with open(tmp, "wb") as handle:
                    np.save(handle, self.observations)

    def saliency_strip(self, method: Any, **kwargs: Any) -> np.ndarray:
        """The overlay strip of ``method`` over the fixed observations, leaving the training's random state and
        the policy's mode as they were."""
        policy = self.model.policy
        training = policy.training
        np_state = np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                policy.set_training_mode(False)
                maps = method.attribute(policy, self.observations, **kwargs)
        finally:
            policy.set_training_mode(training)
            np.random.set_state(np_state)
        return overlay_strip(self.observations, maps, scale=self.scale)

    def log_images(self) -> None:
        """Record the strips now (written at the logger's next dump, at this step)."""
        strip = self.saliency_strip(self.method)
        self.logger.record(f"saliency/{self.method_name}", Image(strip, "HWC"), exclude=NOT_TENSORBOARD)
        explorer = self.model.policy.__dict__.get("explorer")
        if getattr(explorer, "kind", None) in ("random_cnn", "agent") and self.method_name != "novelty":
            from rl_saliency.saliency import get_method

            novelty = self.saliency_strip(get_method("novelty"), explorer=explorer)
            self.logger.record("saliency/novelty", Image(novelty, "HWC"), exclude=NOT_TENSORBOARD)
        self.images_logged += 1


def _rollout_steps(model: Any) -> int:
    """Agent steps between two updates."""
    from rl_saliency.models import rollout_steps

    return rollout_steps(model)
