"""The run behind ``rl-saliency visualize`` (:mod:`rl_saliency.cli.visualize`): what an agent wants to see
(actions, units, the generator prior) and the smallest change that changes its mind (fooling frames), as PNG
sheets, a GIF per stack and a CSV of scores before and after.

Outputs under ``--out`` (``<what>`` is action, unit, generator or fooling):

- ``sheet_<what>.png``: one row per action / unit / observation, the 4 stacked frames side by side, labelled with
  the game's action names and the scores before -> after; ``--what generator`` also writes ``sheet_pixel.png`` and
  ``sheet_pixel_vs_generator.png`` (the same targets maximised in pixel space and through the generator, side by
  side); ``--what fooling`` shows observation, fooled frames and the change, and writes ``robustness.png``;
- ``gifs/<what>_<row>_<label>.gif``: each stack as a 4-frame animation;
- ``scores_<what>.csv`` (fooling: ``fooling.csv`` and ``fooling_summary.json``), ``frames_<what>.npy``;
- ``observations.npy``: the observations played by the agent (reused on a rerun with the same settings);
- ``generator/``: the generator's checkpoint, loss history and training observations (resumable).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rl_saliency import io
from rl_saliency.errors import ModelLoadError, OptionError, check_count
from rl_saliency.visualize import sheets
from rl_saliency.visualize.base import Visualization, check_image_policy
from rl_saliency.visualize.registry import get_visualizer
from rl_saliency.visualize.targets import (
    OBJECTIVES,
    check_actions,
    describe_units,
    n_actions,
    parse_unit,
    unit_layers,
)

WHATS = ("action", "unit", "generator", "fooling")


@dataclasses.dataclass
class VisualizeSettings:
    """Everything one visualisation run needs; the CLI's defaults are these (rl_saliency/cli/visualize.py)."""

    model: str
    out: str
    game: str | None = None
    what: str = "action"
    actions: list[int] | None = None
    units: list[str] | None = None
    list_units: bool = False
    objective: str = "logit"
    # pixel-space ascent (action, unit; the generator's comparison)
    init: str = "noise"
    steps: int = 200
    lr: float = 4.0
    l2: float = 1.0
    blur_every: int = 4
    blur_sigma: float = 0.5
    jitter: int = 2
    # generator prior
    gen_dir: str | None = None
    gen_steps: int = 3000
    gen_obs: int = 2000
    gen_batch: int = 64
    gen_lr: float = 1e-3
    feature_weight: float = 1.0
    checkpoint_every: int = 250
    code_steps: int = 200
    code_lr: float = 0.05
    code_l2: float = 0.1
    # fooling frames
    n_obs: int = 32
    target: str = "any"
    max_bound: int = 64
    attack_steps: int = 20
    observations: str | None = None
    every: int = 8
    scale: int = 2
    seed: int = 0
    device: str = "auto"
    progress: bool = True


# ------------------------------------------------------------------------------------------------ inputs

def action_meanings(game: str) -> list[str]:
    """The game's action names, in the order of its (minimal) action set, from ale-py through gymnasium."""
    import ale_py
    import gymnasium as gym

    from rl_saliency.envs.registry import resolve_game

    gym.register_envs(ale_py)
    env = gym.make(resolve_game(game).gym_id)
    try:
        return list(env.unwrapped.get_action_meanings())
    finally:
        env.close()


def load_agent(model_path: str | Path, game: str, device: str = "auto") -> tuple[Any, list[str]]:
    """The model (PPO, A2C, DQN zip; image observations only) and the game's action names, checked to fit."""
    from rl_saliency.models import load_model

    model = load_model(model_path, device=device)
    check_image_policy(model.policy)
    names = action_meanings(game)
    count = n_actions(model.policy)
    if count != len(names):
        raise ModelLoadError(f"model {model_path} scores {count} actions but {game} has {len(names)} "
                             f"({', '.join(names)}); was it trained on another game? (--game)")
    return model, names


def gather_observations(model: Any, game: str, n: int, seed: int, every: int, path: Path,
                        given: str | Path | None = None) -> np.ndarray:
    """``n`` observations: from ``given`` (.npy), else the agent playing ``game`` (one kept every ``every`` steps),
    saved at ``path`` and reused by a rerun with the same settings."""
    from rl_saliency.saliency.sanity import _load_observations, collect_observations

    if given is not None:
        return _load_observations(Path(given))[:n]
    meta_path = path.with_suffix(".json")
    meta = {"game": game, "n": n, "seed": seed, "every": every}
    if path.exists() and meta_path.exists() and json.loads(meta_path.read_text()) == meta:
        return np.load(path)
    obs = collect_observations(model, game, n, seed=seed, every=every)
    io.atomic_write(path, lambda tmp: np.save(tmp, obs))
    io.write_json(meta_path, meta)
    return obs


