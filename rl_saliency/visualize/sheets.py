"""Pictures of visualisations: PNG sheets (the 4 stacked frames side by side, one labelled row per stack), an
animated GIF per stack, side-by-side comparisons and the fooling robustness curve. Every file is written
atomically (``rl_saliency.io``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rl_saliency import io

LABEL_WIDTH = 190
GAP = 4
HEADER = 22
BACKGROUND = (24, 24, 32)
TEXT = (235, 235, 235)


def _font(size: int = 13) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the bitmap font has one size
        return ImageFont.load_default()


def to_uint8(frames: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(frames, dtype=np.float32)), 0, 255).astype(np.uint8)


def _enlarge(frame: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)


def _wrap(text: str, width: int = 24) -> list[str]:
    lines: list[str] = []
    for part in str(text).split("\n"):
        words, line = part.split(" "), ""
        for word in words:
            if line and len(line) + 1 + len(word) > width:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}".strip()
        lines.append(line)
    return lines


def sheet(groups: Sequence[np.ndarray], labels: Sequence[str], titles: Sequence[str] | None = None,
          scale: int = 2, title: str | None = None) -> Image.Image:
    """One row per stack: a label, then for each group its 4 frames side by side.

    ``groups``: arrays ``(K, 4, 84, 84)`` (0..255) shown left to right in every row (e.g. pixel-space and generator
    results, or original, fooled and difference); ``titles`` names each group's column block.
    """
    groups = [to_uint8(g) for g in groups]
    k = len(labels)
    if any(len(g) != k for g in groups):
        raise ValueError("every group needs one stack per label")
    side = 84 * scale
    block = 4 * side + 3 * GAP
    width = LABEL_WIDTH + len(groups) * (block + 3 * GAP)
    top = HEADER * (1 + (title is not None))
    height = top + k * (side + GAP) + GAP
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font, small = _font(13), _font(11)
    if title is not None:
        draw.text((GAP, 4), title, fill=TEXT, font=font)
    header_y = top - HEADER + 4
    for g in range(len(groups)):
        x0 = LABEL_WIDTH + g * (block + 3 * GAP)
        name = titles[g] if titles is not None else ""
        heads = [f"{name}  t-3" if name else "t-3", "t-2", "t-1", "t (newest)"]
        for f, head in enumerate(heads):
            draw.text((x0 + f * (side + GAP) + 2, header_y), head, fill=TEXT, font=small)
    for row in range(k):
        y = top + row * (side + GAP)
        for i, line in enumerate(_wrap(labels[row])[:side // 15]):
            draw.text((GAP, y + 2 + 15 * i), line, fill=TEXT, font=font)
        for g, frames in enumerate(groups):
            x0 = LABEL_WIDTH + g * (block + 3 * GAP)
            for f in range(4):
                tile = Image.fromarray(_enlarge(frames[row, f], scale), mode="L").convert("RGB")
                image.paste(tile, (x0 + f * (side + GAP), y))
    return image


def save_png(image: Image.Image, path: str | Path) -> Path:
    with io.atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def save_gif(stack: np.ndarray, path: str | Path, scale: int = 3, ms_per_frame: int = 250,
             label: str | None = None) -> Path:
    """The 4 frames of one stack, oldest first, as a looping GIF (enlarged ``scale`` times, optional caption)."""
    frames = []
    for i, frame in enumerate(to_uint8(stack)):
        tile = Image.fromarray(_enlarge(frame, scale), mode="L").convert("RGB")
        if label is not None:
            canvas = Image.new("RGB", (tile.width, tile.height + 18), BACKGROUND)
            canvas.paste(tile, (0, 18))
            ImageDraw.Draw(canvas).text((3, 2), f"{label} [{i + 1}/4]", fill=TEXT, font=_font(11))
            tile = canvas
        frames.append(tile)
    with io.atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0)
    return Path(path)


def slug(text: str) -> str:
    """A file-name-safe version of a label (``3 UPRIGHT`` -> ``3_upright``)."""
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_") or "row"


def save_gifs(frames: np.ndarray, labels: Sequence[str], folder: str | Path, prefix: str, scale: int = 3
              ) -> list[Path]:
    """One GIF per stack: ``<folder>/<prefix>_<row>_<label>.gif``."""
    folder = Path(folder)
    return [save_gif(stack, folder / f"{prefix}_{row:02d}_{slug(label)}.gif", scale=scale, label=label)
            for row, (stack, label) in enumerate(zip(frames, labels, strict=True))]


def difference_frames(original: np.ndarray, changed: np.ndarray, gain: float | None = None) -> np.ndarray:
    """|changed - original| scaled so that its largest value is white (or by ``gain``), for showing what changed."""
    diff = np.abs(np.asarray(changed, np.float32) - np.asarray(original, np.float32))
    if gain is None:
        peak = diff.reshape(len(diff), -1).max(axis=1).reshape(-1, 1, 1, 1)
        return np.where(peak > 0, diff * 255.0 / np.maximum(peak, 1e-9), 0.0)
    return np.clip(diff * gain, 0, 255)


def robustness_plot(bounds: np.ndarray, path: str | Path, title: str, max_bound: float) -> Path:
    """Fraction of observations whose decision flips within each L-infinity bound (grey levels, log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bounds = np.asarray(bounds, dtype=float)
    grid = np.unique(np.concatenate([[0.5], np.arange(1, max(2, int(max_bound)) + 1)]))
    fractions = [(bounds <= b).mean() if len(bounds) else 0.0 for b in grid]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.step(grid, fractions, where="post")
    for b in (1, 2, 4, 8):
        ax.axvline(b, color="0.8", lw=0.8, zorder=0)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("L-infinity bound (grey levels of 255)")
    ax.set_ylabel("fraction of observations flipped")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
