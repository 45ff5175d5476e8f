"""``rl-saliency gaze-eval``: score an agent's saliency against human gaze on Atari-HEAD trials.

For every trial: the recorded frames are replayed through the agent's preprocessing (``envs.replay``); each
observation's saliency comes from ``get_method(name).attribute(policy, obs)`` (the saliency contract, nothing
else), and is scored against the fixation map of the raw frames it covers with every metric of
``gaze.metrics``. The baselines (centre bias, uniform, frame intensity) are scored alongside, for context.

Output folder: ``run.json`` (the configuration), ``trials/<game>/<trial>.parquet`` (one row per observation
and method) and ``trials/<game>/<trial>.json`` (the trial's summary and every problem found in its data),
``per_trial.csv`` and ``per_game.csv`` (mean and population std of each metric; per game over the trial
means). A trial whose json exists is finished: a rerun with the same configuration resumes after it. Every
file is written atomically.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rl_saliency import io
from rl_saliency.envs.replay import POOLS, ReplayReport, replay_observations
from rl_saliency.errors import DataError, ModelLoadError, SpecError
from rl_saliency.gaze.data import FRAME_SHAPE, Trial, TrialFiles, find_trials
from rl_saliency.gaze.fixations import (
    OBS_SHAPE,
    gaze_density,
    observation_counts,
    observation_indices,
    shuffled_negatives,
)
from rl_saliency.gaze.metrics import METRICS, all_metrics_batch
from rl_saliency.saliency.base import upsample_to_frame

BASELINES = ("centre_bias", "uniform", "intensity")
RESOLUTIONS = {84: OBS_SHAPE, 210: FRAME_SHAPE}
LOWER_IS_BETTER = {"kl_div"}


# ------------------------------------------------------------------------------------------------ the model

def _model_game(model_path: Path, game: str | None) -> str | None:
    """The game the model was trained on: its run folder's config.yaml, else ``game``; both must agree."""
    from rl_saliency.envs.registry import resolve_game
    from rl_saliency.evaluate import run_config

    config = run_config(model_path) or {}
    trained = resolve_game(config["game"]).name if config.get("game") else None
    given = resolve_game(game).name if game else None
    if trained and given and trained != given:
        raise ModelLoadError(f"model {model_path} was trained on {trained} (its run's config.yaml) but --game is "
                             f"{given}")
    return trained or given


def replay_pool(model_path: str | Path | None, pool: str = "auto") -> str:
    """How the replay pools each step's two raw frames: as the env backend the model was trained on did.
    ``auto``: the run's config.yaml ``backend`` (``ale`` -> ``grey``, ``sb3`` -> ``rgb``); ``rgb`` (SB3's
    AtariWrapper, as rl-zoo models were trained) when the model has no run folder."""
    if pool != "auto":
        if pool not in POOLS:
            raise SpecError(f"pool must be auto or one of {', '.join(POOLS)}, got {pool!r}")
        return pool
    if model_path is None or str(model_path).lower() == "none":
        return "rgb"
    from rl_saliency.evaluate import run_config

    backend = (run_config(model_path) or {}).get("backend", "sb3")
    return "grey" if backend == "ale" else "rgb"


def load_policy(model_path: str | Path | None, game: str | None, device: str = "auto") -> tuple[Any, str | None]:
    """The model's policy (or None for ``--model none``) and its game, checked against the game's spaces."""
    if model_path is None or str(model_path).lower() == "none":
        return None, game
    from rl_saliency.envs import make_atari_vec_env
    from rl_saliency.models import check_model_fits, load_model, read_model_data, wrap_env_for_model

    model_path = Path(model_path)
    read_model_data(model_path)  # a missing or corrupt zip is named as such, not as a missing config.yaml
    game = _model_game(model_path, game)
    if game is None:
        raise ModelLoadError(f"cannot tell which game {model_path} plays: no run config.yaml next to it; pass --game")
    model = load_model(model_path, device=device)
    venv = wrap_env_for_model(model, make_atari_vec_env(game, n_envs=1, backend="sb3", training=False))
    try:
        check_model_fits(model, venv.observation_space, venv.action_space, what=f"game {game!r}")
    finally:
        venv.close()
    model.policy.set_training_mode(False)
    return model.policy, game


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
        try:  # fail now, with the reason, rather than after the first trial's frames
            methods[name].attribute(policy, np.zeros((1, 4, 84, 84), np.uint8))
        except ValueError as err:
            raise ModelLoadError(f"method {name!r} cannot explain this model: {err}") from err
    return methods


