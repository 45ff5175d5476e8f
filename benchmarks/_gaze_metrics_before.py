"""The metrics as they were before issue 17 (commit 5017d39), kept verbatim as the 'before' of
``benchmarks/gaze_eval.py``: AUC-Judd, AUC-Borji and shuffled AUC by a per-map loop, each batched metric
doing its own per-map work. Not used by the package.

Saliency-vs-gaze metrics, as the MIT/Tuebingen saliency benchmark defines them (Bylinskii et al., 2018).

Notation: ``saliency`` S is any map >= 0, ``fixation_counts`` F holds how many gaze samples fell on each
pixel, ``gaze_density`` G is F blurred with a Gaussian. All maps of one call have the same 2-D shape.
Each metric takes 2-D maps and returns a float; ``*_batch`` forms take stacks ``(N, h, w)`` and return
``(N,)``. A metric that is undefined for an input (no fixation, no negative, a saliency map with NaN or inf)
is NaN, so that means over observations can skip it (and count what they skipped).

Conventions: a constant saliency map carries no information and scores each metric's chance level: NSS 0,
AUC-Borji and shuffled AUC 0.5, CC 0, AUC-Judd 0.5 + 1 / (2 (Nfix + 1)) (its ROC points sit at the fixated
pixels only, so a map that orders pixels at random scores that on average; it is what the MIT code's jitter
gives a constant map); in KL, SIM and IG it is a uniform density. (The FLS reference skips NSS and shuffled
AUC on such maps instead; a map that tells nothing about a frame is scored at chance here rather than left
out of the mean.)

Ties: every rank metric gives tied saliency values their expected score under a random order, which is what
the MIT code's tiny random jitter gives on average: AUC-Judd by the rule in ``auc_judd``, shuffled AUC by
counting ties half (Mann-Whitney), AUC-Borji by thresholding positives and negatives alike (``>=``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

EPS = 2.2204e-16  # MATLAB's eps, as the benchmark code uses
BORJI_SPLITS = 100
BORJI_THRESHOLDS = np.linspace(1.0, 0.0, 11)  # 1.0, 0.9, ..., 0.0

METRICS = ("nss", "auc_judd", "auc_borji", "shuffled_auc", "kl_div", "cc", "sim", "info_gain")


def _as2d(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{what} must be a 2-D map, got shape {a.shape}")
    return a


def _check_same(*maps: np.ndarray) -> None:
    shapes = {m.shape for m in maps}
    if len(shapes) != 1:
        raise ValueError(f"maps must have the same shape, got {sorted(shapes)}")


def _is_constant(s: np.ndarray) -> bool:
    top = float(np.abs(s).max()) if s.size else 0.0
    return not float(np.ptp(s)) > 1e-12 * max(top, 1e-300)


def _min_max(s: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1]; a constant map becomes all ones (a uniform density once normalised)."""
    if _is_constant(s):
        return np.ones_like(s)
    return (s - s.min()) / (s.max() - s.min())


def _to_density(s: np.ndarray) -> np.ndarray:
    """Normalise to sum 1; an all-zero map becomes uniform."""
    total = s.sum()
    if total <= 0:
        return np.full_like(s, 1.0 / s.size)
    return s / total


def nss(saliency: np.ndarray, fixation_counts: np.ndarray) -> float:
    """Normalised scanpath saliency: mean z-score of S over fixations, weighted by their counts."""
    s, f = _as2d(saliency, "saliency"), _as2d(fixation_counts, "fixation_counts")
    _check_same(s, f)
    if f.sum() <= 0 or not np.isfinite(s).all():
        return float("nan")
    if _is_constant(s):
        return 0.0
    z = (s - s.mean()) / s.std()
    return float((f * z).sum() / f.sum())


