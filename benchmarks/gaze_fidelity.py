"""The measured effect of each gaze-protocol choice, and of the FLS reference's quirks, on the baselines
(docs/fidelity.md).

    python benchmarks/gaze_fidelity.py --atari-head ../shared/atari_head --max-frames 6000 --out /tmp/gaze_fidelity

Each variant is one gaze-eval run of the baselines (centre bias, intensity, uniform) over the trials found,
in its own folder under ``--out`` (so a stopped run resumes); the table gives each variant's means and their
change from the ``paper`` preset. ``... AUC-Judd before the tie fix`` scores AUC-Judd with the rule this
package used before issue 11 (every non-fixated pixel tied with a fixated one counted above it); ``maps resized
as the reference`` resizes maps to 210x160 as skimage's ``resize`` (order 1) does: scipy's zoom with mirrored
edges, where cv2 repeats the edge pixel.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from rl_saliency.gaze import evaluator, metrics
from rl_saliency.gaze.evaluator import gaze_eval
from rl_saliency.gaze.protocol import DEFAULT, PAPER

SHOWN = ("nss", "auc_judd", "shuffled_auc", "kl_div", "cc")
VARIANTS = {
    "paper": PAPER,
    "paper, AUC-Judd before the tie fix": PAPER,
    "quirk: gaze of one frame earlier": dataclasses.replace(PAPER, gaze_offset=-1),
    "quirk: gaze pixels rounded": dataclasses.replace(PAPER, rounding="round"),
    "quirk: KL skips maps ~0 near the gaze": dataclasses.replace(PAPER, kl_skip_zero_near_gaze=True),
    "all three quirks": dataclasses.replace(PAPER, gaze_offset=-1, rounding="round", kl_skip_zero_near_gaze=True),
    "blur: zero outside the frame": dataclasses.replace(PAPER, blur_border="constant"),
    "observations from the first full stack": dataclasses.replace(PAPER, aligned=False),
    "negatives without replacement": dataclasses.replace(PAPER, negatives_with_replacement=False),
    "maps resized as the reference": PAPER,
    "at 84x84 (else paper)": dataclasses.replace(PAPER, resolution=84),
    "default, AUC-Judd before the tie fix": DEFAULT,
    "default": DEFAULT,
}


def auc_judd_before_fix(saliency: np.ndarray, fixation_counts: np.ndarray) -> float:
    """The pre-fix rule: fp_i = (#{S >= t_i} - i) / (Npix - Nfix), every tie counted above."""
    s, f = np.asarray(saliency, np.float64), np.asarray(fixation_counts)
    fixated = f > 0
    n_fix, n_pix = int(fixated.sum()), s.size
    if n_fix in (0, n_pix) or not np.isfinite(s).all():
        return float("nan")
    if np.ptp(s) <= 1e-12 * max(float(np.abs(s).max()), 1e-300):
        return 0.5
    s = (s - s.min()) / (s.max() - s.min())
    thresholds = np.sort(s[fixated])[::-1]
    above = n_pix - np.searchsorted(np.sort(s.ravel()), thresholds, side="left")
    i = np.arange(1, n_fix + 1)
    tp = np.concatenate([[0.0], i / n_fix, [1.0]])
    fp = np.concatenate([[0.0], (above - i) / (n_pix - n_fix), [1.0]])
    return float(np.trapezoid(tp, fp))


def resize_as_skimage(maps: np.ndarray, shape: tuple[int, int] = (210, 160)) -> np.ndarray:
    """skimage.transform.resize(m, shape) for order 1 upscaling: ndimage.zoom, grid mode, mirrored edges."""
    from scipy import ndimage

    maps = np.asarray(maps, np.float32)
    batch = maps[None] if maps.ndim == 2 else maps
    zoom = (shape[0] / batch.shape[1], shape[1] / batch.shape[2])
    out = np.stack([ndimage.zoom(m, zoom, order=1, mode="mirror", grid_mode=True) for m in batch])
    out = np.maximum(out, 0.0)
    return out[0] if maps.ndim == 2 else out


@contextlib.contextmanager
def _patched(name: str) -> Iterator[None]:
    saved = metrics.auc_judd, evaluator.upsample_to_frame
    if "before the tie fix" in name:
        metrics.auc_judd = auc_judd_before_fix  # auc_judd_batch looks it up at call time
    if "resized as the reference" in name:
        evaluator.upsample_to_frame = resize_as_skimage
    try:
        yield
    finally:
        metrics.auc_judd, evaluator.upsample_to_frame = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--atari-head", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="VARIANT")
    args = parser.parse_args()
    rows = []
    for k, name in enumerate(args.variants):
        with _patched(name):
            tables = gaze_eval(None, args.atari_head, args.out / f"v{list(VARIANTS).index(name):02d}", methods=[],
                               max_frames=args.max_frames, protocol=VARIANTS[name], progress=False)
        per_game = tables["per_game"]
        for _, r in per_game.iterrows():
            rows.append({"variant": name, "game": r["game"], "method": r["method"], "obs": r["observations"],
                         **{m: r[f"{m}_mean"] for m in SHOWN}, "kl_n": r["kl_div_n"]})
        print(f"[{k + 1}/{len(args.variants)}] {name}: done", flush=True)
    table = pd.DataFrame(rows)
    reference = table[table["variant"] == "paper"].set_index(["game", "method"])
    lines = ["| variant | method | obs | " + " | ".join(SHOWN) + " | KL defined on |",
             "|---|---|---|" + "---|" * len(SHOWN) + "---|"]
    for _, r in table[table["method"] != "uniform"].iterrows():
        base = reference.loc[(r["game"], r["method"])] if (r["game"], r["method"]) in reference.index else None
        cells = []
        for m in SHOWN:
            delta = "" if base is None or r["variant"] == "paper" else f" ({r[m] - base[m]:+.3f})"
            cells.append(f"{r[m]:.3f}{delta}")
        lines.append(f"| {r['variant']} | {r['method']} | {int(r['obs'])} | " + " | ".join(cells)
                     + f" | {int(r['kl_n'])} |")
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "variants.csv", index=False)


if __name__ == "__main__":
    main()