# ------------------------------------------------------------------------------------------------ one trial

def _trial_seed(seed: int, trial: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{trial}".encode()).digest()[:8], "little")


def centre_bias_map(shape: tuple[int, int]) -> np.ndarray:
    """The centre-bias baseline at ``shape``: information gain is measured over it."""
    from rl_saliency.saliency.baselines import CentreBias

    base = CentreBias().map
    return base if shape == OBS_SHAPE else upsample_to_frame(base, shape)


def evaluate_trial(trial: Trial, policy: Any, methods: dict[str, Any], resolution: int = 84, stride: int = 1,
                   max_frames: int | None = None, batch_size: int = 64, seed: int = 0, pool: str = "rgb",
                   progress: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score every method on every observation of one trial: a row per observation and method, and a
    summary with everything that went wrong in the data. ``pool``: see ``envs.replay``."""
    shape = RESOLUTIONS[resolution]
    gaze = trial.gaze
    first = int(gaze.frame_index[0])
    max_index = first + max_frames - 1 if max_frames else None
    indices, skipped = observation_indices(gaze, stride=stride, max_index=max_index)
    position = {index: k for k, index in enumerate(indices)}
    rng = np.random.default_rng(_trial_seed(seed, trial.name))
    baseline = centre_bias_map(shape)
    replay_report = ReplayReport()
    rows: list[pd.DataFrame] = []
    bar = tqdm(total=len(indices), unit="obs", desc=f"{trial.game or '?'} {trial.name}", disable=not progress,
               leave=False)

    def score(batch: list[tuple[int, np.ndarray]]) -> None:
        at = [i for i, _ in batch]
        obs = np.stack([o for _, o in batch])
        counts, n_fix, n_off = observation_counts(gaze, at, shape)
        density = gaze_density(counts)
        others = shuffled_negatives(gaze, indices, [position[i] for i in at], rng, shape)
        metric_seed = int(rng.integers(2**63))
        for name, method in methods.items():
            maps = method.attribute(policy, obs)
            if shape != OBS_SHAPE:
                maps = upsample_to_frame(maps, shape)
            # the same random negatives (AUC-Borji) for every method: differences are the maps' only
            values = all_metrics_batch(maps, counts, density, others, baseline, np.random.default_rng(metric_seed))
            rows.append(pd.DataFrame({"game": trial.game, "trial": trial.name, "method": name, "frame_index": at,
                                      "n_fixations": n_fix, "n_offscreen": n_off, **values}))
        bar.update(len(batch))

    batch: list[tuple[int, np.ndarray]] = []
    frames = trial.frames(max_index=indices[-1] if indices else first)
    for item in replay_observations(frames, indices=indices, report=replay_report, pool=pool):
        batch.append(item)
        if len(batch) == batch_size:
            score(batch)
            batch = []
    if batch:
        score(batch)
    bar.close()
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["game", "trial", "method", "frame_index", "n_fixations", "n_offscreen", *METRICS])
    summary = {
        "game": trial.game, "trial": trial.name, "txt": str(trial.files.txt), "tar": str(trial.files.tar),
        "frames_in_txt": len(gaze), "gaze_samples": gaze.n_samples, "offscreen_samples": gaze.n_offscreen,
        "null_gaze_frames": gaze.null_gaze_frames, "observations_planned": len(indices),
        "observations_scored": replay_report.emitted, "observations_skipped": {
            **{k: len(v) for k, v in skipped.items()}, "frames_missing_from_tar": len(replay_report.gaps)},
        "issues": trial.issues, "meta_data": trial.files.meta,
    }
    return table, summary


# ------------------------------------------------------------------------------------------------ tables

def _mean_std(values: pd.Series) -> tuple[float, float, int]:
    values = values.dropna()
    if values.empty:
        return math.nan, math.nan, 0
    return float(values.mean()), float(values.std(ddof=0)), int(len(values))


def summarise_trials(per_observation: pd.DataFrame) -> pd.DataFrame:
    """Per trial and method: mean, population std and count of each metric over the observations where it
    is defined."""
    rows = []
    for (game, trial, method), group in per_observation.groupby(["game", "trial", "method"], sort=True,
                                                                dropna=False):
        row: dict[str, Any] = {"game": game, "trial": trial, "method": method, "observations": len(group)}
        for metric in METRICS:
            row[f"{metric}_mean"], row[f"{metric}_std"], row[f"{metric}_n"] = _mean_std(group[metric])
        rows.append(row)
    return pd.DataFrame(rows)


def summarise_games(per_trial: pd.DataFrame) -> pd.DataFrame:
    """Per game and method: mean and population std of the trial means."""
    rows = []
    if per_trial.empty:
        return pd.DataFrame()
    for (game, method), group in per_trial.groupby(["game", "method"], sort=True, dropna=False):
        row = {"game": game, "method": method, "trials": len(group), "observations": int(group["observations"].sum())}
        for metric in METRICS:
            row[f"{metric}_mean"], row[f"{metric}_std"], _ = _mean_std(group[f"{metric}_mean"])
        rows.append(row)
    return pd.DataFrame(rows)


def summarise(per_observation: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(per_trial, per_game)`` tables of a per-observation table."""
    per_trial = summarise_trials(per_observation)
    return per_trial, summarise_games(per_trial)


def format_table(per_game: pd.DataFrame, per_trial: pd.DataFrame | None = None,
                 metrics: Sequence[str] = METRICS) -> str:
    """A plain-text table, one row per game and method: mean ± std of each metric over trials, or over
    observations when every game has a single trial (``per_trial`` given)."""
    if per_game.empty:
        return "(no observations scored)"
    single = per_trial is not None and not per_trial.empty and (per_game["trials"] == 1).all()
    table, spread = (per_trial, "observations (one trial per game)") if single else (per_game, "trials")
    head = f"{'game':14s} {'method':16s} {'obs':>7s} " + " ".join(f"{m:>15s}" for m in metrics)
    lines = [head, "-" * len(head)]
    for _, r in table.iterrows():
        cells = " ".join(f"{r[f'{m}_mean']:.3f}±{r[f'{m}_std']:.3f}".rjust(15) for m in metrics)
        lines.append(f"{str(r['game'])[:14]:14s} {str(r['method'])[:16]:16s} {int(r['observations']):7d} {cells}")
    lines.append(f"kl_div: lower is better; the others: higher is better. Mean ± std over {spread}.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ the run

def _check_config(out: Path, config: dict[str, Any]) -> None:
    """Refuse to mix results of different configurations in one output folder."""
    path = out / "run.json"
    if path.exists():
        previous = json.loads(path.read_text())
        keys = ("model", "methods", "resolution", "stride", "max_frames", "seed", "pool")
        differ = [k for k in keys if previous.get(k) != config.get(k)]
        if differ:
            raise DataError(f"{path} holds results of another configuration (differs in {', '.join(differ)}); "
                            f"use another --out or delete it")
    io.write_json(path, config)


def _trial_paths(out: Path, trial: TrialFiles) -> tuple[Path, Path]:
    folder = out / "trials" / (trial.game or "unknown")
    return folder / f"{trial.name}.parquet", folder / f"{trial.name}.json"


def gaze_eval(model: str | Path | None, atari_head: str | Path, out: str | Path,
              methods: Sequence[str] = ("attention",), games: Sequence[str] | None = None,
              trials: Sequence[str] | None = None, game: str | None = None, max_frames: int | None = None,
              batch_size: int = 64, stride: int = 1, resolution: int = 84, seed: int = 0, strict: bool = False,
              pool: str = "auto", device: str = "auto", progress: bool = True,
              keep_observations: bool = False) -> dict[str, pd.DataFrame]:
    """Score ``methods`` (plus the baselines) on Atari-HEAD trials against human gaze; see the module doc.
    ``model`` None (or "none") scores the baselines only; ``pool`` picks the replay's frame pooling (``auto``:
    the model's training backend, see ``replay_pool``). Returns the ``per_trial`` and ``per_game`` tables
    (also written under ``out``), and ``per_observation`` (all trials' parquet files) if ``keep_observations``."""
    if resolution not in RESOLUTIONS:
        raise SpecError(f"resolution must be one of {sorted(RESOLUTIONS)}, got {resolution}")
    if batch_size < 1 or stride < 1 or (max_frames is not None and max_frames < 14):
        raise SpecError(f"--batch-size and --stride must be >= 1 and --max-frames >= 14 (one observation needs 14 "
                        f"frames); got --batch-size {batch_size}, --stride {stride}, --max-frames {max_frames}")
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
              "resolution": resolution, "stride": stride, "max_frames": max_frames, "seed": seed, "pool": pool,
              "atari_head": str(Path(atari_head).resolve()), "game": model_game}
    _check_config(out, config)

    for files in tqdm(found, unit="trial", desc="gaze-eval", disable=not progress or len(found) == 1):
        table_path, summary_path = _trial_paths(out, files)
        if summary_path.exists() and table_path.exists():
            continue  # finished in an earlier run
        trial = Trial(files, strict=strict)
        table, summary = evaluate_trial(trial, policy, scorers, resolution=resolution, stride=stride,
                                        max_frames=max_frames, batch_size=batch_size, seed=seed, pool=pool,
                                        progress=progress)
        for issue in summary["issues"]:
            tqdm.write(f"warning: {issue}")
        summary["per_method"] = summarise_trials(table).to_dict("records")  # the trial's rows of per_trial.csv
        io.atomic_write(table_path, lambda tmp, t=table: t.to_parquet(tmp, index=False))
        io.write_json(summary_path, summary)  # written last: marks the trial finished

    # the tables are built from the trials' summaries: the per-observation rows of a whole dataset need not fit
    # in memory
    rows = [row for t in found for row in json.loads(_trial_paths(out, t)[1].read_text())["per_method"]]
    per_trial = pd.DataFrame(rows)
    per_game = summarise_games(per_trial)
    io.write_csv(out / "per_trial.csv", per_trial)
    io.write_csv(out / "per_game.csv", per_game)
    result = {"per_trial": per_trial, "per_game": per_game}
    if keep_observations:
        tables = [pd.read_parquet(_trial_paths(out, t)[0]) for t in found]
        result["per_observation"] = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return result


# ------------------------------------------------------------------------------------------------ CLI

def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gaze-eval", help="score an agent's saliency against human gaze (Atari-HEAD)",
        description="Replay Atari-HEAD trials through the agent's preprocessing, compute the saliency of every "
                    "observation with a method on the saliency contract, and score it against the human fixations "
                    "(NSS, AUC-Judd, AUC-Borji, shuffled AUC, KL, CC, SIM, information gain over centre bias), "
                    "with the centre-bias, uniform and intensity baselines alongside. Resumable.",
        epilog="example: rl-saliency gaze-eval --model runs/fls_ms_pacman/model.zip --method attention "
               "--atari-head data/atari_head --games ms_pacman --max-frames 2000 --out runs/fls_ms_pacman/gaze")
    parser.add_argument("--model", required=True, help="model zip, or 'none' to score the baselines only")
    parser.add_argument("--method", nargs="+", default=None,
                        help="saliency method(s): attention, gradient, ... (default: attention; with --model none, "
                        "the baselines only); the baselines are always scored too")
    parser.add_argument("--atari-head", required=True, help="Atari-HEAD folder (games in <game>/), a game folder, "
                        "or one trial (<trial>.txt, .tar.bz2 or their stem)")
    parser.add_argument("--games", nargs="+", default=None, help="only these games")
    parser.add_argument("--trials", nargs="+", default=None, help="only these trials (names or numbers)")
    parser.add_argument("--game", default=None, help="the model's game when its run folder does not say")
    parser.add_argument("--max-frames", type=int, default=None, help="only the first N raw frames of each trial")
    parser.add_argument("--batch-size", type=int, default=64, help="observations per saliency batch")
    parser.add_argument("--stride", type=int, default=1, help="an observation every N raw frames (default 1; 4 = "
                        "the agent's decision points)")
    parser.add_argument("--resolution", type=int, choices=sorted(RESOLUTIONS), default=84,
                        help="score at the agent's 84x84 or the frame's 210x160 (maps upsampled)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random negatives (AUC-Borji, shuffled AUC)")
    parser.add_argument("--pool", choices=["auto", *POOLS], default="auto",
                        help="max of each step's two raw frames taken on RGB (SB3 backend) or grey (ale backend); "
                        "auto: the backend in the model's run config.yaml, else rgb")
    parser.add_argument("--strict", action="store_true", help="stop at a corrupt txt row instead of skipping it")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--out", required=True, help="output folder (resumes when it holds finished trials)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    methods = args.method if args.method is not None else [] if args.model.lower() == "none" else ["attention"]
    result = gaze_eval(args.model, args.atari_head, args.out, methods=methods, games=args.games,
                       trials=args.trials, game=args.game, max_frames=args.max_frames, batch_size=args.batch_size,
                       stride=args.stride, resolution=args.resolution, seed=args.seed, strict=args.strict,
                       pool=args.pool, device=args.device)
    print(format_table(result["per_game"], result["per_trial"]))
    print(f"written: {Path(args.out) / 'per_game.csv'}, per_trial.csv, trials/")
    return 0
