"""``rl-saliency gaze-eval``: score an agent's saliency against human gaze on Atari-HEAD trials.

For every trial: the recorded frames are replayed through the agent's preprocessing (``envs.replay``); each
observation's saliency comes from ``get_method(name).attribute(policy, obs)`` (the saliency contract, nothing
else), and is scored against the fixation map of the raw frames it covers with every metric of
``gaze.metrics``. The baselines (centre bias, uniform, frame intensity) are scored alongside, for context.

Output folder: ``run.json`` (the configuration), ``trials/<game>/<trial>.parquet`` (one row per observation
and method) and ``trials/<game>/<trial>.json`` (the trial's summary and every problem found in its data),
``per_trial.csv`` and ``per_game.csv`` (mean, population std and count of each metric over the observations
it is defined for; per game over the trial means). Every output names its protocol (``gaze.protocol``).

Resume: a trial is finished when its json says so and its fingerprint (the model file's hash, the trial's
files' sizes and mtimes, the methods and their options, the protocol, the package version, ...) matches this
run's; anything else is recomputed. A trial without one usable observation is never finished. Every file is
written atomically.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rl_saliency import __version__, io
from rl_saliency.envs.frames import FRAME_SHAPE, MAP_SHAPE
from rl_saliency.envs.replay import ReplayReport
from rl_saliency.errors import DataError, ModelLoadError, SpecError
from rl_saliency.gaze.data import Trial, TrialFiles, find_trials
from rl_saliency.gaze.fixations import (
    observation_indices,
)
from rl_saliency.gaze.gaze_side import GazeMaps
from rl_saliency.gaze.metrics import METRICS
from rl_saliency.gaze.prefetch import replayed_batches
from rl_saliency.gaze.protocol import Protocol, from_label, resolve_protocol
from rl_saliency.gaze.scoring import Scorer
from rl_saliency.runs import check_method, model_path, open_agent
from rl_saliency.runs import replay_pool as replay_pool  # the pooling rule lives in the resolver
from rl_saliency.saliency.base import upsample_to_frame

BASELINES = ("centre_bias", "uniform", "intensity")
RESOLUTIONS = {84: MAP_SHAPE, 210: FRAME_SHAPE}
ID_COLUMNS = ["game", "trial", "method", "protocol", "frame_index", "n_fixations", "n_offscreen", "n_negatives",
              "map_finite"]


# ------------------------------------------------------------------------------------------------ the model

def load_policy(model_path: str | Path | None, game: str | None, device: str = "auto") -> tuple[Any, str | None]:
    """The model's policy (or None for ``--model none``) and its game (:func:`rl_saliency.runs.open_agent`)."""
    if model_path is None or str(model_path).lower() == "none":
        return None, game
    agent = open_agent(model_path, game, device=device)
    return agent.policy, agent.game


def resolve_methods(names: Sequence[str], policy: Any) -> dict[str, Any]:
    """The saliency methods to score, by name, with the baselines added; checked against the policy."""
    from rl_saliency.saliency import get_method

    methods = {}
    for name in dict.fromkeys([*names, *BASELINES]):  # the baselines in every table, no duplicates
        try:
            methods[name] = get_method(name)
        except ValueError as err:
            raise SpecError(str(err)) from err
        if name in BASELINES:
            continue
        if policy is None:
            raise ModelLoadError(f"method {name!r} needs a model; with --model none only the baselines "
                                 f"({', '.join(BASELINES)}) can be scored")
        check_method(methods[name], name, policy)  # fails now, with the reason, not after a trial's frames
    return methods


# ------------------------------------------------------------------------------------------------ one trial