def auc_judd(saliency: np.ndarray, fixation_counts: np.ndarray) -> float:
    """AUC-Judd: thresholds at the saliency of each fixated pixel (once each), negatives = all other pixels.

    Ties are given the expectation of the MIT code's random jitter: of ``P`` fixated pixels that share a value
    with ``Q`` non-fixated ones, the ``j``-th (in the jittered order) has the non-fixated pixels strictly above
    it plus ``j Q / (P + 1)`` of the tied ones above it on average; the area is linear in those counts, so this
    is the jittered AUC's mean, without randomness. (Counting every tied pixel as above, as the plain formula
    does, makes the false-positive rate run backwards on a plateau and the trapezoid subtract area.)"""
    s, f = _as2d(saliency, "saliency"), _as2d(fixation_counts, "fixation_counts")
    _check_same(s, f)
    fixated = f > 0
    n_fix, n_pix = int(fixated.sum()), s.size
    if n_fix == 0 or n_fix == n_pix or not np.isfinite(s).all():
        return float("nan")
    s = _min_max(s)  # a constant map becomes one plateau: 0.5 + 1 / (2 (n_fix + 1)), AUC-Judd's chance level
    n_neg = n_pix - n_fix
    thresholds = np.sort(s[fixated])[::-1]  # descending: the i-th threshold gives tp = i / n_fix
    negatives = np.sort(s[~fixated])
    first_tied = np.searchsorted(negatives, thresholds, side="left")
    past_tied = np.searchsorted(negatives, thresholds, side="right")
    above, tied = n_neg - past_tied, past_tied - first_tied
    # rank j (1-based) of each threshold within its run of equal fixated values, and the run's length P
    starts = np.flatnonzero(np.concatenate([[True], thresholds[1:] != thresholds[:-1]]))
    run = np.cumsum(np.concatenate([[True], thresholds[1:] != thresholds[:-1]])) - 1
    lengths = np.diff(np.concatenate([starts, [n_fix]]))
    j = np.arange(n_fix) - starts[run] + 1
    expected_above = above + tied * j / (lengths[run] + 1)
    tp = np.concatenate([[0.0], np.arange(1, n_fix + 1) / n_fix, [1.0]])
    fp = np.concatenate([[0.0], expected_above / n_neg, [1.0]])
    return float(np.trapezoid(tp, fp))


def auc_borji(saliency: np.ndarray, fixation_counts: np.ndarray, rng: np.random.Generator,
              splits: int = BORJI_SPLITS) -> float:
    """AUC-Borji: negatives are as many uniformly random pixels as fixated pixels, mean over ``splits``."""
    s, f = _as2d(saliency, "saliency"), _as2d(fixation_counts, "fixation_counts")
    _check_same(s, f)
    fixated = f > 0
    n_fix = int(fixated.sum())
    if n_fix == 0 or not np.isfinite(s).all():
        return float("nan")
    if _is_constant(s):
        return 0.5
    s = _min_max(s).ravel()
    positives = s[fixated.ravel()]
    negatives = s[rng.integers(0, s.size, size=(splits, n_fix))]
    t = BORJI_THRESHOLDS
    tp = (positives[None, :] >= t[:, None]).mean(axis=1)  # (T,)
    fp = (negatives[:, None, :] >= t[None, :, None]).mean(axis=2)  # (splits, T)
    tp = np.concatenate([[0.0], tp, [1.0]])
    fp = np.concatenate([np.zeros((splits, 1)), fp, np.ones((splits, 1))], axis=1)
    areas = (np.diff(fp, axis=1) * (tp[1:] + tp[:-1]) / 2).sum(axis=1)  # trapezoid rule, one row per split
    return float(areas.mean())


def _weighted_auc(pos: np.ndarray, pos_w: np.ndarray, neg: np.ndarray, neg_w: np.ndarray) -> float:
    """P(pos > neg) + 0.5 P(pos == neg) with sample weights: the exact (Mann-Whitney) ROC area."""
    order = np.argsort(neg, kind="stable")
    neg, neg_w = neg[order], neg_w[order]
    cum = np.concatenate([[0.0], np.cumsum(neg_w)])
    below = cum[np.searchsorted(neg, pos, side="left")]
    equal = cum[np.searchsorted(neg, pos, side="right")] - below
    return float((pos_w * (below + 0.5 * equal)).sum() / (pos_w.sum() * neg_w.sum()))


def shuffled_auc(saliency: np.ndarray, fixation_counts: np.ndarray, other_fixation_counts: np.ndarray) -> float:
    """Shuffled AUC: negatives are the pixels fixated in other frames, both sides weighted by counts."""
    s, f = _as2d(saliency, "saliency"), _as2d(fixation_counts, "fixation_counts")
    o = _as2d(other_fixation_counts, "other_fixation_counts")
    _check_same(s, f, o)
    if f.sum() <= 0 or o.sum() <= 0 or not np.isfinite(s).all():
        return float("nan")
    if _is_constant(s):
        return 0.5
    pos, neg = f > 0, o > 0
    return _weighted_auc(s[pos], f[pos], s[neg], o[neg])


def kl_div(saliency: np.ndarray, gaze_density: np.ndarray) -> float:
    """KL(G || S) in nats, both normalised to sum 1 (lower is better)."""
    s, g = _as2d(saliency, "saliency"), _as2d(gaze_density, "gaze_density")
    _check_same(s, g)
    if g.sum() <= 0 or not np.isfinite(s).all():
        return float("nan")
    p, q = _to_density(g), _to_density(np.ones_like(s) if _is_constant(s) else s)
    nz = p > 0  # terms with p = 0 are 0
    return float((p[nz] * np.log(EPS + p[nz] / (q[nz] + EPS))).sum())


