"""Fixation maps of replayed observations: where the player looked during the raw frames an observation covers.

The observation at raw frame ``i`` covers raw frames ``i, i-1, i-4, i-5, i-8, i-9, i-12, i-13``; its fixation
map counts the union of their gaze samples per pixel, at the frame's 210x160 or at the agent's 84x84.
A sample at (x, y) falls on the pixel that contains it (floor); off-screen samples are left out of the maps
and counted. KL, CC and SIM use the counts blurred with a Gaussian (sigma 5 px at 210x160, 2 px at 84x84).

Two options exist only to measure the FLS reference code's quirks (docs/fidelity.md), never set by a
preset: ``rounding="round"`` (the reference rounds to the nearest pixel, half to even, and drops what
rounds off the frame) and ``gaze_offset=-1`` (the reference reads the gaze of one frame earlier).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from rl_saliency.envs.frames import FRAME_SHAPE, MAP_SHAPE, on_frame
from rl_saliency.envs.replay import COVERED_OFFSETS, covered_frames
from rl_saliency.gaze.data import GazeTable

SIGMA = {FRAME_SHAPE: 5.0, MAP_SHAPE: 2.0}
ROUNDINGS = ("floor", "round")
BORDERS = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101}  # reflect: cv2's default


def _to_pixels(x: np.ndarray, y: np.ndarray, shape: tuple[int, int],
               rounding: str = "floor") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns at ``shape`` of samples at (x, y) in 160x210 frame pixels, and which are on the map."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    fy, fx = y * shape[0] / FRAME_SHAPE[0], x * shape[1] / FRAME_SHAPE[1]
    if rounding == "round":  # the FLS reference: nearest pixel (half to even), then drop what is off the map
        rows, cols = np.rint(fy), np.rint(fx)
        onscreen = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    else:
        onscreen = on_frame(x, y)
        rows = np.minimum(np.floor(fy), shape[0] - 1)  # min: guard float rounding at the far edge
        cols = np.minimum(np.floor(fx), shape[1] - 1)
    return np.where(onscreen, rows, 0).astype(np.int64), np.where(onscreen, cols, 0).astype(np.int64), onscreen


def fixation_counts(xy: np.ndarray, shape: tuple[int, int] = FRAME_SHAPE,
                    rounding: str = "floor") -> tuple[np.ndarray, int]:
    """Count gaze samples ``(m, 2)`` (x, y in 160x210 frame pixels) per pixel of a ``shape`` map.
    Returns the counts (float32) and how many samples fell off-screen."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    rows, cols, onscreen = _to_pixels(xy[:, 0], xy[:, 1], shape, rounding)
    counts = np.bincount(rows[onscreen] * shape[1] + cols[onscreen], minlength=shape[0] * shape[1])
    return counts.astype(np.float32).reshape(shape), int((~onscreen).sum())


def observation_samples(gaze: GazeTable, index: int) -> np.ndarray:
    """All gaze samples of the raw frames the observation at ``index`` covers."""
    parts = [gaze.samples(i) for i in covered_frames(index)]
    return np.concatenate(parts) if parts else np.empty((0, 2), np.float32)


def _pixels(gaze: GazeTable, shape: tuple[int, int], rounding: str = "floor") -> np.ndarray:
    """Linear pixel index at ``shape`` of every gaze sample of the trial (-1 off-screen), computed once."""
    cache = gaze.pixel_cache
    key = shape if rounding == "floor" else (shape, rounding)
    if key not in cache:
        x, y = gaze.xy[:, 0].astype(np.float64), gaze.xy[:, 1].astype(np.float64)
        rows, cols, onscreen = _to_pixels(x, y, shape, rounding)
        cache[key] = np.where(onscreen, rows * shape[1] + cols, -1).astype(np.int64)
    return cache[key]


