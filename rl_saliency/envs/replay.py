"""Replay recorded raw Atari frames through the agent's own preprocessing.

Atari-HEAD stores every emulator frame (no frame skip). An agent trained with SB3's ``AtariWrapper`` and a
stack of 4 sees, at the step that ends on raw frame ``i``: for each of the last four steps, the pixel-wise
max of that step's last two raw RGB frames (``MaxAndSkipEnv``), turned grey and resized to 84x84 with
``cv2.INTER_AREA`` (``WarpFrame``). So the observation at raw frame ``i`` stacks, oldest first,
``pool(i-13, i-12), pool(i-9, i-8), pool(i-5, i-4), pool(i-1, i)`` and covers raw frames
``i, i-1, i-4, i-5, i-8, i-9, i-12, i-13`` (the FLS evaluation protocol). No noop or fire reset is involved:
the frames are whatever the human played.

Two poolings exist, one per env backend, and the replay must use the one the agent was trained with:
``rgb`` (SB3's ``MaxAndSkipEnv``: max of the RGB frames, then grey) and ``grey`` (ale-py's ``AtariVectorEnv``
with ``maxpool``: each frame grey, then the max). They differ on about 0.4% of the pixels of a Ms. Pac-Man
frame, by up to 37 grey levels.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

FRAME_SKIP = 4
STACK = 4
OBS_SIZE = 84
COVERED_OFFSETS = (0, 1, 4, 5, 8, 9, 12, 13)  # raw frames i - k that the observation at i is made of
SPAN = COVERED_OFFSETS[-1]  # the observation at i needs raw frames back to i - 13


def covered_frames(index: int) -> list[int]:
    """Raw frame indices that the observation at raw frame ``index`` is made of, newest first."""
    return [index - k for k in COVERED_OFFSETS]


def warp_frame(rgb: np.ndarray) -> np.ndarray:
    """RGB (210, 160, 3) uint8 -> grey (84, 84) uint8, exactly as SB3's ``WarpFrame``."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (OBS_SIZE, OBS_SIZE), interpolation=cv2.INTER_AREA)


POOLS = ("rgb", "grey")


def pool_frames(previous: np.ndarray, current: np.ndarray, pool: str = "rgb") -> np.ndarray:
    """The 84x84 grey frame of one agent step from its last two raw RGB frames: ``rgb`` takes their max and
    then ``warp_frame`` (SB3 backend); ``grey`` turns each grey, takes the max, then resizes (ale backend)."""
    if pool == "rgb":
        return warp_frame(np.maximum(previous, current))
    if pool == "grey":
        grey = np.maximum(cv2.cvtColor(previous, cv2.COLOR_RGB2GRAY), cv2.cvtColor(current, cv2.COLOR_RGB2GRAY))
        return cv2.resize(grey, (OBS_SIZE, OBS_SIZE), interpolation=cv2.INTER_AREA)
    raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")


@dataclass
class ReplayReport:
    """Observations the replay could not build."""

    gaps: list[int] = field(default_factory=list)  # observation indices skipped: a covered raw frame is missing
    emitted: int = 0


def replay_observations(frames: Iterable[tuple[int, np.ndarray]], indices: Iterable[int] | None = None,
                        stride: int = 1, report: ReplayReport | None = None,
                        pool: str = "rgb") -> Iterator[tuple[int, np.ndarray]]:
    """Turn raw frames ``(index, rgb)`` (ascending index, gaps allowed) into the agent's observations
    ``(index, (4, 84, 84) uint8)``, channels oldest first as ``VecFrameStack`` + ``VecTransposeImage`` give.

    ``indices`` are the raw frames to build observations at (ascending); by default every ``stride``-th
    frame from the first one with 13 frames before it. An observation whose covered frames are not all
    there is skipped and listed in ``report.gaps``. ``pool``: ``rgb`` for agents trained on the SB3 backend,
    ``grey`` for the ale backend (see the module doc).
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    report = report if report is not None else ReplayReport()
    wanted = iter(sorted(set(indices))) if indices is not None else None
    target = next(wanted, None) if wanted is not None else None
    pooled: dict[int, np.ndarray] = {}  # raw index -> pooled frame ending there (last 13 kept)
    previous: tuple[int, np.ndarray] | None = None
    first: int | None = None
    for index, rgb in frames:
        if previous is not None and index <= previous[0]:
            raise ValueError(f"frames must come in ascending index; got {index} after {previous[0]}")
        if first is None:
            first = index
        if previous is not None and previous[0] == index - 1:
            pooled[index] = pool_frames(previous[1], rgb, pool)
        previous = (index, rgb)
        for old in [k for k in pooled if k < index - SPAN + 1]:
            del pooled[old]
        if wanted is None:
            due = index >= first + SPAN and (index - first - SPAN) % stride == 0
            candidates = [index] if due else []
        else:
            candidates = []
            while target is not None and target <= index:  # wanted observations the stream has reached
                candidates.append(target)
                target = next(wanted, None)
        for i in candidates:
            steps = [i - FRAME_SKIP * k for k in range(STACK - 1, -1, -1)]  # oldest first
            if i != index or any(s not in pooled for s in steps):
                report.gaps.append(i)
                continue
            report.emitted += 1
            yield i, np.stack([pooled[s] for s in steps])
    if wanted is not None:  # wanted observations past the last frame
        while target is not None:
            report.gaps.append(target)
            target = next(wanted, None)
