"""``rl-saliency report``: one self-contained HTML page for an output folder.

Reads what the other commands wrote, in the folder and two levels below it: a training run (``config.yaml``,
``metrics.csv``), an evaluation (``evaluation.json``), a gaze evaluation (``run.json`` + ``per_game.csv``), sanity
checks (``sanity.csv``), a trust table (``trust.csv``), a sweep (``grid.yaml`` + ``tasks/``) and videos
(``*.mp4``, ``*.gif``). The page says what was run (the equivalent command, agent, game, budget), the scores,
the gaze table and its charts, a strip of example frames per method (the agent's saliency | the human gaze,
computed now from the model and the trial when both are still there), the videos and the sanity/trust plots.

No network: the CSS is inline, the PNGs are embedded as data URIs, videos (and GIFs over 2 MB) are linked
relative to the page. A small inline script marks any image that fails to load and records it, with any
script error, on the ``<html>`` element (``data-images``, ``data-images-ok``, ``data-errors``).
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
import os
import re
import shlex
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rl_saliency import __version__, io
from rl_saliency.errors import DataError
from rl_saliency.render import plots

REPORT_FILE = "report.html"
SKIP_DIRS = {"checkpoints", "trials", "methods", "maps", "logs", "failed", "plots", "tensorboard", "tasks"}
MAX_EMBED_GIF = 2 * 1024 * 1024
KIND_ORDER = ("sweep", "run", "evaluate", "gaze", "sanity", "trust", "video")
LOOKED_FOR = ("config.yaml (a training run), evaluation.json (evaluate), run.json + per_game.csv (gaze-eval), "
              "sanity.csv (sanity), trust.csv (trust), grid.yaml + tasks/ (sweep), *.mp4 / *.gif (render)")


@dataclass
class Section:
    """One part of the page: what kind of output, where, and its HTML."""

    kind: str
    folder: Path
    title: str
    body: list[str] = field(default_factory=list)
    agent: str | None = None
    game: str | None = None


# ------------------------------------------------------------------------------------------------ HTML helpers

def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def img(source: Path | bytes, alt: str, caption: str | None = None, page_dir: Path | None = None) -> str:
    """A figure: a PNG (path or bytes) embedded as a data URI; a large GIF linked relative to the page."""
    if isinstance(source, Path):
        if source.suffix.lower() == ".gif" and source.stat().st_size > MAX_EMBED_GIF and page_dir is not None:
            src = esc(relative(source, page_dir))
        else:
            mime = "image/gif" if source.suffix.lower() == ".gif" else "image/png"
            src = data_uri(source.read_bytes(), mime)
    else:
        src = data_uri(source)
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{src}" alt="{esc(alt)}">{cap}</figure>'


def relative(path: Path, page_dir: Path) -> str:
    """``path`` as a link from the page's folder (POSIX separators)."""
    try:
        return Path(os.path.relpath(path.resolve(), page_dir.resolve())).as_posix()
    except ValueError:  # another drive
        return path.resolve().as_uri()


def kv_table(rows: dict[str, Any]) -> str:
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows.items()
                    if v is not None and v != "")
    return f'<table class="kv">{cells}</table>'


def command_block(args: list[str], note: str = "equivalent command, rebuilt from the saved settings") -> str:
    text = " ".join(shlex.quote(str(a)) for a in args)
    return f'<p class="note">{esc(note)}:</p><pre><code>{esc(text)}</code></pre>'


