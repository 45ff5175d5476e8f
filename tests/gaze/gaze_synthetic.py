"""Write small Atari-HEAD trials in the dataset's exact format (txt + tar.bz2 of 210x160 RGB PNGs) for tests."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import cv2
import numpy as np

HEADER = "frame_id,episode_id,score,duration(ms),unclipped_reward,action,gaze_positions"
SUBJECT = "XX_1234"


def frame_image(k: int) -> np.ndarray:
    """A recognisable RGB frame: index in the top-left pixels, a bright block that moves with k."""
    image = np.zeros((210, 160, 3), np.uint8)
    image[:, :, 2] = (np.arange(160) + 3 * k) % 64  # a gradient that shifts with k
    # a patch of noise: ~7 KB a PNG, so that a trial spans several 100 KB bz2 blocks and a cut tar keeps some
    image[150:190, 90:150] = np.random.default_rng(k).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    r, c = (7 * k) % 190, (11 * k) % 140
    image[r: r + 20, c: c + 20] = (200, 120, 40)
    image[0, 0] = (k % 256, k // 256, 7)
    return image


def frame_index_of(image: np.ndarray) -> int:
    return int(image[0, 0, 0]) + 256 * int(image[0, 0, 1])


def gaze_of(k: int, n: int = 6) -> list[tuple[float, float]]:
    """Gaze samples of frame k: near the moving block, one off-screen sample on every 5th frame."""
    r, c = (7 * k) % 190, (11 * k) % 140
    samples = [(round(c + 10 + 0.37 * j, 2), round(r + 10 + 0.21 * j, 2)) for j in range(n)]
    if k % 5 == 0:
        samples.append((-3.5, 250.25))
    return samples


def row(k: int, gaze: list[tuple[float, float]] | None, episode: str = "0", action: str = "3") -> str:
    tail = "null" if gaze is None else ",".join(f"{x:.2f},{y:.2f}" for x, y in gaze)
    return f"{SUBJECT}_{k},{episode},{10 * k},50,0,{action},{tail}"


def write_trial(directory: Path, n_frames: int = 40, name: str = "100_XX_1234_Jan-01-00-00-00",
                rows: dict[int, str | None] | None = None, members: list[int] | None = None,
                corrupt_members: tuple[int, ...] = (), txt_order: list[int] | None = None,
                no_gaze: tuple[int, ...] = ()) -> Path:
    """Write ``<directory>/<name>.txt`` and ``.tar.bz2``; return the stem path.

    ``rows`` overrides txt lines by frame (None drops the row); ``members`` gives the tar's frame indices in
    member order (default 1..n); ``corrupt_members`` get garbage instead of a PNG; ``no_gaze`` frames get
    ``null`` gaze."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / name
    lines = {k: row(k, None if k in no_gaze else gaze_of(k)) for k in range(1, n_frames + 1)}
    lines.update(rows or {})
    order = txt_order or sorted(lines)
    text = "\n".join([HEADER] + [lines[k] for k in order if lines.get(k) is not None]) + "\n"
    stem.with_name(name + ".txt").write_text(text)
    with tarfile.open(stem.with_name(name + ".tar.bz2"), "w:bz2", compresslevel=1) as archive:
        for k in members if members is not None else range(1, n_frames + 1):
            if k in corrupt_members:
                data = b"not a png at all"
            else:
                ok, png = cv2.imencode(".png", cv2.cvtColor(frame_image(k), cv2.COLOR_RGB2BGR))
                assert ok
                data = png.tobytes()
            info = tarfile.TarInfo(f"{name}/{SUBJECT}_{k}.png")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return stem