# ------------------------------------------------------------------------------------------------ outputs

def _fmt(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.3g}"


def row_label(row: dict[str, Any], names: Sequence[str] | None = None) -> str:
    """A sheet label: the target, its score before -> after, and (actions) the probability."""
    score = row.get("objective", "score")
    lines = [str(row["label"]), f"{score} {_fmt(row['score_before'])} -> {_fmt(row['score_after'])}"]
    if "prob_after" in row:
        lines.append(f"p {_fmt(row['prob_before'])} -> {_fmt(row['prob_after'])}")
    greedy = row.get("greedy_after")
    if greedy is not None:
        lines.append(f"chooses {names[greedy] if names is not None and greedy < len(names) else greedy}")
    return "\n".join(lines)


def write_visualization(vis: Visualization, out: Path, prefix: str, names: Sequence[str] | None, scale: int,
                        title: str) -> list[Path]:
    """Sheet, GIFs, scores CSV and raw frames of an action / unit / generator visualisation. Started from an
    observation, the sheet shows the observation (and the generator its reconstruction) left of the result."""
    labels = [row_label(r, names) for r in vis.rows]
    from_obs = bool(vis.rows) and vis.rows[0].get("init") == "observation"
    groups, titles = ([vis.start, vis.frames], ["start", "visualised"]) if from_obs else ([vis.frames], None)
    written = [sheets.save_png(sheets.sheet(groups, labels, titles=titles, scale=scale, title=title),
                               out / f"sheet_{prefix}.png")]
    written += sheets.save_gifs(vis.frames, vis.labels, out / "gifs", prefix)
    written.append(io.write_csv(out / f"scores_{prefix}.csv", vis.table))
    written.append(io.atomic_write(out / f"frames_{prefix}.npy", lambda tmp: np.save(tmp, vis.frames_uint8())))
    return written


def write_fooling(vis: Visualization, out: Path, scale: int, title: str) -> list[Path]:
    diff = sheets.difference_frames(vis.start, vis.frames)
    labels = [f"{label}\nchanged {r['changed_pixels']} px" for label, r in zip(vis.labels, vis.rows, strict=True)]
    image = sheets.sheet([vis.start, vis.frames, diff], labels,
                         titles=["observation", "fooled", "|change| (max=white)"], scale=scale, title=title)
    summary = vis.extra["summary"]
    written = [sheets.save_png(image, out / "sheet_fooling.png"),
               io.write_csv(out / "fooling.csv", vis.table), io.write_json(out / "fooling_summary.json", summary),
               sheets.robustness_plot(vis.extra["bounds"], out / "robustness.png",
                                      f"{title}\n" + ", ".join(f"{b} grey: {summary[f'flipped_at_{b}']:.0%}"
                                                               for b in (1, 2, 4, 8)), summary["max_bound"]),
               io.atomic_write(out / "frames_fooling.npy", lambda tmp: np.save(tmp, vis.frames_uint8()))]
    written += sheets.save_gifs(vis.frames, [f"obs {r['observation']}" for r in vis.rows], out / "gifs", "fooling")
    return written


# ------------------------------------------------------------------------------------------------ the run

def pixel_options(args: VisualizeSettings, names: Sequence[str]) -> dict[str, Any]:
    return {"steps": args.steps, "lr": args.lr, "l2": args.l2, "blur_every": args.blur_every,
            "blur_sigma": args.blur_sigma, "jitter": args.jitter, "init": args.init, "objective": args.objective,
            "seed": args.seed, "action_names": names, "progress": args.progress}


def _check_targets(args: VisualizeSettings, policy: Any, names: list[str]) -> None:
    """Bad actions, units and fooling targets fail in one line before any observation is played or trained on."""
    if args.what == "unit" and not args.units:
        raise OptionError(f"--what unit needs --units; this policy's units: {describe_units(unit_layers(policy))}")
    if args.units and args.what in ("unit", "generator"):
        layers = unit_layers(policy)
        for unit in args.units:
            parse_unit(unit, layers)
    if args.actions is not None:
        check_actions(args.actions, len(names), names)
    if args.what == "fooling" and str(args.target).strip().lower() != "any":
        check_actions([args.target], len(names), names)


