"""``rl-saliency render --atari-head``: replay a human Atari-HEAD trial through the agent, the agent's saliency
(left) and the human's gaze (right) side by side.

Each recorded frame becomes the agent's observation exactly as in gaze evaluation (``envs/replay.py``: max over
the last two raw frames of each skip of 4, grey 84x84, stack of 4); the right panel shows the gaze samples of
the raw frames that observation covers, as dots over their blurred density.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from rl_saliency.errors import DataError, ModelLoadError, OptionError
from rl_saliency.render.video import (
    NormalisedWriter,
    VideoSink,
    check_render_options,
    draw_gaze,
    hud,
    overlay,
)
from rl_saliency.runs import check_method, model_game, open_agent
from rl_saliency.saliency.base import FRAME_SHAPE, upsample_to_frame
from rl_saliency.saliency.registry import get_method


def gaze_panel(frame: np.ndarray, samples: np.ndarray, scale: int = 4, alpha: float = 0.6) -> np.ndarray:
    """The frame enlarged with the blurred fixation density of ``samples`` overlaid and the samples as dots."""
    from rl_saliency.gaze.fixations import fixation_counts, gaze_density

    counts, _ = fixation_counts(samples, FRAME_SHAPE)
    density = gaze_density(counts)
    peak = float(density.max())
    panel = overlay(frame, density / peak if peak > 0 else density, scale=scale, alpha=alpha)
    return draw_gaze(panel, samples, scale)


def _stash(frames: Iterable[tuple[int, np.ndarray]], store: dict[int, np.ndarray]) -> Iterator[tuple[int, np.ndarray]]:
    """Pass frames through, keeping the latest RGB frame by index (the replay yields the observation ending on
    the frame it has just read)."""
    for index, rgb in frames:
        store.clear()
        store[index] = rgb
        yield index, rgb


def render_trial(model_path: str | Path, trial_path: str | Path, method: str = "gradient", steps: int = 300,
                 start: int = 0, stride: int = 1, out: str | Path = "trial.mp4", gif: bool = False, scale: int = 4,
                 fps: float = 30.0, alpha: float = 0.6, normalise: str = "running", game: str | None = None,
                 method_kwargs: dict[str, Any] | None = None, device: str = "auto", batch_size: int = 16,
                 progress: bool = True) -> dict[str, Any]:
    """Render ``steps`` observations of a trial, from its ``start``-th frame on, every ``stride``-th frame."""
    from rl_saliency.envs.registry import game_from_atari_head
    from rl_saliency.envs.replay import SPAN, replay_observations
    from rl_saliency.gaze.data import Trial
    from rl_saliency.gaze.fixations import observation_samples
    from rl_saliency.saliency.methods import policy_outputs

    check_render_options(steps, scale, fps, alpha, normalise)
    if not (isinstance(stride, int) and stride >= 1):
        raise OptionError(f"--stride must be an integer >= 1, got {stride!r}")
    if not (isinstance(start, int) and start >= 0):
        raise OptionError(f"--start must be an integer >= 0, got {start!r}")
    saliency_method = get_method(method, **(method_kwargs or {}))
    # a corrupt txt row is skipped and reported (as gaze-eval does without --strict): a video needs no exact table
    trial = Trial.open(trial_path, strict=False)
    trial_game = game_from_atari_head(trial.game).name if trial.game else None
    trained_game = model_game(model_path, game) if str(model_path).lower() != "none" else game
    game = trained_game or trial_game
    if trial_game and game and trial_game != game:
        raise ModelLoadError(f"trial {trial.name} is of {trial_game} (its folder {trial.files.txt.parent}) but "
                             f"model {model_path} plays {game}")
    gaze = trial.gaze
    first, last = int(gaze.frame_index[0]), int(gaze.frame_index[-1])
    wanted = [first + SPAN + start + k * stride for k in range(steps)]
    if wanted[0] > last:  # say so now rather than after decompressing the whole tar
        raise DataError(f"--start {start} is past the end of trial {trial.name}: its observations start at frame "
                        f"{first + SPAN} and its last frame is {last} ({trial.files.txt})")
    if str(model_path).lower() == "none":
        raise OptionError("render --atari-head needs a model zip (--model none is for gaze-eval's baselines)")
    agent = open_agent(model_path, game, device=device)
    policy, game = agent.policy, agent.game
    check_method(saliency_method, method, policy)
    latest: dict[int, np.ndarray] = {}
    # pool each step's two raw frames as the env backend the model was trained on did (as gaze-eval does)
    stream = replay_observations(_stash(trial.frames(max_index=wanted[-1]), latest), indices=wanted,
                                 pool=agent.pool)
    sink = VideoSink(out, fps, gif=gif)
    writer = NormalisedWriter(sink, normalise, lambda rgb, saliency01, extra: _compose(rgb, saliency01, *extra,
                                                                                        scale, alpha))
    started = time.time()
    bar = tqdm(total=steps, desc=f"render {trial.name} {method}", unit="frame", disable=not progress)

    def flush(batch: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
        obs = np.stack([o for _, o, _ in batch])
        maps = saliency_method.attribute(policy, obs)
        with torch.no_grad():
            logits, values = policy_outputs(policy, policy.obs_to_tensor(obs)[0].float())
        for (index, _, rgb), saliency, action, value in zip(batch, maps, logits.argmax(1).tolist(), values.tolist(),
                                                            strict=True):
            # the human's action at this frame, from the txt (-1 where null)
            human = int(gaze.action[gaze.frame_index.searchsorted(index)]) if gaze.has(index) else -1
            text = f"frame {index}  agent {action} (value {value:+.2f})  human {human}  [{method} | gaze]"
            right = gaze_panel(rgb, observation_samples(gaze, index), scale=scale, alpha=alpha)
            frame_map = upsample_to_frame(saliency, FRAME_SHAPE)
            writer.add(rgb, frame_map, (right, text))
            bar.update(1)

    try:
        batch: list[tuple[int, np.ndarray, np.ndarray]] = []
        for index, obs in stream:
            batch.append((index, obs, latest[index]))
            if len(batch) == batch_size:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
        writer.finish()
        if sink.n_frames == 0:
            problems = "".join(f"; {issue}" for issue in trial.issues)
            raise DataError(f"trial {trial.name} has no frames from frame {wanted[0]} on ({trial_path}){problems}")
        paths = sink.close()
    except BaseException:
        sink.abort()
        raise
    finally:
        bar.close()
    elapsed = time.time() - started
    return {"paths": [str(p) for p in paths], "frames": sink.n_frames, "codec": sink.codec,
            "fps": sink.n_frames / max(elapsed, 1e-9), "seconds": elapsed, "trial": trial.name, "game": game,
            "method": method, "issues": trial.issues}


def _compose(rgb: np.ndarray, saliency01: np.ndarray, right: np.ndarray, text: str, scale: int,
             alpha: float) -> np.ndarray:
    left = overlay(rgb, saliency01, scale=scale, alpha=alpha)
    panels = np.concatenate([left, right], axis=1)
    return np.concatenate([hud(panels.shape[1], text, scale), panels], axis=0)