def _union_counts(gaze: GazeTable, groups: Sequence[Sequence[int]] | np.ndarray, shape: tuple[int, int],
                  rounding: str = "floor") -> tuple[np.ndarray, np.ndarray]:
    """Counts ``(len(groups), h, w)`` of the gaze of each group of raw frames (a list of lists, or an array
    ``(n, k)`` of k frames each), and each group's off-screen samples, gathered and counted for the whole batch at
    once."""
    pixels, n_pix, n = _pixels(gaze, shape, rounding), shape[0] * shape[1], len(groups)
    if isinstance(groups, np.ndarray):  # (n, k): k frames each
        frames = groups.astype(np.int64, copy=False).reshape(-1)
        owner = np.repeat(np.arange(n), groups.shape[1] if groups.ndim == 2 else 0)
    else:
        frames = np.fromiter((f for g in groups for f in g), dtype=np.int64)
        owner = np.repeat(np.arange(n), [len(g) for g in groups])
    # row of each frame in the table (frames without a row contribute nothing)
    rows = np.searchsorted(gaze.frame_index, frames)
    known = rows < len(gaze.frame_index)
    known[known] = gaze.frame_index[rows[known]] == frames[known]
    rows, owner = rows[known], owner[known]
    offsets, pixel, weight, offscreen_of_row = _frame_pixels(gaze, shape, rounding, pixels)
    starts = offsets[rows]
    lengths = offsets[rows + 1] - starts
    # concatenate the entry ranges [start, end) of every frame without a Python loop
    entry = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
    counts = np.bincount(np.repeat(owner, lengths) * n_pix + pixel[entry], weights=weight[entry],
                         minlength=n * n_pix)
    offscreen = np.bincount(owner, weights=offscreen_of_row[rows], minlength=n)
    return counts.reshape(n, *shape).astype(np.float32), offscreen.astype(np.int64)


