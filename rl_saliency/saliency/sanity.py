"""``rl-saliency sanity``: cascading model-parameter randomisation (Adebayo et al., "Sanity Checks for
Saliency Maps", 2018).

The network's weighted layers are re-initialised one at a time from the top (the output heads) down to the
first convolution; after each step every method's maps for the same observations are compared with the
trained network's by Spearman rank correlation (of the maps, which are absolute values, and of the signed
attributions) and SSIM. A method that explains the model must lose its similarity as layers are randomised;
one that stays near 1 shows the input, not the model (e.g. the ``intensity`` baseline, or guided backprop).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import gaussian_filter
from scipy.stats import rankdata
from stable_baselines3.common.policies import BasePolicy
from torch import nn
from tqdm.auto import tqdm

from rl_saliency import io
from rl_saliency.hooks import SignedAttribution
from rl_saliency.saliency.base import OBS_SHAPE, check_observations
from rl_saliency.saliency.methods import policy_outputs
from rl_saliency.saliency.registry import get_method

HEADS = ("action_net", "value_net")  # randomised together: the first step removes what the network outputs
METRICS = ("spearman_abs", "spearman_signed", "ssim")


# ---------------------------------------------------------------------------------------------------------------
# Layers and randomisation
# ---------------------------------------------------------------------------------------------------------------


def layers_top_down(policy: BasePolicy, observations: torch.Tensor) -> list[list[str]]:
    """Groups of weighted module names in cascade order: output heads first, first convolution last.

    The order is the order in which a forward pass calls them (recorded with hooks), reversed, so it follows
    any extractor's data flow; modules the forward pass does not use (DQN's target network) are left out.
    """
    calls: list[str] = []
    names = {module: name for name, module in policy.named_modules()}

    def record(module: nn.Module, _i: Any, _o: Any) -> None:
        if names[module] not in calls:
            calls.append(names[module])

    handles = [m.register_forward_hook(record) for m in policy.modules() if any(True for _ in m.parameters(False))]
    try:
        with torch.no_grad():
            policy_outputs(policy, observations[:1])
    finally:
        for handle in handles:
            handle.remove()
    if not calls:
        raise ValueError(f"{type(policy).__name__} has no weighted layers to randomise")
    ordered = list(reversed(calls))
    heads = [n for n in ordered if n.split(".")[-1] in HEADS]
    rest = [[n] for n in ordered if n not in heads]
    return ([heads] if heads else []) + rest


def randomise(policy: BasePolicy, names: list[str], seed: int) -> None:
    """Re-initialise the named modules in place with their default initialisation (fixed seed)."""
    modules = dict(policy.named_modules())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in names:
            module = modules[name]
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            else:
                for param in module.parameters(recurse=False):
                    nn.init.normal_(param, std=0.02)


# ---------------------------------------------------------------------------------------------------------------
# Similarity
# ---------------------------------------------------------------------------------------------------------------


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (nan when either is constant)."""
    ra, rb = rankdata(a.ravel()), rankdata(b.ravel())
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    """Mean structural similarity (Wang et al. 2004, Gaussian window sigma 1.5) of two maps, each min-max
    normalised to [0, 1] first so that maps of different scales compare by their shape."""

    def unit(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        span = x.max() - x.min()
        return (x - x.min()) / span if span > 0 else np.zeros_like(x)

    x, y = unit(a), unit(b)
    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = gaussian_filter(x, sigma), gaussian_filter(y, sigma)
    var_x = gaussian_filter(x * x, sigma) - mu_x**2
    var_y = gaussian_filter(y * y, sigma) - mu_y**2
    cov = gaussian_filter(x * y, sigma) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(s.mean())


def compare(original: np.ndarray, randomised: np.ndarray, original_signed: np.ndarray,
            randomised_signed: np.ndarray) -> dict[str, float]:
    """Mean over observations of each similarity (nan-aware: constant maps have no rank correlation)."""
    rows = [(spearman(o, r), spearman(os_, rs), ssim(o, r))
            for o, r, os_, rs in zip(original, randomised, original_signed, randomised_signed, strict=True)]
    values = np.array(rows, dtype=np.float64)
    with np.errstate(all="ignore"):
        means = [float(np.nanmean(c)) if np.isfinite(c).any() else float("nan") for c in values.T]
    return dict(zip(METRICS, means, strict=True))


# ---------------------------------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------------------------------


def _maps(method: Any, policy: BasePolicy, obs: torch.Tensor, target: Any) -> tuple[np.ndarray, np.ndarray]:
    """(maps, signed maps); methods without signed attributions use their maps for both."""
    kwargs = {} if target is None else {"target": target}
    maps = method.attribute(policy, obs, **kwargs)
    signed = method.signed_attribute(policy, obs, **kwargs) if isinstance(method, SignedAttribution) else maps
    return maps, signed


def cascading_randomisation(policy: BasePolicy, observations: np.ndarray | torch.Tensor, methods: list[str],
                            method_kwargs: dict[str, dict[str, Any]] | None = None, seed: int = 0,
                            progress: bool = True, done: pd.DataFrame | None = None,
                            on_method_done: Any = None) -> pd.DataFrame:
    """Rows (method, step, layer, spearman_abs, spearman_signed, ssim): step 0 is the trained network (all 1),
    step k has the top k layer groups randomised. The target of methods aiming at "the action taken" stays the
    trained network's action. ``done``: rows of methods already computed (resuming), kept as they are."""
    check_observations(observations)
    policy.set_training_mode(False)
    obs = torch.as_tensor(np.asarray(observations) if not isinstance(observations, torch.Tensor) else observations,
                          device=policy.device).float()
    with torch.no_grad():
        actions = policy_outputs(policy, obs)[0].argmax(dim=1).cpu().numpy()
    groups = layers_top_down(policy, obs)
    frames = [done] if done is not None and len(done) else []
    finished = set(done["method"]) if frames else set()
    for name in methods:
        if name in finished:
            continue
        method = get_method(name, **(method_kwargs or {}).get(name, {}))
        target = actions if getattr(method, "target", None) == "action" else None
        original, original_signed = _maps(method, policy, obs, target)
        rows = [{"method": name, "step": 0, "layer": "trained", **dict.fromkeys(METRICS, 1.0)}]
        randomised = copy.deepcopy(policy)
        for step, group in enumerate(tqdm(groups, desc=f"sanity {name}", unit="layer", disable=not progress), 1):
            randomise(randomised, group, seed=seed + step)
            maps, signed = _maps(method, randomised, obs, target)
            rows.append({"method": name, "step": step, "layer": "+".join(group),
                         **compare(original, maps, original_signed, signed)})
        frames.append(pd.DataFrame(rows))
        if on_method_done is not None:
            on_method_done(pd.concat(frames, ignore_index=True))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["method", "step", "layer",
                                                                                        *METRICS])


