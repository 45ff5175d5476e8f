"""``rl-saliency trust``: which saliency method to trust for this agent. One table per agent, one row per method.

Columns (``saliency/faithfulness.py`` and ``saliency/sanity.py`` define the measures):

- deletion AUC (lower is better) and insertion AUC (higher is better) of the probability of the chosen action,
  each next to the same curve with random pixel orders on the same observations;
- randomisation: Spearman correlation of the maps with the maps after randomising the top layer (the output
  heads of an actor-critic), and after randomising every layer (cascading randomisation, ``sanity.py``;
  lower = the map depends on the network);
- robustness: Spearman correlation of the maps with the maps of the same observations plus small noise that
  leaves the action unchanged (higher = stable);
- gaze NSS against Atari-HEAD human gaze, when ``--atari-head`` is given (centre bias for reference);
- maps per second (wall clock, and per CPU-second of this process); ``trust.csv`` also has each part's wall-clock
  and CPU seconds: the cost of the table per method.

Output folder (per agent): ``trust.csv``, ``trust.md``, ``curves.png``; ``observations.npy``; ``random.json``
(the random-order baseline); ``methods/<method>.json`` (each part of each method, written atomically as soon as
it is done: a rerun skips finished parts; settings are in ``trust.json`` and a rerun with other settings is
refused unless ``--overwrite``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rl_saliency import io
from rl_saliency.errors import DataError, OptionError, check_count
from rl_saliency.saliency.faithfulness import (
    check_fill,
    check_fraction,
    check_steps,
    deletion_insertion,
    robustness,
)
from rl_saliency.saliency.registry import get_method

DEFAULT_METHODS = ("gradient", "smoothgrad", "integrated_gradients", "gradcam", "perturbation",
                   "perturbation_action", "sarfa")
PERTURBATION_FAMILY = ("perturbation", "perturbation_action", "sarfa")
PARTS = ("speed", "faithfulness", "robustness", "randomisation", "gaze")
SETTING_KEYS = ("model", "game", "n_obs", "steps", "fill", "blur_sigma", "max_fraction", "noise",
                "robustness_samples", "randomisation_obs", "seed", "observations", "atari_head", "gaze_max_frames",
                "gaze_stride")


# ------------------------------------------------------------------------------------------------ settings

def method_options(methods: list[str], perturbation_stride: int = 5, smoothgrad_samples: int = 20,
                   ig_steps: int = 32) -> dict[str, dict[str, Any]]:
    """Each method's constructor options from the command's few knobs; unknown names and bad values fail here."""
    options: dict[str, dict[str, Any]] = {}
    for name in methods:
        kwargs: dict[str, Any] = {}
        if name in PERTURBATION_FAMILY:
            kwargs = {"stride": perturbation_stride}
        elif name == "smoothgrad":
            kwargs = {"n_samples": smoothgrad_samples}
        elif name == "integrated_gradients":
            kwargs = {"n_steps": ig_steps}
        get_method(name, **kwargs)  # OptionError: unknown method or bad option
        options[name] = kwargs
    return options


def agent_label(model_path: str | Path) -> str:
    """A short name for an agent: its run folder (``runs/x/model.zip`` -> x), else the zip's stem."""
    path = Path(model_path)
    if path.name == "model.zip":
        return path.parent.name or path.stem
    if path.parent.name == "checkpoints":
        return f"{path.parent.parent.name}_{path.stem}"
    return path.stem