def _trial_seed(seed: int, trial: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{trial}".encode()).digest()[:8], "little")


def centre_bias_map(shape: tuple[int, int]) -> np.ndarray:
    """The centre-bias baseline at ``shape``: information gain is measured over it."""
    from rl_saliency.saliency.baselines import CentreBias

    base = CentreBias().map
    return base if shape == MAP_SHAPE else upsample_to_frame(base, shape)


def _kl_zero_near_gaze(maps: np.ndarray, density: np.ndarray) -> np.ndarray:
    """The FLS reference's KL skip (measured, never a preset): the map is ~0 (1e-8 of its maximum) somewhere the
    blurred gaze is > 0."""
    top = maps.reshape(len(maps), -1).max(axis=1)[:, None, None]
    return ((maps <= 1e-8 * top) & (density > 0)).reshape(len(maps), -1).any(axis=1)


def _table(trial: Trial, label: str, parts: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per observation and method from the scored parts (one per batch and method), in their order: the
    table ``pd.concat`` of one DataFrame per part gave, built once."""
    if not parts:
        return pd.DataFrame(columns=[*ID_COLUMNS, *METRICS])
    n = sum(len(p["frame_index"]) for p in parts)
    columns: dict[str, Any] = {"game": [trial.game] * n, "trial": [trial.name] * n,
                               "method": [p["method"] for p in parts for _ in range(len(p["frame_index"]))],
                               "protocol": [label] * n}
    for key in ["frame_index", "n_fixations", "n_offscreen", "n_negatives", "map_finite", *METRICS]:
        columns[key] = np.concatenate([np.asarray(p[key]) for p in parts])
    return pd.DataFrame(columns)


def evaluate_trial(trial: Trial, policy: Any, methods: dict[str, Any], protocol: str | Protocol = "default",
                   max_frames: int | None = None, batch_size: int = 64, seed: int = 0, pool: str = "rgb",
                   progress: bool = True, resolution: int | None = None,
                   stride: int | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score every method on every observation of one trial under ``protocol`` (``resolution`` and ``stride``
    override it): a row per observation and method, and a summary with everything that went wrong in the data.
    ``pool``: see ``envs.replay``."""
    protocol = resolve_protocol(protocol, resolution=resolution, stride=stride)
    shape = protocol.shape
    gaze = trial.gaze
    first = int(gaze.frame_index[0])
    max_index = first + max_frames - 1 if max_frames else None
    indices, skipped = observation_indices(gaze, stride=protocol.stride, max_index=max_index,
                                           aligned=protocol.aligned)
    rng = np.random.default_rng(_trial_seed(seed, trial.name))
    scorer = Scorer(centre_bias_map(shape))  # keeps the static maps' work (centre bias, uniform) between batches
    replay_report = ReplayReport()
    rows: list[dict[str, Any]] = []  # one per batch and method
    bar = tqdm(total=len(indices), unit="obs", desc=f"{trial.game or '?'} {trial.name}", disable=not progress,
               leave=False)

    gaze_maps = GazeMaps(gaze, indices, protocol, rng, keep_density=protocol.kl_skip_zero_near_gaze)

    def score(at: list[int], obs: np.ndarray, fixations: dict[str, Any]) -> None:
        for name, method in methods.items():
            maps = method.attribute(policy, obs)
            if shape != MAP_SHAPE:
                maps = upsample_to_frame(maps, shape)
            # the same random negatives (AUC-Borji) for every method: differences are the maps' only
            values = scorer.score(maps, fixations["gaze"], fixations["seed"])
            if protocol.kl_skip_zero_near_gaze:
                values["kl_div"][_kl_zero_near_gaze(maps, fixations["density"])] = np.nan
            finite = np.isfinite(np.asarray(maps).reshape(len(at), -1)).all(axis=1)
            rows.append({"method": name, "frame_index": np.asarray(at, np.int64), "n_fixations": fixations["n_fix"],
                         "n_offscreen": fixations["n_off"], "n_negatives": fixations["n_negatives"],
                         "map_finite": finite, **values})
        bar.update(len(at))

    # the frames are decoded and replayed in a separate process, ahead of the scoring, in the batches scored here;
    # the fixation maps are made on the side with less to do: the decoding side when an agent's map is scored
    maps_aside = any(name not in BASELINES for name in methods)
    reports: dict[str, Any] = {}
    if indices:
        for at, obs, fixations in replayed_batches(trial.files.tar, gaze.frame_index.tolist(), indices, batch_size,
                                                   pool=pool, max_index=indices[-1], reports=reports,
                                                   per_batch=gaze_maps if maps_aside else None):
            at = at.tolist()
            score(at, obs, fixations if maps_aside else gaze_maps(at))
    else:
        list(trial.frames(max_index=first))  # no observation to build: the stream is still checked
    if reports:
        trial.last_report = reports["frames"]
        replay_report.gaps, replay_report.emitted = reports["replay"].gaps, reports["replay"].emitted
    bar.close()
    table = _table(trial, protocol.label, rows)
    summary = {
        "game": trial.game, "trial": trial.name, "protocol": protocol.as_dict(), "protocol_label": protocol.label,
        "txt": str(trial.files.txt), "tar": str(trial.files.tar),
        "frames_in_txt": len(gaze), "gaze_samples": gaze.n_samples, "offscreen_samples": gaze.n_offscreen,
        "null_gaze_frames": gaze.null_gaze_frames, "observations_planned": len(indices),
        "observations_scored": replay_report.emitted, "observations_skipped": {
            **{k: len(v) for k, v in skipped.items()}, "frames_missing_from_tar": len(replay_report.gaps)},
        "issues": trial.issues, "meta_data": trial.files.meta,
        "undefined": undefined_reasons(table),
    }
    return table, summary


# ------------------------------------------------------------------------------------------------ tables

UNDEFINED_WHY = {  # reason -> what it means, in the order they are checked
    "map not finite": "the saliency map has NaN or inf",
    "no gaze recorded": "no gaze sample in the frames the observation covers",
    "gaze off-screen": "every gaze sample of those frames is off-screen",
    "no shuffled negatives": "the other observations drawn for shuffled AUC have no on-screen gaze",
    "every pixel fixated": "AUC-Judd has no non-fixated pixel",
    "map ~0 near gaze": "the FLS reference's KL skip (a measuring option of the protocol)",
}


def _why_undefined(table: pd.DataFrame, metric: str) -> pd.Series:
    """For each row where ``metric`` is NaN: why (a key of ``UNDEFINED_WHY``)."""
    n_fix = table["n_fixations"].to_numpy()
    h, w = from_label(str(table["protocol"].iloc[0])).shape if len(table) else (0, 0)
    conditions = [~table["map_finite"].to_numpy(dtype=bool), (n_fix == 0) & (table["n_offscreen"].to_numpy() == 0),
                  n_fix == 0, (table["n_negatives"].to_numpy() == 0) & (metric == "shuffled_auc"),
                  (metric == "auc_judd") & (n_fix >= h * w), np.full(len(table), metric == "kl_div")]
    why = np.select(conditions, list(UNDEFINED_WHY), default="other")
    return pd.Series(why, index=table.index)[table[metric].isna()]


def undefined_reasons(table: pd.DataFrame) -> dict[str, dict[str, dict[str, int]]]:
    """``{method: {metric: {reason: observations}}}`` for every metric that is NaN somewhere (item 8: a count
    names only the observations a metric was defined for, and the rest are accounted for here)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    if table.empty:
        return out
    for method, group in table.groupby("method", sort=True):
        for metric in METRICS:
            if group[metric].isna().any():
                counts = _why_undefined(group, metric).value_counts()
                out.setdefault(str(method), {})[metric] = {str(k): int(v) for k, v in counts.items()}
    return out


def _undefined_text(reasons: dict[str, dict[str, int]]) -> str:
    """``nss 287 (gaze off-screen 287); ...``: one cell of per_trial.csv (``none`` when every metric is defined)."""
    if not reasons:
        return "none"
    return "; ".join(f"{metric} {sum(why.values())} (" + ", ".join(f"{k} {v}" for k, v in why.items()) + ")"
                     for metric, why in reasons.items())


def _mean_std(values: pd.Series) -> tuple[float, float, int]:
    values = values.dropna()
    if values.empty:
        return math.nan, math.nan, 0
    return float(values.mean()), float(values.std(ddof=0)), int(len(values))


def summarise_trials(per_observation: pd.DataFrame) -> pd.DataFrame:
    """Per trial and method: mean, population std and count (``_n``) of each metric over the observations
    where it is defined; ``observations`` counts every scored observation and ``undefined`` says, per metric,
    how many had no value and why."""
    rows = []
    keys = ["game", "trial", "method", "protocol"]
    for (game, trial, method, protocol), group in per_observation.groupby(keys, sort=True, dropna=False):
        row: dict[str, Any] = {"game": game, "trial": trial, "method": method, "protocol": protocol,
                               "observations": len(group)}
        for metric in METRICS:
            row[f"{metric}_mean"], row[f"{metric}_std"], row[f"{metric}_n"] = _mean_std(group[metric])
        row["undefined"] = _undefined_text(undefined_reasons(group).get(str(method), {}))
        rows.append(row)
    return pd.DataFrame(rows)


def summarise_games(per_trial: pd.DataFrame) -> pd.DataFrame:
    """Per game and method: mean and population std of the trial means; ``_n``: the observations each metric
    was defined for, over all trials."""
    rows = []
    if per_trial.empty:
        return pd.DataFrame()
    for (game, method, protocol), group in per_trial.groupby(["game", "method", "protocol"], sort=True,
                                                             dropna=False):
        row = {"game": game, "method": method, "protocol": protocol, "trials": len(group),
               "observations": int(group["observations"].sum())}
        for metric in METRICS:
            row[f"{metric}_mean"], row[f"{metric}_std"], _ = _mean_std(group[f"{metric}_mean"])
            row[f"{metric}_n"] = int(group[f"{metric}_n"].sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _protocol_line(table: pd.DataFrame) -> str:
    labels = sorted({str(v) for v in table["protocol"]}) if "protocol" in table else []
    lines = []
    for label in labels:
        try:
            lines.append(from_label(label).describe())
        except SpecError:
            lines.append(f"protocol {label}")
    return "\n".join(lines) or "protocol: not recorded (results of an older version)"


def format_table(per_game: pd.DataFrame, per_trial: pd.DataFrame | None = None,
                 metrics: Sequence[str] = METRICS) -> str:
    """A plain-text table, one row per game and method: mean ± std of each metric over trials, or over
    observations when every game has a single trial (``per_trial`` given); headed by the protocol, followed by
    how many observations each metric was undefined on, and why."""
    if per_game.empty:
        return "(no observations scored)"
    single = per_trial is not None and not per_trial.empty and (per_game["trials"] == 1).all()
    table, spread = (per_trial, "observations (one trial per game)") if single else (per_game, "trials")
    head = f"{'game':14s} {'method':16s} {'obs':>7s} " + " ".join(f"{m:>15s}" for m in metrics)
    lines = [_protocol_line(per_game), head, "-" * len(head)]
    for _, r in table.iterrows():
        cells = " ".join(f"{r[f'{m}_mean']:.3f}±{r[f'{m}_std']:.3f}".rjust(15) for m in metrics)
        lines.append(f"{str(r['game'])[:14]:14s} {str(r['method'])[:16]:16s} {int(r['observations']):7d} {cells}")
    lines.append(f"kl_div: lower is better; the others: higher is better. Mean ± std over {spread}; each metric "
                 f"over the observations it is defined for.")
    notes = per_trial if per_trial is not None and "undefined" in per_trial else None
    if notes is not None:
        for _, r in notes[~notes["undefined"].fillna("none").astype(str).isin(["none", ""])].iterrows():
            lines.append(f"undefined: {r['game']} {r['trial']} {r['method']}: {r['undefined']} of "
                         f"{int(r['observations'])} observations")
    elif all(f"{m}_n" in per_game for m in metrics):
        for _, r in per_game.iterrows():
            short = [f"{m} {int(r['observations'] - r[f'{m}_n'])}" for m in metrics if r[f"{m}_n"] < r["observations"]]
            if short:
                lines.append(f"undefined: {r['game']} {r['method']}: {', '.join(short)} of {int(r['observations'])} "
                             f"observations")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ the run

def _check_config(out: Path, config: dict[str, Any]) -> None:
    """Refuse to mix results of different configurations (the options a user chose) in one output folder."""
    path = out / "run.json"
    if path.exists():
        previous = json.loads(path.read_text())
        if "protocol" not in previous and "resolution" in previous:  # written before protocols existed
            previous["protocol"] = resolve_protocol("default", resolution=previous["resolution"],
                                                    stride=previous.get("stride")).as_dict()
        keys = ("model", "methods", "max_frames", "seed", "pool")
        differ = [k for k in keys if previous.get(k) != config.get(k)]
        before, now = previous.get("protocol") or {}, config["protocol"]
        differ += [f"protocol {k}" for k in now if k != "name" and before.get(k) != now[k]]
        if differ:
            raise DataError(f"{path} holds results of another configuration (differs in {', '.join(differ)}); "
                            f"use another --out or delete it")
    io.write_json(path, config)


def _trial_paths(out: Path, trial: TrialFiles) -> tuple[Path, Path]:
    folder = out / "trials" / (trial.game or "unknown")
    return folder / f"{trial.name}.parquet", folder / f"{trial.name}.json"


def _file_stamp(path: Path | None) -> dict[str, int] | None:
    if path is None:
        return None
    stat = Path(path).stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _model_stamp(path: str | Path | None) -> dict[str, Any] | None:
    """The model zip's size and sha256 (a replaced model is noticed even with the same size and mtime)."""
    if path is None or str(path).lower() == "none":
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"size": Path(path).stat().st_size, "sha256": digest.hexdigest()}


def method_options(methods: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each method's class and its plain options (numbers, strings, flags): part of a trial's fingerprint."""
    out = {}
    for name, method in methods.items():
        options = {k: v for k, v in sorted(getattr(method, "__dict__", {}).items())
                   if not k.startswith("_") and isinstance(v, bool | int | float | str | type(None))}
        out[name] = {"class": f"{type(method).__module__}.{type(method).__qualname__}", **options}
    return out


def _fingerprint(files: TrialFiles, run: dict[str, Any]) -> dict[str, Any]:
    """Everything a trial's results depend on: ``run`` (model hash, methods and options, protocol, settings,
    version) and the trial's own files."""
    return {**run, "files": {"txt": _file_stamp(files.txt), "tar": _file_stamp(files.tar)}}


def _finished(table_path: Path, summary_path: Path, fingerprint: dict[str, Any]) -> tuple[bool, str]:
    """Whether a trial's results can be reused, and if not (and they exist), why."""
    if not (summary_path.exists() and table_path.exists()):
        return False, ""
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        return False, "its summary is unreadable"
    if not summary.get("finished"):
        return False, "it had no usable observation" if "finished" in summary else "written by an older version"
    before = summary.get("fingerprint") or {}
    changed = [k for k in fingerprint if before.get(k) != fingerprint[k]]
    return (False, f"{', '.join(changed)} changed") if changed else (True, "")


def gaze_eval(model: str | Path | None, atari_head: str | Path, out: str | Path,
              methods: Sequence[str] = ("attention",), games: Sequence[str] | None = None,
              trials: Sequence[str] | None = None, game: str | None = None, max_frames: int | None = None,
              batch_size: int = 64, stride: int | None = None, resolution: int | None = None, seed: int = 0,
              strict: bool = False, pool: str = "auto", device: str = "auto", progress: bool = True,
              keep_observations: bool = False, protocol: str | Protocol = "default") -> dict[str, pd.DataFrame]:
    """Score ``methods`` (plus the baselines) on Atari-HEAD trials against human gaze; see the module doc.
    ``protocol``: ``default`` or ``paper`` (``gaze.protocol``), or a Protocol; ``stride`` and ``resolution``
    override it. ``model`` None (or "none") scores the baselines only; ``pool`` picks the replay's frame pooling
    (``auto``: the model's training backend, see ``replay_pool``). Returns the ``per_trial`` and ``per_game``
    tables (also written under ``out``), and ``per_observation`` (all trials' parquet files) if
    ``keep_observations``."""
    if batch_size < 1 or (stride is not None and stride < 1) or (max_frames is not None and max_frames < 14):
        raise SpecError(f"--batch-size and --stride must be >= 1 and --max-frames >= 14 (one observation needs 14 "
                        f"frames); got --batch-size {batch_size}, --stride {stride}, --max-frames {max_frames}")
    model = model_path(model) if model is not None and str(model).lower() != "none" else model
    protocol = resolve_protocol(protocol, resolution=resolution, stride=stride)
    out = Path(out)
    pool = replay_pool(model, pool)
    policy, model_game = load_policy(model, game, device)
    scorers = resolve_methods(methods, policy)
    found, discovery_issues = find_trials(atari_head, games=games, trials=trials)
    for issue in discovery_issues:
        tqdm.write(f"warning: {issue}")
    if not found:
        if games or trials:
            raise FileNotFoundError(f"no trials under {atari_head} match games={games} trials={trials}")
        problems = "; ".join(discovery_issues) or "no complete trials"
        raise DataError(f"no usable Atari-HEAD trial under {atari_head}: {problems}")
    if model_game is not None:
        from rl_saliency.envs.registry import resolve_game

        wanted = resolve_game(model_game).atari_head
        unknown = [t.name for t in found if t.game is None]
        if unknown and game is not None:  # --game vouches for trials outside a game folder
            found = [t if t.game else TrialFiles(t.name, t.txt, t.tar, wanted, t.highscore, t.meta) for t in found]
        elif unknown:
            raise DataError(f"cannot tell the game of trial(s) {', '.join(unknown)} (not in a <game>/ folder, no "
                            f"meta_data.csv entry); put them in a {wanted}/ folder or pass --game")
        wrong = [f"{t.name} ({t.game})" for t in found if t.game != wanted]
        if wrong:
            raise ModelLoadError(f"the model plays {model_game} but these trials are of other games: "
                                 f"{', '.join(wrong)}; choose trials with --games {model_game}")
    config = {"model": None if policy is None else str(Path(model).resolve()), "methods": list(scorers),
              "protocol": protocol.as_dict(), "protocol_label": protocol.label, "max_frames": max_frames,
              "seed": seed, "pool": pool, "atari_head": str(Path(atari_head).resolve()), "game": model_game,
              "version": __version__}
    _check_config(out, config)
    run_key = {"version": __version__, "model": _model_stamp(model if policy is not None else None),
               "methods": method_options(scorers), "protocol": protocol.as_dict(),
               "settings": {"max_frames": max_frames, "seed": seed, "pool": pool, "strict": strict}}

    if progress:
        tqdm.write(protocol.describe())
    for files in tqdm(found, unit="trial", desc="gaze-eval", disable=not progress or len(found) == 1):
        table_path, summary_path = _trial_paths(out, files)
        fingerprint = _fingerprint(files, run_key)
        reuse, why = _finished(table_path, summary_path, fingerprint)
        if reuse:
            continue  # finished in an earlier run, from the same model, data, methods and protocol
        if why:
            tqdm.write(f"note: recomputing trial {files.name}: {why} since it was scored")
        trial = Trial(files, strict=strict)
        table, summary = evaluate_trial(trial, policy, scorers, protocol=protocol, max_frames=max_frames,
                                        batch_size=batch_size, seed=seed, pool=pool, progress=progress)
        for issue in summary["issues"]:
            tqdm.write(f"warning: {issue}")
        summary["finished"] = summary["observations_scored"] > 0
        summary["fingerprint"] = fingerprint
        if not summary["finished"]:
            tqdm.write(f"warning: trial {files.name}: no usable observation ({summary['observations_planned']} "
                       f"planned, skipped: {summary['observations_skipped']}); not finished, tried again next run")
        summary["per_method"] = summarise_trials(table).to_dict("records")  # the trial's rows of per_trial.csv
        io.atomic_write(table_path, lambda tmp, t=table: t.to_parquet(tmp, index=False))
        io.write_json(summary_path, summary)  # written last: with "finished", marks the trial done

    # the tables are built from the trials' summaries: the per-observation rows of a whole dataset need not fit
    # in memory
    summaries = {t.name: json.loads(_trial_paths(out, t)[1].read_text()) for t in found}
    rows = [row for s in summaries.values() if s.get("finished") for row in s["per_method"]]
    if not rows:
        raise DataError("no usable observation in any trial ("
                        + "; ".join(f"{name}: {s['observations_planned']} planned, skipped "
                                    f"{s['observations_skipped']}" for name, s in summaries.items())
                        + f"); see {out / 'trials'}")
    per_trial = pd.DataFrame(rows)
    per_game = summarise_games(per_trial)
    io.write_csv(out / "per_trial.csv", per_trial)
    from rl_saliency.render.plots import agent_label, gaze_plots  # plots/: bars with 95 % CIs, NSS over the trial

    gaze_plots(out, agent_label(model if policy is not None else None), trials=list(set(per_trial["trial"])))
    io.write_csv(out / "per_game.csv", per_game)  # last: marks the run done (sweeps)
    result = {"per_trial": per_trial, "per_game": per_game}
    if keep_observations:
        tables = [pd.read_parquet(_trial_paths(out, t)[0]) for t in found]
        result["per_observation"] = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return result


# ------------------------------------------------------------------------------------------------ CLI
