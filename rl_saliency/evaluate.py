"""``rl-saliency evaluate``: play whole games (no life-loss ends, raw scores) and summarise the scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rl_saliency import io
from rl_saliency.envs.atari import DEFAULT_MAX_FRAMES
from rl_saliency.errors import check_count
from rl_saliency.runs import model_path as resolve_model_path
from rl_saliency.runs import open_agent


def evaluate(model_path: str | Path, game: str | None = None, episodes: int = 10, seed: int = 0,
             out: str | Path | None = None, backend: str | None = None, deterministic: bool = False,
             n_envs: int | None = None, max_frames: int = DEFAULT_MAX_FRAMES, device: str = "auto",
             progress: bool = True) -> dict[str, float]:
    """Play ``episodes`` whole games; returns mean/std/min/max of score and length (emulator frames).
    ``backend``: the env backend (default: the one the model was trained on; ``sb3`` without a run folder)."""
    model_path = resolve_model_path(model_path)
    episodes = check_count(episodes, "--episodes")
    n_envs = check_count(n_envs if n_envs is not None else min(episodes, 4), "--n-envs")
    max_frames = check_count(max_frames, "--max-frames")
    agent = open_agent(model_path, game, device=device)
    game, model = agent.game, agent.model
    venv = agent.make_env(n_envs, seed=seed, backend=backend, max_frames=max_frames)
    # Each env plays its share of the games so that the sample is not biased to short games.
    targets = np.array([(episodes + i) // n_envs for i in range(n_envs)])
    counts = np.zeros(n_envs, dtype=int)
    records: list[dict[str, Any]] = []
    obs = venv.reset()
    bar = tqdm(total=episodes, unit="game", desc=f"evaluate {game}", disable=not progress)
    while (counts < targets).any():
        actions, _ = model.predict(obs, deterministic=deterministic)
        obs, _, _, infos = venv.step(actions)
        for i, info in enumerate(infos):
            if "episode" in info and counts[i] < targets[i]:
                records.append({"env": i, "score": info["episode"]["r"], "length": info["episode"]["l"]})
                counts[i] += 1
                bar.update(1)
    bar.close()
    venv.close()
    table = pd.DataFrame(records)
    summary = {"game": game, "episodes": len(table), "deterministic": deterministic, "model": str(model_path)}
    for column in ("score", "length"):
        values = table[column].to_numpy(dtype=float)
        summary.update({f"{column}_mean": float(values.mean()), f"{column}_std": float(values.std()),
                        f"{column}_min": float(values.min()), f"{column}_max": float(values.max())})
    if out:
        out = Path(out)
        with io.output_lock(out):  # another writer of this folder is refused, a dead one's leftovers removed
            io.write_csv(out / "episodes.csv", table)
            from rl_saliency.render.plots import agent_label, score_histogram

            score_histogram(table["score"], out / "scores.png", game, agent_label(model_path), deterministic)
            io.write_json(out / "evaluation.json", summary)  # last: marks the evaluation done
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    return (f"{summary['game']}: {summary['episodes']} games\n"
            f"  score  mean {summary['score_mean']:.1f}  std {summary['score_std']:.1f}  "
            f"min {summary['score_min']:.0f}  max {summary['score_max']:.0f}\n"
            f"  length mean {summary['length_mean']:.0f}  std {summary['length_std']:.0f}  "
            f"min {summary['length_min']:.0f}  max {summary['length_max']:.0f} (emulator frames)")