def run(args: VisualizeSettings) -> dict[str, Any]:
    """The whole command: load, (collect observations,) visualise, write; returns run.json's content."""
    from rl_saliency.runs import game_for_model
    from rl_saliency.trust import agent_label

    if args.what not in WHATS:
        raise OptionError(f"--what must be one of {', '.join(WHATS)}, got {args.what!r}")
    if args.objective not in OBJECTIVES:
        raise OptionError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {args.objective!r}")
    check_count(args.scale, "--scale", maximum=8)
    n_obs = check_count(args.n_obs, "--n-obs", maximum=100_000)
    game = game_for_model(args.model, args.game)
    out = Path(args.out)
    model, names = load_agent(args.model, game, args.device)
    policy = model.policy
    policy.set_training_mode(False)
    if args.list_units:
        print(describe_units(unit_layers(policy)).replace("; ", "\n"))
        return {}
    _check_targets(args, policy, names)
    title = f"{agent_label(args.model)} on {game}: {args.what}"
    start = time.perf_counter()
    written: list[Path] = []
    record: dict[str, Any] = {"model": str(Path(args.model).resolve()), "game": game, "what": args.what,
                              "action_names": names}
    with io.output_lock(out):
        needs_obs = args.what == "fooling" or args.init == "observation"
        obs = gather_observations(model, game, n_obs if args.what == "fooling" else 1, args.seed, args.every,
                                  out / "observations.npy", args.observations) if needs_obs else None
        if args.what in ("action", "unit"):
            options = pixel_options(args, names)
            targets = args.actions if args.what == "action" else args.units
            vis = get_visualizer(args.what, **options).visualize(policy, targets, obs)
            written += write_visualization(vis, out, args.what, names, args.scale, title)
            record["rows"] = len(vis.rows)
        elif args.what == "generator":
            written += _run_generator(args, model, policy, game, names, out, obs, title, record)
        else:
            fooling = get_visualizer("fooling", target=args.target, max_bound=args.max_bound,
                                     steps=args.attack_steps, action_names=names, progress=args.progress)
            vis = fooling.visualize(policy, None, obs)
            written += write_fooling(vis, out, args.scale, title)
            record.update(rows=len(vis.rows), summary=vis.extra["summary"])
        seconds = time.perf_counter() - start
        record.update(seconds=seconds, seconds_per_row=seconds / max(1, record.get("rows", 1)),
                      settings=dataclasses.asdict(args),
                      outputs=[str(p) for p in written])
        io.write_json(out / f"run_{args.what}.json", record)
    return record


def _run_generator(args: VisualizeSettings, model: Any, policy: Any, game: str, names: list[str], out: Path,
                   obs: np.ndarray | None, title: str, record: dict[str, Any]) -> list[Path]:
    """Train (or resume) the generator, then maximise the targets through it and in pixel space, side by side."""
    from rl_saliency.visualize.generator import GeneratorConfig, GeneratorVisualizer, train_generator

    units = bool(args.units)
    targets = args.units if units else args.actions
    gen_dir = Path(args.gen_dir) if args.gen_dir else out / "generator"
    config = GeneratorConfig(steps=args.gen_steps, batch_size=args.gen_batch, lr=args.gen_lr,
                             feature_weight=args.feature_weight, checkpoint_every=args.checkpoint_every,
                             seed=args.seed)
    train_obs = gather_observations(model, game, check_count(args.gen_obs, "--gen-obs", minimum=2), args.seed,
                                    args.every, gen_dir / "observations.npy", args.observations)
    with io.output_lock(gen_dir):
        prior = train_generator(policy, train_obs, gen_dir, config.check(), progress=args.progress)
    history = prior.history
    if len(history):
        tenth = max(1, len(history) // 10)
        record["generator"] = {"step": prior.step, "pixel_loss_first": float(history["pixel_loss"][:tenth].mean()),
                               "pixel_loss_last": float(history["pixel_loss"][-tenth:].mean()),
                               "feature_loss_last": float(history["feature_loss"][-tenth:].mean())}
    code_init = "observation" if args.init == "observation" else "mean"
    vis_gen = GeneratorVisualizer(prior, steps=args.code_steps, lr=args.code_lr, l2=args.code_l2, init=code_init,
                                  objective=args.objective, units=units, seed=args.seed, action_names=names,
                                  progress=args.progress).visualize(policy, targets, obs)
    vis_pix = get_visualizer("unit" if units else "action", **pixel_options(args, names)).visualize(
        policy, targets, obs)
    written = write_visualization(vis_gen, out, "generator", names, args.scale, f"{title} (generator prior)")
    written += write_visualization(vis_pix, out, "pixel", names, args.scale, f"{title} (pixel space)")
    labels = [f"{row_label(g, names)}\n(pixel: {_fmt(p['score_after'])})" for g, p in
              zip(vis_gen.rows, vis_pix.rows, strict=True)]
    written.append(sheets.save_png(sheets.sheet([vis_pix.frames, vis_gen.frames], labels,
                                                titles=["pixel space", "generator prior"], scale=args.scale,
                                                title=f"{title}: pixel space vs generator prior"),
                                   out / "sheet_pixel_vs_generator.png"))
    table = pd.concat([vis_pix.table.assign(space="pixel"), vis_gen.table.assign(space="generator")])
    written.append(io.write_csv(out / "scores_pixel_vs_generator.csv", table))
    record["rows"] = len(vis_gen.rows)
    return written