def _frame_pixels(gaze: GazeTable, shape: tuple[int, int], rounding: str,
                  pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each frame's gaze as (pixel, samples on it) entries, computed once per trial: entries of table row r at
    ``offsets[r]:offsets[r + 1]``, their pixels and counts, and each row's off-screen samples."""
    key = ("frames", shape, rounding)
    cache = gaze.pixel_cache
    if key not in cache:
        n_pix, n_rows = shape[0] * shape[1], len(gaze.frame_index)
        row = np.repeat(np.arange(n_rows), np.diff(gaze.offsets))
        on = pixels >= 0
        keys, weight = np.unique(row[on] * n_pix + pixels[on], return_counts=True)
        entry_row = keys // n_pix
        offsets = np.concatenate([[0], np.cumsum(np.bincount(entry_row, minlength=n_rows))]).astype(np.int64)
        cache[key] = (offsets, keys % n_pix, weight.astype(np.float64),
                      np.bincount(row[~on], minlength=n_rows).astype(np.float64))
    return cache[key]


def _gaze_frames(index: int, gaze_offset: int = 0) -> list[int]:
    """The raw frames whose gaze the observation at ``index`` is scored against (``gaze_offset``: see the
    module doc)."""
    return [frame + gaze_offset for frame in covered_frames(index)]


def observation_counts(gaze: GazeTable, indices: Sequence[int], shape: tuple[int, int] = FRAME_SHAPE,
                       rounding: str = "floor",
                       gaze_offset: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixation counts ``(N, h, w)`` of the observations at ``indices``, with the number of on-screen and
    off-screen samples of each."""
    frames = np.asarray(indices, np.int64).reshape(-1, 1) - np.asarray(COVERED_OFFSETS)[None, :] + gaze_offset
    counts, offscreen = _union_counts(gaze, frames, shape, rounding)
    return counts, counts.sum(axis=(1, 2)).astype(np.int64), offscreen


def gaze_density(counts: np.ndarray, sigma: float | None = None, border: str = "constant") -> np.ndarray:
    """Blur one count map ``(h, w)`` or a stack ``(N, h, w)`` with a Gaussian; sigma defaults to 5 px at
    210x160 and 2 px at 84x84. ``border``: ``constant`` (zero outside the frame: mass blurred off the frame is
    lost) or ``reflect`` (mirrored at the edges, cv2's default, as the FLS reference blurred)."""
    if border not in BORDERS:
        raise ValueError(f"border must be one of {sorted(BORDERS)}, got {border!r}")
    counts = np.asarray(counts, dtype=np.float32)
    shape = counts.shape[-2:]
    if sigma is None:
        if shape not in SIGMA:
            raise ValueError(f"no default blur for maps of shape {shape}; pass sigma")
        sigma = SIGMA[shape]
    flat = counts.reshape(-1, *shape)
    out = np.stack([cv2.GaussianBlur(m, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=BORDERS[border])
                    for m in flat])
    return out.reshape(counts.shape)


def observation_indices(gaze: GazeTable, stride: int = 1, max_index: int | None = None,
                        require_rows: bool = True, aligned: bool = False) -> tuple[list[int], dict[str, list[int]]]:
    """Raw frame indices to build observations at: every ``stride``-th frame from the first with 13 frames
    before it, or (``aligned``) the frames ``first + k * stride`` that have 13 frames before them: the
    decision points of an agent that had played the trial from its first frame (as the FLS reference
    replayed it). Skipped (and returned by reason): observations that cover a frame the txt lacks
    (``require_rows``), or that straddle two episodes. The tar may still lack frames; replay reports those."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if len(gaze) == 0:
        return [], {}
    first, last = int(gaze.frame_index[0]), int(gaze.frame_index[-1])
    if max_index is not None:
        last = min(last, max_index)
    episode = dict(zip(gaze.frame_index.tolist(), gaze.episode_id.tolist(), strict=True))
    skipped: dict[str, list[int]] = {"frames_missing_from_txt": [], "episode_boundary": []}
    out = []
    need = COVERED_OFFSETS[-1]
    start = first + (-(-need // stride) * stride if aligned else need)
    for i in range(start, last + 1, stride):
        covered = covered_frames(i)
        if require_rows and not all(gaze.has(c) for c in covered):
            skipped["frames_missing_from_txt"].append(i)
            continue
        episodes = {episode[c] for c in covered if c in episode and not np.isnan(episode[c])}
        if len(episodes) > 1:
            skipped["episode_boundary"].append(i)
            continue
        out.append(i)
    return out, skipped


def shuffled_negatives(gaze: GazeTable, indices: Sequence[int], positions: Sequence[int], rng: np.random.Generator,
                       shape: tuple[int, int] = FRAME_SHAPE, n_others: int = 10, replace: bool = False,
                       rounding: str = "floor", gaze_offset: int = 0) -> np.ndarray:
    """Negatives of shuffled AUC for the observations ``indices[p]``, p in ``positions``: for each, the summed
    fixation counts of ``n_others`` random other observations of the same trial (drawn from all of
    ``indices``, without or, as the FLS reference drew them, with ``replace``ment; an observation drawn twice
    counts twice). Returns ``(len(positions), h, w)``."""
    n = len(indices)
    if n <= 1:
        return _union_counts(gaze, [[] for _ in positions], shape, rounding)[0]
    size = n_others if replace else min(n_others, n - 1)
    picks = np.empty((len(positions), size), np.int64)
    for row, position in enumerate(positions):  # the generator's calls, one per observation, as they always were
        drawn = rng.integers(0, n - 1, size=size) if replace else rng.choice(n - 1, size=size, replace=False)
        picks[row] = drawn + (drawn >= position)  # never the observation itself
    starts = np.asarray(indices, np.int64)[picks]
    frames = starts[:, :, None] - np.asarray(COVERED_OFFSETS)[None, None, :] + gaze_offset
    return _union_counts(gaze, frames.reshape(len(positions), -1), shape, rounding)[0]