def frame_table(table: pd.DataFrame, classes: dict[int, str] | None = None, max_rows: int = 60) -> str:
    """A DataFrame as an HTML table (numbers to 4 significant digits); ``classes``: row position -> CSS class."""
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    rows = []
    for i, (_, row) in enumerate(table.head(max_rows).iterrows()):
        cells = "".join(f"<td>{esc(_fmt(v))}</td>" for v in row)
        cls = f' class="{classes[i]}"' if classes and i in classes else ""
        rows.append(f"<tr{cls}>{cells}</tr>")
    more = f'<p class="note">first {max_rows} of {len(table)} rows</p>' if len(table) > max_rows else ""
    return f'<div class="scroll"><table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}' \
           f'</tbody></table></div>{more}'


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "-" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def markdown_to_html(text: str) -> str:
    """The little Markdown the commands write (headings, pipe tables, paragraphs, bold) as HTML."""
    out, table, paragraph = [], [], []

    def inline(s: str) -> str:
        return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", esc(s))

    def flush() -> None:
        if table:
            rows = [r for r in table if not re.fullmatch(r"\|?[\s:|-]+\|?", r)]
            cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
            head = "".join(f"<th>{inline(c)}</th>" for c in cells[0])
            body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in cells[1:])
            out.append(f'<div class="scroll"><table class="data"><thead><tr>{head}</tr></thead><tbody>{body}'
                       f'</tbody></table></div>')
            table.clear()
        if paragraph:
            out.append(f"<p>{inline(' '.join(paragraph))}</p>")
            paragraph.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            if paragraph:
                flush()
            table.append(line)
        elif line.startswith("#"):
            flush()
            level = min(len(line) - len(line.lstrip("#")) + 2, 6)
            out.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
        elif not line.strip():
            flush()
        else:
            if table:
                flush()
            paragraph.append(line.strip())
    flush()
    return "\n".join(out)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _figure_bytes(draw: Callable[[Path], Any]) -> bytes:
    """Run a plotting function that writes a PNG to a path, and return the PNG's bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "figure.png"
        draw(path)
        return path.read_bytes()


# ------------------------------------------------------------------------------------------------ sections

def run_section(folder: Path) -> Section | None:
    """A training run: its settings, the command, the learning curve."""
    config = io.read_yaml(folder / "config.yaml", "run config", DataError) if (folder / "config.yaml").is_file() \
        else None
    if not isinstance(config, dict) or "game" not in config or "spec" not in config:
        return None
    spec = config.get("spec") or {}
    agent = spec.get("name") or folder.name
    metrics = _read_metrics(folder / "metrics.csv")
    steps_done = None
    if metrics is not None and "time/total_timesteps" in metrics:
        steps_done = int(pd.to_numeric(metrics["time/total_timesteps"], errors="coerce").max())
    trained = (folder / "model.zip").exists()
    section = Section("run", folder, f"Training run: {agent} on {config['game']}", agent=agent, game=config["game"])
    extractor = spec.get("features_extractor") or "NatureCNN"
    section.body.append(kv_table({
        "agent": f"{agent} ({spec.get('algo', 'ppo').upper()}, extractor {extractor})",
        "game": f"{config['game']} ({config.get('gym_id', '')})",
        "budget": f"{int(config.get('timesteps', 0)):,} agent steps",
        "progress": ("finished: model.zip" if trained else "not finished")
        + (f", {steps_done:,} steps logged" if steps_done else ""),
        "seed": config.get("seed"), "envs": f"{config.get('n_envs')} ({config.get('backend')} backend)",
        "device": config.get("device"), "TensorBoard": config.get("tensorboard"),
        "hyperparameters": ", ".join(f"{k}={v}" for k, v in (spec.get("hyperparams") or {}).items())}))
    args = ["rl-saliency", "train", "--agent", config.get("spec_path") or agent, "--game", config["game"],
            "--timesteps", config.get("timesteps"), "--seed", config.get("seed"), "--n-envs", config.get("n_envs"),
            "--backend", config.get("backend"), "--out", folder]
    if config.get("tensorboard"):
        args += ["--tensorboard", config["tensorboard"]]
    section.body.append(command_block(args))
    if metrics is not None and "rollout/ep_rew_mean" in metrics:
        png = _figure_bytes(lambda p: plots.learning_curve(metrics, p, config["game"], agent))
        section.body.append(img(png, f"learning curve of {agent}", "episode score during training (SB3's "
                                "rollout/ep_rew_mean: mean of the last 100 episodes) against agent steps"))
    return section


def _read_metrics(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path) if path.is_file() else None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None


def evaluate_section(folder: Path) -> Section | None:
    """``evaluate``: the scores and their histogram."""
    summary = _read_json(folder / "evaluation.json")
    if not isinstance(summary, dict) or "score_mean" not in summary:
        return None
    agent = plots.agent_label(summary.get("model"))
    game = summary.get("game", "?")
    section = Section("evaluate", folder, f"Scores: {agent} on {game}", agent=agent, game=game)
    section.body.append(kv_table({
        "model": summary.get("model"), "games played": summary.get("episodes"),
        "actions": "greedy" if summary.get("deterministic") else "sampled",
        "score": f"mean {summary['score_mean']:.1f}, std {summary['score_std']:.1f}, min {summary['score_min']:.0f}, "
                 f"max {summary['score_max']:.0f}",
        "length (emulator frames)": f"mean {summary['length_mean']:.0f}, min {summary['length_min']:.0f}, "
                                    f"max {summary['length_max']:.0f}"}))
    args = ["rl-saliency", "evaluate", "--model", summary.get("model"), "--game", game, "--episodes",
            summary.get("episodes"), "--out", folder]
    section.body.append(command_block(args + (["--deterministic"] if summary.get("deterministic") else [])))
    if (folder / "scores.png").is_file():
        section.body.append(img(folder / "scores.png", "histogram of whole-game scores"))
    elif (folder / "episodes.csv").is_file():
        episodes = pd.read_csv(folder / "episodes.csv")
        png = _figure_bytes(lambda p: plots.score_histogram(episodes["score"], p, game, agent,
                                                            bool(summary.get("deterministic"))))
        section.body.append(img(png, "histogram of whole-game scores"))
    return section


def gaze_section(folder: Path, examples: int = 4) -> Section | None:
    """``gaze-eval``: settings, the table, the charts, example frames per method."""
    run = _read_json(folder / "run.json")
    if not isinstance(run, dict) or not (folder / "per_game.csv").is_file():
        return None
    per_game = pd.read_csv(folder / "per_game.csv")
    agent = plots.agent_label(run.get("model"))
    games = sorted({str(g) for g in per_game.get("game", pd.Series(dtype=str)).dropna()})
    section = Section("gaze", folder, f"Saliency vs human gaze: {agent} on {', '.join(games) or '?'}", agent=agent,
                      game=games[0] if games else None)
    methods = [m for m in run.get("methods", []) if m not in plots.BASELINES]
    section.body.append(kv_table({
        "model": run.get("model") or "none (baselines only)", "methods": ", ".join(methods) or "-",
        "baselines": ", ".join(plots.BASELINES), "protocol": run.get("protocol_label"),
        "frames per trial": run.get("max_frames") or "all", "Atari-HEAD data": run.get("atari_head"),
        "frame pooling": run.get("pool"), "seed": run.get("seed")}))
    args = ["rl-saliency", "gaze-eval", "--model", run.get("model") or "none"]
    args += ["--method", *methods] if methods else []
    args += ["--atari-head", run.get("atari_head"), "--out", folder]
    if run.get("max_frames"):
        args += ["--max-frames", run["max_frames"]]
    section.body.append(command_block(args))
    per_trial = pd.read_csv(folder / "per_trial.csv") if (folder / "per_trial.csv").is_file() else None
    section.body.append("<h3>Table</h3>" + gaze_table_html(per_game, per_trial))
    charts = sorted((folder / plots.PLOTS_DIR).glob("*.png"))
    if not charts and (folder / "trials").is_dir():  # written before gaze-eval drew charts: draw them now
        with tempfile.TemporaryDirectory() as tmp:
            for path in _copy_tables(folder, Path(tmp)):
                section.body.append(img(path, f"gaze chart {path.stem}"))
    for path in charts:
        what = "per-metric bars with 95 % CIs" if path.stem.startswith("metrics") else "NSS over the trial"
        section.body.append(img(path, f"{what}: {path.stem}"))
    if examples and methods and run.get("model"):
        section.body.append(example_frames_html(folder, run, methods, examples))
    return section


def _copy_tables(folder: Path, tmp: Path) -> list[Path]:
    """Draw a gaze folder's charts into ``tmp`` (the folder itself is left as it is)."""
    for name in ("run.json", "per_trial.csv"):
        if (folder / name).exists():
            (tmp / name).write_bytes((folder / name).read_bytes())
    (tmp / "trials").symlink_to((folder / "trials").resolve(), target_is_directory=True)
    return plots.gaze_plots(tmp)


