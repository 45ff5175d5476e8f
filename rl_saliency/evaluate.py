"""``rl-saliency evaluate``: play whole games (no life-loss ends, raw scores) and summarise the scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rl_saliency import io, models
from rl_saliency.envs import make_atari_vec_env, resolve_game
from rl_saliency.envs.atari import DEFAULT_MAX_FRAMES
from rl_saliency.errors import SpecError, check_count
from rl_saliency.models import check_model_fits, load_model, read_model_data, wrap_env_for_model


def run_config(model_path: str | Path) -> dict[str, Any] | None:
    """The ``config.yaml`` of the run a model belongs to (model.zip or checkpoints/ckpt_*.zip), if any; read and
    checked in one place for every command (``rl_saliency.models.run_config``)."""
    return models.run_config(model_path)


def game_for_model(model_path: str | Path, game: str | None) -> str:
    """``--game`` when given, else the game of the model's run folder. A missing or unreadable model file is
    reported as such first (not as a missing config.yaml)."""
    read_model_data(model_path)
    if game:
        return resolve_game(game).name
    config = run_config(model_path)
    if config and config.get("game"):
        return config["game"]
    raise SpecError(f"no run config.yaml next to {model_path} tells the game; pass --game")


def evaluate(model_path: str | Path, game: str | None = None, episodes: int = 10, seed: int = 0,
             out: str | Path | None = None, backend: str = "ale", deterministic: bool = False,
             n_envs: int | None = None, max_frames: int = DEFAULT_MAX_FRAMES, device: str = "auto",
             progress: bool = True) -> dict[str, float]:
    """Play ``episodes`` whole games; returns mean/std/min/max of score and length (emulator frames)."""
    from rl_saliency.agents.zoo import resolve_model

    model_path = resolve_model(model_path)
    episodes = check_count(episodes, "--episodes")
    n_envs = check_count(n_envs if n_envs is not None else min(episodes, 4), "--n-envs")
    max_frames = check_count(max_frames, "--max-frames")
    game = game_for_model(model_path, game)
    model = load_model(model_path, device=device)
    venv = make_atari_vec_env(game, n_envs, seed=seed, backend=backend, training=False, max_frames=max_frames)
    venv = wrap_env_for_model(model, venv)
    check_model_fits(model, venv.observation_space, venv.action_space, what=f"game {game!r}")
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
