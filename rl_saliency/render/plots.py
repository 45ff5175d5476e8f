"""The figures every command writes: readable at a glance, game and agent in the title, baselines marked.

- ``score_histogram``: ``evaluate``'s whole-game scores.
- ``gaze_metric_bars``: ``gaze-eval``'s per-metric bars of methods and baselines with 95 % confidence intervals
  (over blocks of consecutive observations for one trial, whose neighbouring observations are correlated; over
  the trial means when a game has several trials).
- ``nss_over_trial``: NSS of every method along each trial, smoothed.
- ``gaze_plots``: both gaze figures for every game of a gaze-eval output folder (``<out>/plots/``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rl_saliency import io

BASELINES = ("centre_bias", "uniform", "intensity")
METRIC_LABELS = {"nss": "NSS", "auc_judd": "AUC-Judd", "auc_borji": "AUC-Borji", "shuffled_auc": "shuffled AUC",
                 "kl_div": "KL divergence", "cc": "CC", "sim": "SIM", "info_gain": "information gain"}
LOWER_IS_BETTER = {"kl_div"}
CHANCE = {"nss": 0.0, "auc_judd": 0.5, "auc_borji": 0.5, "shuffled_auc": 0.5, "cc": 0.0, "info_gain": 0.0}
BLOCK = 50  # consecutive observations per block of the observation-level confidence interval
PLOTS_DIR = "plots"
DPI = 110


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    _pyplot().close(fig)
    return path


def agent_label(model: str | Path | None) -> str:
    """A short name for the agent a model zip holds: a zoo agent's name, its run folder's name
    (``runs/x/model.zip`` -> ``x``), else the zip's stem; ``baselines only`` without a model."""
    if model is None or str(model).lower() == "none":
        return "baselines only"
    path = Path(model)
    try:
        from rl_saliency.agents.zoo import zoo_name_of

        zoo = zoo_name_of(path)
    except Exception:  # noqa: BLE001 - a label must never fail a command
        zoo = None
    if zoo:
        return f"zoo:{zoo}"
    if path.name == "model.zip":
        return path.parent.name or path.stem
    if path.parent.name == "checkpoints":
        return f"{path.parent.parent.name} {path.stem}"
    return path.stem


def metric_label(metric: str) -> str:
    arrow = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
    return f"{METRIC_LABELS.get(metric, metric)} ({arrow})"


# ------------------------------------------------------------------------------------------------ evaluate