def gaze_table_html(per_game: pd.DataFrame, per_trial: pd.DataFrame | None = None) -> str:
    """Mean ± std per game, method and metric (over observations when every game has one trial and ``per_trial``
    is given, else over trial means); the agent's methods first, baselines greyed and labelled."""
    from rl_saliency.gaze.metrics import METRICS

    single = per_trial is not None and len(per_trial) and "trials" in per_game and (per_game["trials"] == 1).all()
    spread = "over observations (one trial per game)" if single else "over trial means"
    if single:
        per_game = per_trial.assign(trials=1)
    metrics = [m for m in METRICS if f"{m}_mean" in per_game]
    rows, classes = [], {}
    for game, group in per_game.groupby("game", sort=True):
        order = plots._method_order(list(group["method"]))
        for method in order:
            r = group[group["method"] == method].iloc[0]
            base = method in plots.BASELINES
            row = {"game": game, "method": method + (" (baseline)" if base else ""),
                   "trials": int(r.get("trials", 1)), "observations": int(r.get("observations", 0))}
            for m in metrics:
                mean, std = r[f"{m}_mean"], r.get(f"{m}_std", math.nan)
                row[plots.METRIC_LABELS.get(m, m) + (" ↓" if m in plots.LOWER_IS_BETTER else " ↑")] = (
                    "-" if not np.isfinite(mean) else f"{mean:.3f} ± {std:.3f}")
            if base:
                classes[len(rows)] = "baseline"
            rows.append(row)
    note = (f'<p class="note">mean ± std {spread}; ↑ higher is better, ↓ lower is better; grey rows are '
            f'baselines.</p>')
    return frame_table(pd.DataFrame(rows), classes) + note