def _positive(value: Any, option: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not np.isfinite(number) or number <= 0:
        raise OptionError(f"{option} must be a positive number, got {value!r}")
    return number


def _check_settings(out: Path, settings: dict[str, Any], overwrite: bool) -> None:
    """Refuse an output folder holding results of other settings (unless ``overwrite``)."""
    path = out / "trust.json"
    if path.exists() and not overwrite:
        previous = json.loads(path.read_text())
        differ = [k for k in SETTING_KEYS if previous.get(k) != settings.get(k)]
        if differ:
            raise DataError(f"{out} holds a trust table made with other settings ({', '.join(differ)}); use another "
                            f"--out, or --overwrite to start afresh")


def _start(out: Path, settings: dict[str, Any], overwrite: bool) -> None:
    """Write the settings; with ``overwrite``, drop what an earlier run left."""
    if overwrite:
        for stale in [out / "random.json", out / "observations.npy", *(out / "methods").glob("*.json"),
                      *(out / "maps").glob("*.npy")]:
            stale.unlink(missing_ok=True)
    io.write_json(out / "trust.json", settings)


# ------------------------------------------------------------------------------------------------ parts

def _auc_summary(curves: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for mode, c in curves.items():
        auc = c.auc
        result[f"{mode}_auc"] = float(auc.mean())
        result[f"{mode}_auc_sem"] = float(auc.std(ddof=1) / np.sqrt(len(auc))) if len(auc) > 1 else float("nan")
        result[f"{mode}_curve"] = [float(v) for v in c.mean_curve()]
        result["fractions"] = [float(f) for f in c.fractions]
    return result


class _Timed:
    """A saliency method that adds up the seconds its ``attribute`` calls take."""

    def __init__(self, method: Any):
        self.method, self.seconds, self.cpu_seconds = method, 0.0, 0.0

    def attribute(self, policy: Any, observations: Any, **kwargs: Any) -> np.ndarray:
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            return self.method.attribute(policy, observations, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.cpu_seconds += time.process_time() - start_cpu


def gaze_nss(model_path: Path, game: str, atari_head: Path, methods: dict[str, Any], policy: Any,
             max_frames: int | None, stride: int, seed: int, progress: bool) -> dict[str, dict[str, Any]]:
    """NSS of each method (and of the centre bias) on the game's Atari-HEAD trials, through the gaze evaluator;
    the trials are replayed once for all methods. ``seconds`` (wall clock) and ``cpu_seconds`` (this process): a
    method's own maps plus an equal share of the replay and scoring."""
    from rl_saliency.envs.registry import resolve_game
    from rl_saliency.gaze.data import Trial, find_trials
    from rl_saliency.gaze.evaluator import evaluate_trial, summarise_trials
    from rl_saliency.runs import replay_pool

    wanted = resolve_game(game).atari_head
    found, _ = find_trials(atari_head)
    found = [t for t in found if t.game == wanted]
    if not found:
        raise DataError(f"no Atari-HEAD trial of {game} ({wanted}) under {atari_head}")
    start, start_cpu = time.perf_counter(), time.process_time()
    timed = {name: _Timed(method) for name, method in methods.items()}
    scorers = {**timed, "centre_bias": get_method("centre_bias")}
    tables = [evaluate_trial(Trial(files, strict=False), policy, scorers, stride=stride, max_frames=max_frames,
                             seed=seed, pool=replay_pool(model_path), progress=progress)[0] for files in found]
    shared = (time.perf_counter() - start - sum(t.seconds for t in timed.values())) / max(1, len(timed))
    shared_cpu = (time.process_time() - start_cpu - sum(t.cpu_seconds for t in timed.values())) / max(1, len(timed))
    per_trial = summarise_trials(pd.concat(tables, ignore_index=True))
    nss = per_trial.groupby("method")["nss_mean"].mean()
    return {name: {"gaze_nss": float(nss[name]), "gaze_nss_centre_bias": float(nss["centre_bias"]),
                   "gaze_trials": len(found), "gaze_observations": int(per_trial["observations"].max()),
                   "seconds": timed[name].seconds + shared, "cpu_seconds": timed[name].cpu_seconds + shared_cpu,
                   "seconds_shared": shared} for name in methods}


def _randomisation(policy: Any, obs: np.ndarray, name: str, kwargs: dict[str, Any], seed: int) -> dict[str, Any]:
    from rl_saliency.saliency.sanity import cascading_randomisation

    table = cascading_randomisation(policy, obs, [name], method_kwargs={name: kwargs}, seed=seed, progress=False)
    table = table.sort_values("step")
    return {"randomisation_top": float(table.iloc[1]["spearman_abs"]),
            "randomisation_all": float(table.iloc[-1]["spearman_abs"]),
            "randomisation_layers": [str(v) for v in table["layer"]],
            "randomisation_curve": [float(v) for v in table["spearman_abs"]]}


def _record(out: Path, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A method's stored parts (``methods/<name>.json``), empty if it ran with other options."""
    path = out / "methods" / f"{name}.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    return record if record.get("options") == kwargs else {"method": name, "options": kwargs, "parts": {}}


def evaluate_method(name: str, kwargs: dict[str, Any], policy: Any, obs: np.ndarray, out: Path,
                    settings: dict[str, Any], progress: bool = True) -> dict[str, Any]:
    """Every part but gaze of one method's row, resuming from ``methods/<name>.json``; returns its parts."""
    path, maps_path = out / "methods" / f"{name}.json", out / "maps" / f"{name}.npy"
    record = _record(out, name, kwargs)
    parts: dict[str, Any] = record["parts"]
    method = get_method(name, **kwargs)
    wanted = [p for p in PARTS if p != "gaze"]
    bar = tqdm(total=len(wanted), desc=f"trust {name}", unit="part", disable=not progress, leave=False)
    maps = np.load(maps_path) if maps_path.exists() else None
    if maps is None:
        parts.pop("speed", None)  # the maps come with the speed part: recompute both
    for part in wanted:
        bar.set_postfix_str(part)
        if part in parts:
            bar.update()
            continue
        start, start_cpu = time.perf_counter(), time.process_time()
        if part == "speed":
            method.attribute(policy, obs[:1])  # warm-up: lazy set-up, first-call allocations
            wall, cpu = time.perf_counter(), time.process_time()
            maps = method.attribute(policy, obs)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            io.atomic_write(maps_path, lambda tmp, m=maps: np.save(tmp, m))
            result = {"maps_per_s": len(obs) / wall, "maps_per_cpu_s": len(obs) / max(cpu, 1e-9)}
        elif part == "faithfulness":
            result = _auc_summary(deletion_insertion(policy, obs, maps, steps=settings["steps"], fill=settings["fill"],
                                                     blur_sigma=settings["blur_sigma"],
                                                     max_fraction=settings["max_fraction"], seed=settings["seed"]))
        elif part == "robustness":
            r = robustness(method.attribute, policy, obs, maps=maps, noise=settings["noise"],
                           n_samples=settings["robustness_samples"], seed=settings["seed"])
            result = {"robustness": r.mean, "robustness_pairs": len(r.correlations), "robustness_skipped": r.skipped}
        else:
            result = _randomisation(policy, obs[:settings["randomisation_obs"]], name, kwargs, settings["seed"])
        parts[part] = {**result, "seconds": time.perf_counter() - start,
                       "cpu_seconds": time.process_time() - start_cpu}
        io.write_json(path, record)
        bar.update()
    bar.close()
    return parts


def evaluate_gaze(methods: list[str], options: dict[str, dict[str, Any]], policy: Any, out: Path,
                  settings: dict[str, Any], model_path: Path, progress: bool = True) -> dict[str, dict[str, Any]]:
    """The gaze part of every method that lacks it, in one replay of the trials; each method's result is stored
    with its other parts."""
    records = {name: _record(out, name, options.get(name, {})) for name in methods}
    pending = [name for name in methods if "gaze" not in records[name]["parts"]]
    if pending:
        results = gaze_nss(model_path, settings["game"], Path(settings["atari_head"]),
                           {name: get_method(name, **options.get(name, {})) for name in pending}, policy,
                           settings["gaze_max_frames"], settings["gaze_stride"], settings["seed"], progress)
        for name in pending:
            records[name]["parts"]["gaze"] = results[name]
            io.write_json(out / "methods" / f"{name}.json", records[name])
    return {name: records[name]["parts"]["gaze"] for name in methods}


# ------------------------------------------------------------------------------------------------ tables

def build_table(label: str, game: str, rows: dict[str, dict[str, Any]], baseline: dict[str, Any],
                n_obs: int) -> pd.DataFrame:
    """One row per method: the columns of the module doc plus the seconds each part took."""
    records = []
    for name, parts in rows.items():
        flat = {k: v for part in parts.values() for k, v in part.items() if not isinstance(v, list)}
        record = {"agent": label, "game": game, "method": name, "n_obs": n_obs,
                  "deletion_auc": flat.get("deletion_auc"), "deletion_auc_random": baseline["deletion_auc"],
                  "insertion_auc": flat.get("insertion_auc"), "insertion_auc_random": baseline["insertion_auc"],
                  "randomisation_top": flat.get("randomisation_top"),
                  "randomisation_all": flat.get("randomisation_all"), "robustness": flat.get("robustness"),
                  "gaze_nss": flat.get("gaze_nss"), "gaze_nss_centre_bias": flat.get("gaze_nss_centre_bias"),
                  "maps_per_s": flat.get("maps_per_s"), "maps_per_cpu_s": flat.get("maps_per_cpu_s")}
        for part in PARTS:
            record[f"seconds_{part}"] = parts.get(part, {}).get("seconds")
            record[f"cpu_seconds_{part}"] = parts.get(part, {}).get("cpu_seconds")
        records.append(record)
    return pd.DataFrame(records)


def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}"


def markdown_table(table: pd.DataFrame) -> str:
    """The table as Markdown, with the random baseline and the centre bias in the notes."""
    if table.empty:
        return "(no methods)\n"
    first = table.iloc[0]
    lines = [f"**{first['agent']}** on {first['game']}, {int(first['n_obs'])} observations",
             "",
             "| method | deletion AUC ↓ (random) | insertion AUC ↑ (random) | randomisation top / all ↓ | "
             "robustness ↑ | gaze NSS ↑ | maps/s (per CPU-s) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for _, r in table.iterrows():
        lines.append(f"| {r['method']} | {_fmt(r['deletion_auc'])} ({_fmt(r['deletion_auc_random'])}) | "
                     f"{_fmt(r['insertion_auc'])} ({_fmt(r['insertion_auc_random'])}) | "
                     f"{_fmt(r['randomisation_top'], 2)} / {_fmt(r['randomisation_all'], 2)} | "
                     f"{_fmt(r['robustness'], 2)} | {_fmt(r['gaze_nss'], 2)} | {_fmt(r['maps_per_s'], 1)} "
                     f"({_fmt(r['maps_per_cpu_s'], 1)}) |")
    centre = table["gaze_nss_centre_bias"].dropna()
    lines.append("")
    if len(centre):
        lines.append(f"Centre-bias NSS on the same gaze frames: {centre.iloc[0]:.2f}.")
    lines.append("Deletion/insertion: probability of the originally chosen action as pixels are removed/restored, "
                 "area under the curve; in brackets the same with random pixel orders. Randomisation: Spearman "
                 "correlation with the maps after randomising the top layer (output heads) / all layers. "
                 "Robustness: Spearman correlation under small noise that keeps the action. Maps/s: wall clock, "
                 "and per CPU-second of this process (the fairer figure on a shared machine).")
    return "\n".join(lines) + "\n"


def plot_curves(rows: dict[str, dict[str, Any]], baseline: dict[str, Any], path: Path, title: str) -> Path:
    """Mean deletion and insertion curves of every method, with the random order dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, mode in zip(axes, ("deletion", "insertion"), strict=True):
        for name, parts in rows.items():
            faith = parts.get("faithfulness")
            if faith:
                ax.plot(faith["fractions"], faith[f"{mode}_curve"], label=f"{name} ({faith[f'{mode}_auc']:.3f})")
        ax.plot(baseline["fractions"], baseline[f"{mode}_curve"], "k--",
                label=f"random order ({baseline[f'{mode}_auc']:.3f})")
        ax.set_title(f"{mode} ({'lower' if mode == 'deletion' else 'higher'} is better)")
        ax.set_xlabel("fraction of pixels " + ("removed" if mode == "deletion" else "restored"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("probability of the chosen action")
    fig.suptitle(title)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------ the run

def default_methods(policy: Any) -> list[str]:
    """The methods a table has when none are named: ``DEFAULT_METHODS``, with ``attention`` first when the policy
    has built-in attention."""
    from rl_saliency.saliency.attention import attention_module

    try:
        attention_module(policy)
    except OptionError:
        return list(DEFAULT_METHODS)
    return ["attention", *DEFAULT_METHODS]


def trust_table(model_path: str | Path, out: str | Path, game: str | None = None,
                methods: list[str] | tuple[str, ...] | None = None, n_obs: int = 32, steps: int = 20,
                fill: str = "blur", blur_sigma: float = 5.0, max_fraction: float = 1.0, noise: float = 0.01,
                robustness_samples: int = 1, randomisation_obs: int = 8, seed: int = 0,
                atari_head: str | Path | None = None, gaze_max_frames: int | None = 1000, gaze_stride: int = 4,
                options: dict[str, dict[str, Any]] | None = None, observations: str | Path | None = None,
                device: str = "auto", overwrite: bool = False, progress: bool = True) -> pd.DataFrame:
    """The trust table of one agent (see the module doc); writes it under ``out`` and returns it."""
    from rl_saliency.runs import check_method, game_for_model, open_agent
    from rl_saliency.runs import model_path as resolve_model_path
    from rl_saliency.saliency.faithfulness import check_observations
    from rl_saliency.saliency.sanity import _load_observations, collect_observations

    by_default = methods is None  # DEFAULT_METHODS, and attention first when the model has it
    methods = list(dict.fromkeys(DEFAULT_METHODS if methods is None else methods))
    if not methods:
        raise OptionError("give at least one method")
    options = options if options is not None else method_options(methods)
    for name in methods:
        get_method(name, **options.get(name, {}))
    settings = {"n_obs": check_count(n_obs, "--n-obs"), "steps": check_steps(steps, "--steps"),
                "fill": check_fill(fill, "--fill"),
                "blur_sigma": _positive(blur_sigma, "--blur-sigma"),
                "max_fraction": check_fraction(max_fraction, "--max-fraction"),
                "noise": check_fraction(noise, "--noise", upper=0.5),
                "robustness_samples": check_count(robustness_samples, "--robustness-samples"),
                "randomisation_obs": check_count(randomisation_obs, "--randomisation-obs"), "seed": int(seed),
                "gaze_max_frames": None if gaze_max_frames is None else check_count(gaze_max_frames,
                                                                                   "--gaze-max-frames", 14),
                "gaze_stride": check_count(gaze_stride, "--gaze-stride")}
    if atari_head is not None and not Path(atari_head).exists():
        raise FileNotFoundError(f"--atari-head {atari_head} does not exist")
    given = _load_observations(Path(observations)) if observations is not None else None
    model_path, out = resolve_model_path(model_path), Path(out)
    game = game_for_model(model_path, game)
    settings.update({"model": str(model_path.resolve()), "game": game,
                     "observations": str(Path(observations).resolve()) if observations else None,
                     "atari_head": str(Path(atari_head).resolve()) if atari_head else None})
    _check_settings(out, settings, overwrite)  # before the (slow) model load
    model = open_agent(model_path, game, device=device).model
    policy = model.policy
    if by_default:
        methods = default_methods(policy)
    for name in methods:  # a method that cannot explain this model fails now, in one line
        check_method(get_method(name, **options.get(name, {})), name, policy, option="--methods")
    out.mkdir(parents=True, exist_ok=True)
    _start(out, settings, overwrite)
    obs_path = out / "observations.npy"
    if given is not None:
        obs = given[:settings["n_obs"]]
    elif obs_path.exists():
        obs = np.load(obs_path)
    else:
        obs = collect_observations(model, game, settings["n_obs"], seed=settings["seed"])
    check_observations(obs)
    io.atomic_write(obs_path, lambda tmp: np.save(tmp, obs))

    baseline_path = out / "random.json"
    if baseline_path.exists():
        baseline = json.loads(baseline_path.read_text())
    else:
        baseline = _auc_summary(deletion_insertion(policy, obs, None, steps=settings["steps"], fill=settings["fill"],
                                                   blur_sigma=settings["blur_sigma"],
                                                   max_fraction=settings["max_fraction"], seed=settings["seed"]))
        io.write_json(baseline_path, baseline)
    rows = {}
    for name in tqdm(methods, desc=f"trust {agent_label(model_path)}", unit="method", disable=not progress):
        rows[name] = evaluate_method(name, options.get(name, {}), policy, obs, out, settings, progress)
    if settings["atari_head"]:
        for name, gaze in evaluate_gaze(methods, options, policy, out, settings, model_path, progress).items():
            rows[name]["gaze"] = gaze
    label = agent_label(model_path)
    table = build_table(label, game, rows, baseline, len(obs))
    io.write_csv(out / "trust.csv", table.round(6))
    io.write_text(out / "trust.md", markdown_table(table))
    plot_curves(rows, baseline, out / "curves.png", f"{label} on {game}: deletion and insertion ({len(obs)} obs.)")
    return table


# ------------------------------------------------------------------------------------------------ CLI