def score_histogram(scores: Sequence[float], path: str | Path, game: str, agent: str,
                    deterministic: bool = False) -> Path:
    """A histogram of whole-game scores with each game as a tick under it and the mean +- std marked."""
    plt = _pyplot()
    values = np.asarray(scores, dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    if len(values):
        bins = min(max(len(np.unique(values)), 1), 20)
        ax.hist(values, bins=bins, color="C0", alpha=0.85, edgecolor="white", label="games", zorder=2)
        ax.plot(values, np.zeros_like(values), "|", color="black", markersize=14, label="each game")
        mean, std = float(values.mean()), float(values.std())
        ax.axvline(mean, color="C3", lw=2, label=f"mean {mean:.1f}", zorder=3)
        if std > 0:
            ax.axvspan(mean - std, mean + std, color="C3", alpha=0.10, label=f"± std {std:.1f}", zorder=0)
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xlabel("whole-game score (unclipped, all lives)")
    ax.set_ylabel("games")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    actions = "greedy" if deterministic else "sampled"
    ax.set_title(f"{agent} on {game}: {len(values)} whole games ({actions} actions)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _save(fig, path)


def learning_curve(metrics: pd.DataFrame, path: str | Path, game: str, agent: str) -> Path:
    """A training run's score over agent steps (``metrics.csv``: SB3's ``rollout/ep_rew_mean``)."""
    plt = _pyplot()
    steps = pd.to_numeric(metrics["time/total_timesteps"], errors="coerce")
    score = pd.to_numeric(metrics["rollout/ep_rew_mean"], errors="coerce")
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(steps, score, color="C0", lw=1.6)
    ax.set_xlabel("agent steps")
    ax.set_ylabel("episode score (mean of last 100)")
    last = score.dropna()
    tail = f", last {last.iloc[-1]:.1f}" if len(last) else ""
    ax.set_title(f"{agent} on {game}: training score{tail}", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------ gaze-eval

def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95 % Student-t interval of independent ``values`` (NaNs dropped); the interval is NaN for < 2."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if len(v) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


def block_size(n: int, block: int = BLOCK) -> int:
    """The block length used for ``n`` values: ``block``, or less so that there are at least two blocks."""
    return max(1, min(int(block), n // 2))


def block_interval(values: Sequence[float], block: int = BLOCK) -> tuple[float, float, float, int]:
    """Mean of ``values`` (in observation order; NaNs dropped) and a 95 % t-interval over the means of blocks of
    ``block`` consecutive values (neighbouring observations are correlated, so single observations are not
    independent samples); fewer values than two blocks give smaller blocks, down to single values. Returns
    ``(mean, low, high, blocks)``."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan, math.nan, 0
    size = block_size(len(v), block)
    n_blocks = len(v) // size
    means = v[: n_blocks * size].reshape(n_blocks, size).mean(axis=1)
    _, low, high = t_interval(means)
    mean = float(v.mean())
    half = (high - low) / 2 if np.isfinite(low) else math.nan
    return mean, mean - half, mean + half, n_blocks


def _method_order(methods: Sequence[str]) -> list[str]:
    """The agent's methods first (as given), then the baselines in a fixed order."""
    own = [m for m in dict.fromkeys(methods) if m not in BASELINES]
    return own + [b for b in BASELINES if b in set(methods)]


def metric_intervals(per_observation: pd.DataFrame, per_trial: pd.DataFrame | None, metrics: Sequence[str],
                     block: int = BLOCK) -> tuple[pd.DataFrame, str]:
    """Per method and metric: mean and 95 % interval for one game. One trial: over blocks of consecutive
    observations (``per_observation``); several: over the trial means. Returns the table (columns method, metric,
    mean, low, high, n) and a sentence saying what the interval is over."""
    rows = []
    trials = sorted(set(per_observation["trial"])) if len(per_observation) else []
    if per_trial is not None and len(per_trial) and per_trial["trial"].nunique() > 1:
        for method, group in per_trial.groupby("method", sort=False):
            for metric in metrics:
                mean, low, high = t_interval(group[f"{metric}_mean"])
                rows.append({"method": method, "metric": metric, "mean": mean, "low": low, "high": high,
                             "n": int(group[f"{metric}_mean"].notna().sum())})
        what = f"95 % CI over {per_trial['trial'].nunique()} trials (t-interval of trial means)"
    else:
        sizes = []
        for method, group in per_observation.groupby("method", sort=False):
            group = group.sort_values(["trial", "frame_index"])
            for metric in metrics:
                mean, low, high, n_blocks = block_interval(group[metric].to_numpy(), block)
                sizes.append(block_size(int(group[metric].notna().sum()), block))
                rows.append({"method": method, "metric": metric, "mean": mean, "low": low, "high": high,
                             "n": n_blocks})
        size = max(sizes) if sizes else block
        where = f"trial {trials[0]}" if len(trials) == 1 else f"{len(trials)} trials"
        what = f"95 % CI over blocks of {size} consecutive observations ({where})"
    return pd.DataFrame(rows), what


def gaze_metric_bars(per_observation: pd.DataFrame, path: str | Path, game: str, agent: str,
                     per_trial: pd.DataFrame | None = None, metrics: Sequence[str] | None = None,
                     protocol: str | None = None, block: int = BLOCK) -> Path:
    """One panel per metric: a bar per method (colour) and baseline (grey, hatched), whiskers the 95 % CI, the
    metric's chance level dotted."""
    from rl_saliency.gaze.metrics import METRICS

    plt = _pyplot()
    metrics = [m for m in (metrics or METRICS) if m in per_observation.columns]
    methods = _method_order(list(per_observation["method"]))
    table, what = metric_intervals(per_observation, per_trial, metrics, block)
    n_cols = min(4, len(metrics))
    n_rows = math.ceil(len(metrics) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.3 * n_cols + 0.6, 3.0 * n_rows + 1.2), squeeze=False)
    colours = {m: f"C{i}" for i, m in enumerate(m for m in methods if m not in BASELINES)}
    for ax, metric in zip(axes.flat, metrics, strict=False):
        rows = table[table["metric"] == metric].set_index("method")
        for x, method in enumerate(methods):
            if method not in rows.index or not np.isfinite(rows.loc[method, "mean"]):
                continue
            r = rows.loc[method]
            base = method in BASELINES
            err = None
            if np.isfinite(r["low"]):
                err = [[max(r["mean"] - r["low"], 0.0)], [max(r["high"] - r["mean"], 0.0)]]
            ax.bar(x, r["mean"], yerr=err, capsize=3, color="0.78" if base else colours[method],
                   hatch="//" if base else None, edgecolor="0.35" if base else "none", linewidth=0.6)
        n_own = sum(m not in BASELINES for m in methods)
        if 0 < n_own < len(methods):
            ax.axvline(n_own - 0.5, color="0.5", lw=0.8, ls="--")
        if metric in CHANCE:
            ax.axhline(CHANCE[metric], color="black", lw=0.8, ls=":")
        ax.set_xticks(range(len(methods)), [m + (" (baseline)" if m in BASELINES else "") for m in methods],
                      rotation=35, ha="right", fontsize=7.5)
        ax.set_title(metric_label(metric), fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(alpha=0.3, axis="y")
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    axes[0][0].set_ylabel("mean over observations", fontsize=8)
    n_obs = int(per_observation.groupby("method").size().max()) if len(per_observation) else 0
    header = f"{agent} on {game}: saliency vs human gaze ({n_obs} observations"
    header += f", protocol {protocol})" if protocol else ")"
    fig.suptitle(f"{header}\nbars: mean; whiskers: {what}; grey hatched: baselines; dotted: chance", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average that skips NaNs (a window with no value stays NaN)."""
    v = pd.Series(np.asarray(values, dtype=float))
    return v.rolling(max(int(window), 1), center=True, min_periods=1).mean().to_numpy()


def nss_over_trial(per_observation: pd.DataFrame, path: str | Path, game: str, agent: str,
                   max_trials: int = 4, window: int | None = None) -> Path:
    """NSS along each trial (one panel per trial, the first ``max_trials``): each method's per-observation NSS
    faint, a centred moving average bold; baselines grey and dashed."""
    plt = _pyplot()
    trials = sorted(set(per_observation["trial"]))
    shown = trials[:max_trials]
    methods = _method_order(list(per_observation["method"]))
    fig, axes = plt.subplots(len(shown), 1, figsize=(9.0, 2.6 * len(shown) + 0.9), squeeze=False)
    colours = {m: f"C{i}" for i, m in enumerate(m for m in methods if m not in BASELINES)}
    grey = {"centre_bias": "0.35", "uniform": "0.6", "intensity": "0.5"}
    for ax, trial in zip(axes[:, 0], shown, strict=True):
        rows = per_observation[per_observation["trial"] == trial]
        for method in methods:
            r = rows[rows["method"] == method].sort_values("frame_index")
            if r.empty or r["nss"].notna().sum() == 0:
                continue
            x, y = r["frame_index"].to_numpy(), r["nss"].to_numpy(dtype=float)
            win = window or max(5, len(r) // 25)
            base = method in BASELINES
            colour = grey.get(method, "0.5") if base else colours[method]
            if not base:
                ax.plot(x, y, color=colour, alpha=0.18, lw=0.6)
            label = f"{method} (baseline)" if base else method
            ax.plot(x, smooth(y, win), color=colour, lw=1.0 if base else 1.8, ls="--" if base else "-",
                    label=f"{label}: mean {np.nanmean(y):.2f}")
        ax.axhline(0.0, color="black", lw=0.6, ls=":")
        ax.set_title(f"trial {trial}", fontsize=9)
        ax.set_ylabel("NSS", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    axes[-1, 0].set_xlabel("raw frame of the trial (the observation ending there)")
    more = f" (first {len(shown)} of {len(trials)} trials)" if len(trials) > len(shown) else ""
    n = int(per_observation.groupby(["trial", "method"]).size().max()) if len(per_observation) else 0
    win_text = f"{window}" if window else f"{max(5, n // 25)}"
    fig.suptitle(f"{agent} on {game}: NSS over the trial{more}\nfaint: each observation; bold: moving average of "
                 f"{win_text} observations; dashed grey: baselines; dotted: chance (0)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def read_observations(out: str | Path, game: str | None = None, trials: Sequence[str] | None = None) -> pd.DataFrame:
    """The per-observation rows of a gaze-eval folder's trials (``trials/<game>/*.parquet``; only ``trials`` when
    given), the id and metric columns only."""
    from rl_saliency.gaze.metrics import METRICS

    folder = Path(out) / "trials"
    paths = sorted(folder.glob(f"{game}/*.parquet" if game else "*/*.parquet"))
    if trials is not None:
        paths = [p for p in paths if p.stem in set(trials)]
    columns = ["game", "trial", "method", "protocol", "frame_index", *METRICS]
    tables = []
    for path in paths:
        table = pd.read_parquet(path)
        tables.append(table[[c for c in columns if c in table.columns]])
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)


def gaze_plots(out: str | Path, agent: str | None = None, trials: Sequence[str] | None = None,
               max_trials: int = 4) -> list[Path]:
    """For every game of a gaze-eval folder: ``plots/metrics_<game>.png`` (bars with 95 % CIs) and
    ``plots/nss_<game>.png`` (NSS over the trial); of ``trials`` only when given. Returns the files written."""
    out = Path(out)
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    agent = agent or agent_label(run.get("model"))
    per_trial = pd.read_csv(out / "per_trial.csv") if (out / "per_trial.csv").exists() else None
    observations = read_observations(out, trials=trials)
    observations["game"] = observations["game"].fillna("unknown")  # trials outside a <game>/ folder
    written = []
    for game, rows in observations.groupby("game", sort=True):
        if rows.empty:
            continue
        trial_rows = None
        if per_trial is not None and len(per_trial):
            trial_rows = per_trial[(per_trial["game"] == game) & per_trial["trial"].isin(set(rows["trial"]))]
        protocol = str(rows["protocol"].iloc[0]) if "protocol" in rows else run.get("protocol_label")
        written.append(gaze_metric_bars(rows, out / PLOTS_DIR / f"metrics_{game}.png", str(game), agent,
                                        per_trial=trial_rows, protocol=protocol))
        written.append(nss_over_trial(rows, out / PLOTS_DIR / f"nss_{game}.png", str(game), agent,
                                      max_trials=max_trials))
    return written