def cc(saliency: np.ndarray, gaze_density: np.ndarray) -> float:
    """Pearson correlation between S and G."""
    s, g = _as2d(saliency, "saliency"), _as2d(gaze_density, "gaze_density")
    _check_same(s, g)
    if g.sum() <= 0 or not np.isfinite(s).all():
        return float("nan")
    if _is_constant(s) or _is_constant(g):
        return 0.0
    zs, zg = (s - s.mean()) / s.std(), (g - g.mean()) / g.std()
    return float((zs * zg).mean())


def sim(saliency: np.ndarray, gaze_density: np.ndarray) -> float:
    """Similarity (histogram intersection) of the min-max-normalised, sum-normalised maps."""
    s, g = _as2d(saliency, "saliency"), _as2d(gaze_density, "gaze_density")
    _check_same(s, g)
    if g.sum() <= 0 or not np.isfinite(s).all():
        return float("nan")
    return float(np.minimum(_to_density(_min_max(s)), _to_density(_min_max(g))).sum())


def info_gain(saliency: np.ndarray, baseline: np.ndarray, fixation_counts: np.ndarray) -> float:
    """Information gain of S over a baseline map, in bits per fixation (weighted by counts)."""
    s, b = _as2d(saliency, "saliency"), _as2d(baseline, "baseline")
    f = _as2d(fixation_counts, "fixation_counts")
    _check_same(s, b, f)
    if f.sum() <= 0 or not np.isfinite(s).all():
        return float("nan")
    p, q = _to_density(_min_max(s)), _to_density(_min_max(b))
    gain = np.log2(EPS + p) - np.log2(EPS + q)
    return float((f * gain).sum() / f.sum())


# ---------------------------------------------------------------------------------------------- batched forms

def _as3d(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"{what} must be a stack of maps (N, h, w), got shape {a.shape}")
    return a


def _per_map(fn: Callable[..., float], *stacks: np.ndarray, **kwargs) -> np.ndarray:
    n = len(stacks[0])
    if any(len(s) != n for s in stacks):
        raise ValueError(f"batches must have the same length, got {[len(s) for s in stacks]}")
    return np.array([fn(*(s[k] for s in stacks), **kwargs) for k in range(n)], dtype=np.float64)


def _finite_rows(s: np.ndarray) -> np.ndarray:
    return np.isfinite(s.reshape(len(s), -1)).all(axis=1)


def _constant_rows(s: np.ndarray) -> np.ndarray:
    flat = s.reshape(len(s), -1)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    top = np.maximum(np.maximum(np.abs(lo), np.abs(hi)), 1e-300)
    return ~((hi - lo) > 1e-12 * top)


def _densities(s: np.ndarray, min_max: bool) -> np.ndarray:
    """Per-map normalisation to sum 1 (after min-max when asked); constant or empty maps become uniform."""
    flat = s.reshape(len(s), -1)
    const = _constant_rows(s)
    if min_max:
        lo = flat.min(axis=1, keepdims=True)
        span = flat.max(axis=1, keepdims=True) - lo
        span[const] = 1.0
        out = (flat - lo) / span
    else:
        out = flat.copy()
    out[const] = 1.0
    total = out.sum(axis=1, keepdims=True)
    empty = total[:, 0] <= 0
    total[empty] = 1.0
    out /= total
    out[empty] = 1.0 / out.shape[1]
    return out.reshape(s.shape)


