"""The shapes of what the envs produce, named once: raw Atari frames, stacked observations, per-pixel maps."""

from __future__ import annotations

import cv2
import numpy as np

FRAME_SHAPE = (210, 160)  # rows, columns of a raw Atari frame
OBS_SHAPE = (4, 84, 84)  # a stacked observation: 4 grey 84x84 frames
MAP_SHAPE = (84, 84)  # one map over an observation (saliency, fixation density)


def upsample_to_frame(maps: np.ndarray, shape: tuple[int, int] = FRAME_SHAPE) -> np.ndarray:
    """Map one (84, 84) or a batch (N, 84, 84) of maps onto the (210, 160) frame, bilinearly, >= 0."""
    maps = np.asarray(maps, dtype=np.float32)
    single = maps.ndim == 2
    batch = maps[None] if single else maps
    out = np.stack([cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR) for m in batch])
    out = np.maximum(out, 0.0)
    return out[0] if single else out


def on_frame(x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray | bool:
    """Whether points at (x = column, y = row) in frame pixels lie on the 210x160 frame (the one bounds check
    for gaze samples: fixation maps, off-screen counts, the gaze dots of a video)."""
    return (x >= 0) & (x < FRAME_SHAPE[1]) & (y >= 0) & (y < FRAME_SHAPE[0])