def plot(table: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """One panel per similarity: each method's curve over the cascade (trained -> all layers random)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label.replace("features_extractor.", "") for label in
              table.sort_values("step").drop_duplicates("step")["layer"]]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4.2), sharey=True)
    for ax, metric in zip(axes, METRICS, strict=True):
        for name, rows in table.groupby("method", sort=False):
            rows = rows.sort_values("step")
            ax.plot(rows["step"], rows[metric], marker="o", label=name)
        ax.set_title(metric.replace("_", " "))
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.set_ylim(-0.3, 1.05)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("similarity to the trained network's maps")
    axes[-1].legend(fontsize=8)
    fig.suptitle(title or "cascading randomisation, top layer first")
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


def collect_observations(model: Any, game: str, n_obs: int, seed: int = 0, warmup: int = 30,
                         every: int = 5) -> np.ndarray:
    """``n_obs`` observations (N, 4, 84, 84) uint8 from the agent playing ``game`` (sampled actions, one
    kept every ``every`` steps after ``warmup`` steps, so they are varied)."""
    from rl_saliency.envs import make_atari_vec_env
    from rl_saliency.models import check_model_fits, wrap_env_for_model

    venv = wrap_env_for_model(model, make_atari_vec_env(game, n_envs=1, seed=seed, training=False))
    check_model_fits(model, venv.observation_space, venv.action_space, what=f"game {game!r}")
    kept = []
    obs = venv.reset()
    try:
        for step in range(warmup + n_obs * every):
            if step >= warmup and (step - warmup) % every == 0:
                kept.append(obs[0].copy())
            action, _ = model.predict(obs, deterministic=False)
            obs, *_ = venv.step(action)
    finally:
        venv.close()
    return np.stack(kept[:n_obs]).astype(np.uint8)


def _load_observations(path: Path) -> np.ndarray:
    """A .npy of observations (N >= 1, 4, 84, 84), or a DataError naming the file and what is wrong."""
    from rl_saliency.errors import DataError

    if not path.is_file():
        raise DataError(f"observations file {path} does not exist")
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise DataError(f"{path} is not a NumPy .npy file (save observations with numpy.save)")
    try:
        obs = np.load(path)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"cannot read observations from {path} (corrupt or truncated .npy): {err}") from err
    if obs.ndim != 4 or obs.shape[1:] != OBS_SHAPE:
        raise DataError(f"{path} holds an array of shape {obs.shape}; expected (N, 4, 84, 84)")
    if len(obs) == 0:
        raise DataError(f"{path} holds no observations (shape {obs.shape})")
    if not np.issubdtype(obs.dtype, np.number) or np.issubdtype(obs.dtype, np.complexfloating):
        raise DataError(f"{path} holds {obs.dtype} values; expected pixel values 0..255")
    return obs


def run(model_path: str | Path, game: str | None, methods: list[str], out: str | Path, n_obs: int = 16,
        seed: int = 0, method_kwargs: dict[str, dict[str, Any]] | None = None, device: str = "auto",
        observations: str | Path | None = None, overwrite: bool = False, progress: bool = True) -> pd.DataFrame:
    """Collect (or load) observations, run the cascade, write ``sanity.csv`` and ``sanity.png`` under ``out``.

    Resumable: the observations are saved once (``observations.npy``) and methods already in ``sanity.csv``
    from the same settings are not recomputed (``overwrite`` starts afresh).
    """
    from rl_saliency.errors import check_count
    from rl_saliency.runs import open_agent

    out = Path(out)
    n_obs = check_count(n_obs, "--n-obs")
    method_kwargs = {name: dict((method_kwargs or {}).get(name, {})) for name in methods}
    for name in methods:  # unknown names and bad options (--smoothgrad-samples 0, ...) fail before any work
        get_method(name, **method_kwargs[name])
    agent = open_agent(model_path, game, device=device)
    model, game = agent.model, agent.game
    for name in methods:  # a method that cannot explain this model fails now, in one line
        agent.check_method(get_method(name, **method_kwargs[name]), name, option="--methods")
    given = _load_observations(Path(observations))[:n_obs] if observations is not None else None
    with io.output_lock(out):  # one writer per folder; a dead one's temporary files are removed
        return _run_locked(model, model_path, game, methods, out, n_obs, seed, method_kwargs, given, observations,
                           overwrite, progress)


def _run_locked(model: Any, model_path: str | Path, game: str, methods: list[str], out: Path, n_obs: int,
                seed: int, method_kwargs: dict[str, dict[str, Any]], given: np.ndarray | None,
                observations: str | Path | None, overwrite: bool, progress: bool) -> pd.DataFrame:
    settings = {"model": str(model_path), "game": game, "n_obs": n_obs, "seed": seed,
                "observations": str(observations) if observations else None}
    settings_path, csv_path, obs_path = out / "sanity.json", out / "sanity.csv", out / "observations.npy"
    previous = json.loads(settings_path.read_text()) if settings_path.exists() else {}
    resumable = (not overwrite and csv_path.exists()
                 and {k: previous.get(k) for k in settings} == settings)
    if given is not None:
        obs = given
    elif resumable and obs_path.exists():
        obs = np.load(obs_path)
    else:
        obs = collect_observations(model, game, n_obs, seed=seed)
    io.atomic_write(obs_path, lambda tmp: np.save(tmp, obs))
    done = None
    stored_kwargs = dict(previous.get("method_kwargs", {})) if resumable else {}
    if resumable:
        # keep a finished method only if it ran with the same settings as asked now
        same = [m for m in methods if m in stored_kwargs and stored_kwargs[m] == method_kwargs[m]]
        done = pd.read_csv(csv_path)
        done = done[done["method"].isin(same)]
    io.write_json(settings_path, {**settings, "method_kwargs": {**stored_kwargs, **method_kwargs}})
    table = cascading_randomisation(model.policy, obs, methods, method_kwargs=method_kwargs, seed=seed,
                                    progress=progress, done=done,
                                    on_method_done=lambda t: io.write_csv(csv_path, t.round(6)))
    io.write_csv(csv_path, table.round(6))
    plot(table, out / "sanity.png", title=f"{Path(model_path).name} on {game}: cascading randomisation "
         f"({len(obs)} observations)")
    return table


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------