def nss_batch(saliency: np.ndarray, fixation_counts: np.ndarray) -> np.ndarray:
    s, f = _as3d(saliency, "saliency"), _as3d(fixation_counts, "fixation_counts")
    _check_same(s, f)
    axes = (1, 2)
    std = s.std(axis=axes, keepdims=True)
    const = _constant_rows(s)
    z = (s - s.mean(axis=axes, keepdims=True)) / np.where(const[:, None, None], 1.0, std)
    total = f.sum(axis=axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (f * z).sum(axis=axes) / total
    out[const] = 0.0
    out[(total <= 0) | ~_finite_rows(s)] = np.nan
    return out


def cc_batch(saliency: np.ndarray, gaze_density: np.ndarray) -> np.ndarray:
    s, g = _as3d(saliency, "saliency"), _as3d(gaze_density, "gaze_density")
    _check_same(s, g)
    axes = (1, 2)
    const = _constant_rows(s) | _constant_rows(g)
    zs = (s - s.mean(axis=axes, keepdims=True)) / np.where(const[:, None, None], 1.0, s.std(axis=axes, keepdims=True))
    zg = (g - g.mean(axis=axes, keepdims=True)) / np.where(const[:, None, None], 1.0, g.std(axis=axes, keepdims=True))
    out = (zs * zg).mean(axis=axes)
    out[const] = 0.0
    out[(g.sum(axis=axes) <= 0) | ~_finite_rows(s)] = np.nan
    return out


def kl_div_batch(saliency: np.ndarray, gaze_density: np.ndarray) -> np.ndarray:
    s, g = _as3d(saliency, "saliency"), _as3d(gaze_density, "gaze_density")
    _check_same(s, g)
    p, q = _densities(g, min_max=False), _densities(s, min_max=False)
    terms = np.zeros_like(p)
    nz = p > 0  # terms with p = 0 are 0: the blurred gaze covers a small part of the frame
    terms[nz] = p[nz] * np.log(EPS + p[nz] / (q[nz] + EPS))
    out = terms.sum(axis=(1, 2))
    out[(g.sum(axis=(1, 2)) <= 0) | ~_finite_rows(s)] = np.nan
    return out


def sim_batch(saliency: np.ndarray, gaze_density: np.ndarray) -> np.ndarray:
    s, g = _as3d(saliency, "saliency"), _as3d(gaze_density, "gaze_density")
    _check_same(s, g)
    out = np.minimum(_densities(s, min_max=True), _densities(g, min_max=True)).sum(axis=(1, 2))
    out[(g.sum(axis=(1, 2)) <= 0) | ~_finite_rows(s)] = np.nan
    return out


def info_gain_batch(saliency: np.ndarray, baseline: np.ndarray, fixation_counts: np.ndarray) -> np.ndarray:
    s, f = _as3d(saliency, "saliency"), _as3d(fixation_counts, "fixation_counts")
    b = np.asarray(baseline, dtype=np.float64)
    b = b[None] if b.ndim == 2 else b  # one baseline for the whole batch, or one per map
    _check_same(s[0], b[0], f[0])
    if len(b) not in (1, len(s)) or len(f) != len(s):
        raise ValueError(f"batches must have the same length, got {len(s)}, {len(b)}, {len(f)}")
    gain = np.log2(EPS + _densities(s, min_max=True)) - np.log2(EPS + _densities(b, min_max=True))
    total = f.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (f * gain).sum(axis=(1, 2)) / total
    out[(total <= 0) | ~_finite_rows(s)] = np.nan
    return out


def auc_judd_batch(saliency: np.ndarray, fixation_counts: np.ndarray) -> np.ndarray:
    return _per_map(auc_judd, _as3d(saliency, "saliency"), _as3d(fixation_counts, "fixation_counts"))


def auc_borji_batch(saliency: np.ndarray, fixation_counts: np.ndarray, rng: np.random.Generator,
                    splits: int = BORJI_SPLITS) -> np.ndarray:
    return _per_map(auc_borji, _as3d(saliency, "saliency"), _as3d(fixation_counts, "fixation_counts"),
                    rng=rng, splits=splits)


def shuffled_auc_batch(saliency: np.ndarray, fixation_counts: np.ndarray,
                       other_fixation_counts: np.ndarray) -> np.ndarray:
    return _per_map(shuffled_auc, _as3d(saliency, "saliency"), _as3d(fixation_counts, "fixation_counts"),
                    _as3d(other_fixation_counts, "other_fixation_counts"))


def all_metrics_batch(saliency: np.ndarray, fixation_counts: np.ndarray, gaze_density: np.ndarray,
                      other_fixation_counts: np.ndarray, baseline: np.ndarray,
                      rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every metric for a batch of observations, as ``{name: (N,)}`` in the order of ``METRICS``."""
    saliency, fixation_counts = _as3d(saliency, "saliency"), _as3d(fixation_counts, "fixation_counts")
    gaze_density = _as3d(gaze_density, "gaze_density")
    other_fixation_counts = _as3d(other_fixation_counts, "other_fixation_counts")
    return {
        "nss": nss_batch(saliency, fixation_counts),
        "auc_judd": auc_judd_batch(saliency, fixation_counts),
        "auc_borji": auc_borji_batch(saliency, fixation_counts, rng),
        "shuffled_auc": shuffled_auc_batch(saliency, fixation_counts, other_fixation_counts),
        "kl_div": kl_div_batch(saliency, gaze_density),
        "cc": cc_batch(saliency, gaze_density),
        "sim": sim_batch(saliency, gaze_density),
        "info_gain": info_gain_batch(saliency, baseline, fixation_counts),
    }