def example_frames_html(folder: Path, run: dict[str, Any], methods: list[str], n_frames: int) -> str:
    """The strip of example frames per method, or a note saying why there is none."""
    try:
        strips = example_frames(folder, run, methods, n_frames)
    except Exception as err:  # noqa: BLE001 - the rest of the report stands without its examples
        return f'<p class="note">No example frames: {esc(type(err).__name__)}: {esc(err)}</p>'
    if not strips:
        return '<p class="note">No example frames: the model or the trial files are no longer where run.json ' \
               'says.</p>'
    parts = ["<h3>Example frames: the agent's saliency | where the human looked</h3>"]
    for method, (png, caption) in strips.items():
        parts.append(img(png, f"example frames, {method}", f"{method}: {caption}"))
    return "\n".join(parts)


def example_frames(folder: Path, run: dict[str, Any], methods: list[str], n_frames: int = 4
                   ) -> dict[str, tuple[bytes, str]]:
    """For each method, a PNG strip of ``n_frames`` observations of the first scored trial: the frame with the
    agent's map (each scaled from its own minimum to its maximum) | the same frame with the human gaze of the frames
    the observation covers (dots over their blurred density). Empty when the model or the trial files are gone."""
    import cv2

    from rl_saliency.envs.replay import SPAN, replay_observations
    from rl_saliency.gaze.data import Trial
    from rl_saliency.gaze.fixations import observation_samples
    from rl_saliency.render.replay import gaze_panel
    from rl_saliency.render.tensorboard import min_max
    from rl_saliency.render.video import overlay
    from rl_saliency.runs import open_agent
    from rl_saliency.saliency import get_method
    from rl_saliency.saliency.base import FRAME_SHAPE, upsample_to_frame

    summaries = [s for s in (_read_json(p) for p in sorted((folder / "trials").glob("*/*.json")))
                 if isinstance(s, dict) and s.get("finished")]
    model = run.get("model")
    if not summaries or not model or not Path(model).is_file():
        return {}
    summary = summaries[0]
    stem = Path(summary["txt"]).with_suffix("")
    if not Path(summary["txt"]).is_file() or not Path(summary["tar"]).is_file():
        return {}
    trial = Trial.open(stem, strict=False)
    gaze = trial.gaze
    first, last = int(gaze.frame_index[0]), int(gaze.frame_index[-1])
    if run.get("max_frames"):
        last = min(last, first + int(run["max_frames"]) - 1)
    start = first + SPAN
    wanted = sorted({int(round(x)) for x in np.linspace(start, last, n_frames + 2)[1:-1]}) if last > start else []
    wanted = [i for i in wanted if gaze.has(i)]
    if not wanted:
        return {}
    policy = open_agent(model, run.get("game")).policy
    frames: dict[int, np.ndarray] = {}
    observations = dict(replay_observations(_keep(trial.frames(max_index=wanted[-1]), frames, set(wanted)),
                                            indices=wanted, pool=run.get("pool") or "rgb"))
    indices = [i for i in wanted if i in observations and i in frames]
    if not indices:
        return {}
    obs = np.stack([observations[i] for i in indices])
    gaze_panels = [gaze_panel(frames[i], observation_samples(gaze, i), scale=1) for i in indices]
    out = {}
    for method in methods:
        maps = upsample_to_frame(get_method(method).attribute(policy, obs), FRAME_SHAPE)
        pairs = []
        for i, saliency, right in zip(indices, maps, gaze_panels, strict=True):
            left = overlay(frames[i], min_max(saliency), scale=1)
            pair = np.concatenate([left, np.full((left.shape[0], 2, 3), 255, np.uint8), right], axis=1)
            cv2.putText(pair, f"frame {i}", (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
            pairs += [pair, np.full((pair.shape[0], 8, 3), 255, np.uint8)]
        strip = np.concatenate(pairs[:-1], axis=1)
        ok, png = cv2.imencode(".png", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
        if ok:
            out[method] = (png.tobytes(), f"trial {trial.name}, frames {', '.join(map(str, indices))}: left of each "
                                          f"pair the agent's map (its own min to max), right the human gaze")
    return out


def _keep(frames: Iterator[tuple[int, np.ndarray]], store: dict[int, np.ndarray], wanted: set[int]
          ) -> Iterator[tuple[int, np.ndarray]]:
    """Pass frames through, keeping the RGB frames of ``wanted`` indices."""
    for index, rgb in frames:
        if index in wanted:
            store[index] = rgb
        yield index, rgb


def sanity_section(folder: Path) -> Section | None:
    """``sanity``: the cascading-randomisation plot and each method's similarity after the last step."""
    if not (folder / "sanity.csv").is_file():
        return None
    settings = _read_json(folder / "sanity.json") or {}
    agent = plots.agent_label(settings.get("model")) if settings.get("model") else folder.parent.name
    game = settings.get("game")
    section = Section("sanity", folder, f"Sanity checks (cascading randomisation): {agent}"
                      + (f" on {game}" if game else ""), agent=agent, game=game)
    table = pd.read_csv(folder / "sanity.csv")
    methods = list(dict.fromkeys(table.get("method", pd.Series(dtype=str))))
    if settings:
        args = ["rl-saliency", "sanity", "--model", settings.get("model"), "--methods", *methods, "--n-obs",
                settings.get("n_obs"), "--out", folder]
        section.body.append(command_block(args + (["--game", game] if game else [])))
    if (folder / "sanity.png").is_file():
        section.body.append(img(folder / "sanity.png", "cascading randomisation", "similarity of each method's "
                                "maps to the trained network's as layers are randomised from the top; a method "
                                "that explains the model falls towards 0"))
    if "step" in table:
        last = table.sort_values("step").groupby("method", sort=False).tail(1)
        section.body.append("<h3>After randomising every layer</h3>" + frame_table(last))
    return section


def trust_section(folder: Path) -> Section | None:
    """``trust``: its Markdown table and deletion/insertion curves."""
    if not (folder / "trust.csv").is_file():
        return None
    table = pd.read_csv(folder / "trust.csv")
    agent = str(table["agent"].iloc[0]) if "agent" in table and len(table) else folder.name
    game = str(table["game"].iloc[0]) if "game" in table and len(table) else None
    section = Section("trust", folder, f"Trust: {agent}" + (f" on {game}" if game else ""), agent=agent, game=game)
    if (folder / "trust.md").is_file():
        section.body.append(markdown_to_html((folder / "trust.md").read_text()))
    else:
        section.body.append(frame_table(table))
    if (folder / "curves.png").is_file():
        section.body.append(img(folder / "curves.png", "deletion and insertion curves"))
    return section


def sweep_section(folder: Path) -> Section | None:
    """A sweep: the grid, how many cells finished, the paper-layout table and its plots."""
    if not (folder / "grid.yaml").is_file() or not (folder / "tasks").is_dir():
        return None
    grid = io.read_yaml(folder / "grid.yaml", "sweep grid", DataError) or {}
    finished = len(list((folder / "tasks").glob("*/result.json")))
    games, agents = grid.get("games") or [], grid.get("agents") or []
    seeds = grid.get("seeds") or []
    cells = len(games) * len(agents) * (len(seeds) if isinstance(seeds, list) else int(seeds or 1))
    section = Section("sweep", folder, f"Sweep: {grid.get('name') or folder.name}")
    section.body.append(kv_table({"grid": grid.get("source"), "games": ", ".join(map(str, games)),
                                  "agents": ", ".join(map(str, agents)), "seeds": seeds,
                                  "cells finished": f"{finished} of {cells}" if cells else finished,
                                  "training": grid.get("train")}))
    section.body.append(command_block(["rl-saliency", "sweep", "--grid", grid.get("source") or "GRID.yaml",
                                       "--out", folder]))
    if (folder / "table.md").is_file():
        section.body.append(markdown_to_html((folder / "table.md").read_text()))
    for name in ("score.png", "nss.png"):
        if (folder / name).is_file():
            section.body.append(img(folder / name, f"sweep {name[:-4]} per game and agent",
                                    "mean over seeds (bar), std (whisker), each seed (dot)"))
    return section


def video_section(folder: Path, videos: list[Path], page_dir: Path) -> Section:
    section = Section("video", folder, "Videos")
    for path in videos:
        rel = esc(relative(path, page_dir))
        if path.suffix.lower() == ".mp4":
            section.body.append(f'<figure><video controls muted preload="metadata" src="{rel}"></video>'
                                f'<figcaption><a href="{rel}">{esc(path.name)}</a></figcaption></figure>')
        else:
            section.body.append(img(path, path.name, path.name, page_dir=page_dir))
    return section


# ------------------------------------------------------------------------------------------------ the page

def _folders(root: Path, depth: int = 2) -> Iterator[Path]:
    """``root`` and its subfolders down to ``depth`` levels, skipping bulky ones (trials, checkpoints, ...)."""
    yield root
    if depth == 0:
        return
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return
    for child in children:
        if child.name.startswith(".") or child.name in SKIP_DIRS:
            continue
        yield from _folders(child, depth - 1)


def find_sections(root: Path, page_dir: Path, examples: int = 4) -> list[Section]:
    """Every output under ``root`` this page knows, in a fixed order of kinds."""
    sections: list[Section] = []
    videos: list[Path] = []
    for folder in _folders(root):
        for finder in (sweep_section, run_section, evaluate_section, sanity_section, trust_section):
            found = finder(folder)
            if found is not None:
                sections.append(found)
        found = gaze_section(folder, examples)
        if found is not None:
            sections.append(found)
        videos += sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".mp4", ".gif")
                         and not p.name.startswith("."))
    if videos:
        sections.append(video_section(root, videos, page_dir))
    return sorted(sections, key=lambda s: KIND_ORDER.index(s.kind))


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1d2330;color:#fff;padding:18px 32px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#c6cbd6;font-size:13px}nav{padding:8px 32px;background:#e8ebf0;font-size:14px}
nav a{margin-right:16px;color:#1d4ed8;text-decoration:none}main{padding:8px 32px 40px;max-width:1600px}
section{background:#fff;border-radius:8px;padding:14px 22px;margin:18px 0;box-shadow:0 1px 3px rgba(0,0,0,.12)}
h2{font-size:18px;margin:4px 0 10px}h3{font-size:15px;margin:16px 0 6px}.where{color:#6b7280;font-size:12px}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px;border-bottom:1px solid #e5e7eb;
text-align:left;vertical-align:top}table.data th{background:#f1f3f6;position:sticky;top:0}
table.kv th{color:#4b5563;font-weight:600;white-space:nowrap}tr.baseline td{color:#6b7280;font-style:italic;
background:#fafafa}.scroll{overflow-x:auto}pre{background:#f1f3f6;padding:8px 12px;border-radius:6px;
overflow-x:auto;font-size:12.5px}.note{color:#6b7280;font-size:12.5px;margin:6px 0}
figure{margin:12px 0}figure img,figure video{max-width:100%;height:auto;border:1px solid #e5e7eb}video{width:640px}
figcaption{color:#4b5563;font-size:12.5px;margin-top:4px}.broken{outline:3px solid #dc2626}
"""

# first in <head>: records script errors; at load: records whether every image decoded, outlines those that did not
CHECK_SCRIPT = """<script>
window.onerror=function(m){var e=document.documentElement;e.dataset.errors=(e.dataset.errors||"")+m+"\\n";};
window.addEventListener("load",function(){var imgs=document.images,ok=0;for(var i=0;i<imgs.length;i++){
var good=imgs[i].complete&&imgs[i].naturalWidth>0;if(good){ok++;}else{imgs[i].classList.add("broken");}}
var e=document.documentElement;e.dataset.images=imgs.length;e.dataset.imagesOk=ok;});
</script>"""


def render_page(root: Path, sections: list[Section]) -> str:
    agents = sorted({s.agent for s in sections if s.agent and s.agent != "baselines only"})
    games = sorted({s.game for s in sections if s.game})
    subtitle = " · ".join(x for x in (", ".join(agents), ", ".join(games)) if x)
    nav = "".join(f'<a href="#s{i}">{esc(s.title.split(":")[0])}</a>' for i, s in enumerate(sections))
    body = []
    for i, s in enumerate(sections):
        where = relative(s.folder, root) if s.folder != root else "."
        body.append(f'<section id="s{i}"><h2>{esc(s.title)}</h2><p class="where">{esc(where)}</p>'
                    + "\n".join(s.body) + "</section>")
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{CHECK_SCRIPT}'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>rl-saliency report: {esc(root.name)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>rl-saliency report: {esc(root.name)}</h1><p>{esc(subtitle)}</p>"
            f"<p>{esc(root.resolve())} · made {stamp} by rl-saliency {esc(__version__)}</p></header>"
            f"<nav>{nav}</nav><main>{''.join(body)}</main></body></html>")


def build_report(folder: str | Path, out: str | Path | None = None, examples: int = 4) -> Path:
    """Write the report page for ``folder`` (default ``<folder>/report.html``); returns its path."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"report: {root} is not a folder")
    page = Path(out) if out else root / REPORT_FILE
    sections = find_sections(root, page.parent, examples)
    if not sections:
        raise DataError(f"nothing to report in {root}: looked for {LOOKED_FOR} in it and two levels below")
    io.write_text(page, render_page(root, sections))
    return page
