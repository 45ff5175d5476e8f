"""Saliency-vs-gaze metrics, as the MIT/Tuebingen saliency benchmark defines them (Bylinskii et al., 2018).

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
import torch

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


def _check_lengths(*stacks: np.ndarray) -> None:
    if len({len(s) for s in stacks}) != 1:
        raise ValueError(f"batches must have the same length, got {[len(s) for s in stacks]}")
    shapes = {s.shape[1:] for s in stacks}
    if len(shapes) != 1:
        raise ValueError(f"maps must have the same shape, got {sorted(shapes)}")


def _flat(s: np.ndarray) -> np.ndarray:
    return s.reshape(len(s), s.shape[1] * s.shape[2]) if s.ndim == 3 else s


def _finite_rows(s: np.ndarray) -> np.ndarray:
    return np.isfinite(_flat(s)).all(axis=1)


def _constant_rows(s: np.ndarray) -> np.ndarray:
    flat = _flat(s)
    if flat.size == 0:
        return np.zeros(len(s), dtype=bool)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    top = np.maximum(np.maximum(np.abs(lo), np.abs(hi)), 1e-300)
    return ~((hi - lo) > 1e-12 * top)


def _row_min_max(flat: np.ndarray) -> np.ndarray:
    """``_min_max`` of every row of ``(N, P)`` with the same float operations (constant rows become ones)."""
    const = _constant_rows(flat)
    lo = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - lo
    span[const] = 1.0
    out = (flat - lo) / span
    out[const] = 1.0
    return out


def _densities(s: np.ndarray, min_max: bool) -> np.ndarray:
    """Per-map normalisation to sum 1 (after min-max when asked); constant or empty maps become uniform."""
    flat = _flat(s)
    if min_max:
        return _densities_of(_row_min_max(flat), s.shape)
    out = flat.copy()
    out[_constant_rows(flat)] = 1.0
    return _densities_of(out, s.shape, in_place=True)


def _densities_of(out: np.ndarray, shape: tuple[int, ...], in_place: bool = False) -> np.ndarray:
    """``out`` (rows ``(N, P)``, constant rows already ones) normalised to sum 1 per row; empty rows uniform."""
    out = out if in_place else out.copy()
    total = out.sum(axis=1, keepdims=True)
    empty = total[:, 0] <= 0
    total[empty] = 1.0
    out /= total
    out[empty] = 1.0 / out.shape[1]
    return out.reshape(shape)


class _Stack:
    """A stack of maps ``(N, h, w)`` in float64 and its per-map quantities, each computed once, when a metric
    first asks for it, and shared by every metric of ``all_metrics_batch``. A stack of one map repeated (the
    centre-bias and uniform baselines) computes them on that one map and broadcasts them (read-only views)."""

    def __init__(self, maps: np.ndarray, what: str):
        self.maps = _as3d(maps, what)
        n = len(self.maps)
        self.repeated = n > 1 and bool((self.maps == self.maps[:1]).all())
        self._one = self.maps[:1] if self.repeated else self.maps
        self._cache: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.maps)

    def _get(self, key: str, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        if key not in self._cache:
            value = compute(self._one)
            if self.repeated:
                value = np.broadcast_to(value, (len(self.maps), *value.shape[1:]))
            self._cache[key] = value
        return self._cache[key]

    def one(self, key: str) -> np.ndarray:
        """A per-map quantity of the repeated map, unbroadcast (``repeated`` only)."""
        return self._cache[key][:1]

    @property
    def flat(self) -> np.ndarray:
        return _flat(self.maps)

    @property
    def finite(self) -> np.ndarray:
        return self._get("finite", _finite_rows)

    @property
    def constant(self) -> np.ndarray:
        return self._get("constant", _constant_rows)

    @property
    def norm(self) -> np.ndarray:
        """Min-max normalised rows ``(N, h * w)`` (``_min_max``)."""
        return self._get("norm", lambda s: _row_min_max(_flat(s)))

    def density(self, min_max: bool) -> np.ndarray:
        if min_max:  # from the min-max rows already computed: the same numbers as _densities(s, True)
            if self.repeated:
                return self._get("density_mm", lambda s: _densities_of(_row_min_max(_flat(s)), s.shape))
            if "density_mm" not in self._cache:
                self._cache["density_mm"] = _densities_of(self.norm, self.maps.shape)
            return self._cache["density_mm"]
        return self._get("density", lambda s: _densities(s, False))

    @property
    def z(self) -> np.ndarray:
        """z-scored maps (a constant map only centred)."""
        if self.repeated:
            return self._get("z", lambda s: (s - s.mean(axis=(1, 2), keepdims=True)) / np.where(
                _constant_rows(s)[:, None, None], 1.0, s.std(axis=(1, 2), keepdims=True)))
        if "z" not in self._cache:
            self._cache["z"] = (self.maps - self.mean) / np.where(self.constant[:, None, None], 1.0, self.std)
        return self._cache["z"]

    @property
    def total(self) -> np.ndarray:
        """Each map's sum."""
        return self._get("total", lambda s: s.sum(axis=(1, 2)))

    @property
    def positive(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``_ragged_rows(maps > 0)``: the rows, columns, counts and first positions of the positive pixels."""
        if "positive" not in self._cache:
            self._cache["positive"] = _ragged_rows(self.flat > 0)
        return self._cache["positive"]

    @property
    def mean(self) -> np.ndarray:
        return self._get("mean", lambda s: s.mean(axis=(1, 2), keepdims=True))

    @property
    def std(self) -> np.ndarray:
        return self._get("std", lambda s: s.std(axis=(1, 2), keepdims=True))


def _stack(maps: np.ndarray | _Stack, what: str) -> _Stack:
    return maps if isinstance(maps, _Stack) else _Stack(maps, what)


def prepare(maps: np.ndarray) -> _Stack:
    """A stack ``(N, h, w)`` whose per-map work (densities, mean, std, fixated pixels) the batched forms do once
    and share: pass it to several ``*_batch`` or ``all_metrics_batch`` calls in place of the array (the gaze
    maps of a batch, scored for several methods)."""
    return _Stack(maps, "maps")


def _select_rows(positive: tuple[np.ndarray, ...], keep: np.ndarray) -> tuple[np.ndarray, ...]:
    """``_ragged_rows`` restricted to the rows where ``keep``, renumbered 0, 1, ... in order."""
    rows, cols, counts, _ = positive
    chosen = keep[rows]
    rows, cols, counts = (np.cumsum(keep) - 1)[rows[chosen]], cols[chosen], counts[keep]
    return rows, cols, counts, np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def nss_batch(saliency: np.ndarray, fixation_counts: np.ndarray) -> np.ndarray:
    """``nss`` of every map; the z-scores are taken at the fixated pixels only."""
    s, f = _stack(saliency, "saliency"), _stack(fixation_counts, "fixation_counts")
    _check_same(s.maps, f.maps)
    const = s.constant
    rows, cols, _, _ = f.positive
    std = np.where(const, 1.0, s.std.reshape(len(s)))
    z = (s.flat[rows, cols] - s.mean.reshape(len(s))[rows]) / std[rows]
    total = f.total
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.bincount(rows, weights=f.flat[rows, cols] * z, minlength=len(s)) / total
    out[const] = 0.0
    out[(total <= 0) | ~s.finite] = np.nan
    return out


def cc_batch(saliency: np.ndarray, gaze_density: np.ndarray) -> np.ndarray:
    s, g = _stack(saliency, "saliency"), _stack(gaze_density, "gaze_density")
    _check_same(s.maps, g.maps)
    axes = (1, 2)
    const = s.constant | g.constant
    out = (s.z * g.z).mean(axis=axes)  # rows where either map is constant are 0 below
    out[const] = 0.0
    out[(g.total <= 0) | ~s.finite] = np.nan
    return out


def kl_div_batch(saliency: np.ndarray, gaze_density: np.ndarray) -> np.ndarray:
    s, g = _stack(saliency, "saliency"), _stack(gaze_density, "gaze_density")
    _check_same(s.maps, g.maps)
    p, q = g.density(min_max=False), s.density(min_max=False)
    terms = np.zeros(p.shape)
    nz = p > 0  # terms with p = 0 are 0: the blurred gaze covers a small part of the frame
    terms[nz] = p[nz] * np.log(EPS + p[nz] / (q[nz] + EPS))
    out = terms.sum(axis=(1, 2))
    out[(g.total <= 0) | ~s.finite] = np.nan
    return out


def sim_batch(saliency: np.ndarray, gaze_density: np.ndarray) -> np.ndarray:
    s, g = _stack(saliency, "saliency"), _stack(gaze_density, "gaze_density")
    _check_same(s.maps, g.maps)
    out = np.minimum(s.density(min_max=True), g.density(min_max=True)).sum(axis=(1, 2))
    out[(g.total <= 0) | ~s.finite] = np.nan
    return out


def info_gain_batch(saliency: np.ndarray, baseline: np.ndarray, fixation_counts: np.ndarray) -> np.ndarray:
    """``info_gain`` of every map; the gain is taken at the fixated pixels only."""
    s, f = _stack(saliency, "saliency"), _stack(fixation_counts, "fixation_counts")
    b = np.asarray(baseline, dtype=np.float64)
    b = b[None] if b.ndim == 2 else b  # one baseline for the whole batch, or one per map
    _check_same(s.maps[0], b[0], f.maps[0])
    if len(b) not in (1, len(s)) or len(f) != len(s):
        raise ValueError(f"batches must have the same length, got {len(s)}, {len(b)}, {len(f)}")
    rows, cols, _, _ = f.positive
    p = _flat(s.density(min_max=True))[rows, cols]
    q = _flat(_densities(b, min_max=True))[rows if len(b) > 1 else 0, cols]
    gain = np.log2(EPS + p) - np.log2(EPS + q)
    total = f.total
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.bincount(rows, weights=f.flat[rows, cols] * gain, minlength=len(s)) / total
    out[(total <= 0) | ~s.finite] = np.nan
    return out


def _ragged_rows(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The True entries of ``(N, P)`` row by row: their rows and columns, each row's count and first position."""
    rows, cols = np.nonzero(mask)
    counts = np.bincount(rows, minlength=len(mask))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return rows, cols, counts, starts


def _sums_by_length(terms: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The sum of each of the consecutive runs of ``terms`` of the given ``lengths``, with numpy's own summation
    of a 1-D array (the runs of one length are summed as one 2-D block, which numpy sums row by row the same
    way), so that a run's sum equals the per-map form's to the last bit. One numpy call per distinct length."""
    out = np.empty(len(lengths))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for length in np.unique(lengths):
        which = np.flatnonzero(lengths == length)
        out[which] = terms[starts[which][:, None] + np.arange(length)[None, :]].sum(axis=1)
    return out


def auc_judd_batch(saliency: np.ndarray, fixation_counts: np.ndarray) -> np.ndarray:
    """``auc_judd`` of every map at once (the same numbers, to the last bit): one sort of every map (of the one
    map, when repeated), the pixels below and tied with each threshold counted by a batched binary search, the
    tie rule and the trapezoid on the concatenated thresholds of all maps."""
    s, f = _stack(saliency, "saliency"), _stack(fixation_counts, "fixation_counts")
    _check_lengths(s.maps, f.maps)
    n_pix = s.maps.shape[1] * s.maps.shape[2]
    n_fix_all = f.positive[2]
    out = np.full(len(s), np.nan)
    valid = (n_fix_all > 0) & (n_fix_all < n_pix) & s.finite
    if not valid.any():
        return out
    norm = s.norm
    rows, cols, n_fix, row_start = _select_rows(f.positive, valid)
    n_neg = n_pix - n_fix
    values = norm[np.flatnonzero(valid)[rows], cols]
    order = np.lexsort((-values, rows))  # each map's thresholds in descending order, maps kept in order
    values = values[order]
    position = np.arange(len(values)) - row_start[rows]  # 0-based rank of a threshold within its map
    # all pixels of the map below (left) and not above (right) each threshold, by a batched binary search
    padded = torch.from_numpy(np.zeros((len(n_fix), int(n_fix.max()))))
    padded[torch.from_numpy(rows), torch.from_numpy(position)] = torch.from_numpy(values)
    if s.repeated:
        ordered = torch.from_numpy(s._get("sorted", lambda one: np.sort(_row_min_max(_flat(one)), axis=1))[0].copy())
    else:
        ordered = torch.from_numpy(np.sort(norm[valid], axis=1))
    left = torch.searchsorted(ordered, padded, side="left").numpy()[rows, position]
    right = torch.searchsorted(ordered, padded, side="right").numpy()[rows, position]
    # runs of equal thresholds within a map: start (global), length, and rank j (1-based) within the run
    new_run = np.concatenate([[True], (values[1:] != values[:-1]) | (rows[1:] != rows[:-1])])
    run = np.cumsum(new_run) - 1
    run_starts = np.flatnonzero(new_run)
    run_lengths = np.diff(np.concatenate([run_starts, [len(values)]]))
    first_of_run = run_starts[run] - row_start[rows]  # fixated pixels of the map strictly above the threshold
    j = np.arange(len(values)) - run_starts[run] + 1
    fix_not_above = n_fix[rows] - first_of_run  # fixated pixels <= the threshold
    fix_below = fix_not_above - run_lengths[run]
    past_tied = right - fix_not_above  # non-fixated pixels <= the threshold
    first_tied = left - fix_below  # non-fixated pixels < the threshold
    above, tied = n_neg[rows] - past_tied, past_tied - first_tied
    expected_above = above + tied * j / (run_lengths[run] + 1)
    # each map's ROC points (0, 0), (fp_i, i / n_fix), ..., (1, 1) concatenated; the trapezoid rule on each
    points = n_fix + 2
    point_start = np.concatenate([[0], np.cumsum(points)[:-1]])
    tp, fp = np.zeros(points.sum()), np.zeros(points.sum())
    inner = point_start[rows] + 1 + position
    tp[inner] = (position + 1) / n_fix[rows]
    fp[inner] = expected_above / n_neg[rows]
    last = point_start + points - 1
    tp[last], fp[last] = 1.0, 1.0
    terms = np.diff(fp) * (tp[1:] + tp[:-1]) / 2.0
    terms = np.delete(terms, last[:-1])  # the steps from one map's (1, 1) to the next map's (0, 0)
    out[valid] = _sums_by_length(terms, points - 1)
    return out


def auc_borji_batch(saliency: np.ndarray, fixation_counts: np.ndarray, rng: np.random.Generator,
                    splits: int = BORJI_SPLITS) -> np.ndarray:
    """``auc_borji`` of every map at once, drawing from ``rng`` the same random negatives in the same order
    (one draw for the whole batch is the per-map draws concatenated), so the numbers are the same to the last
    bit. Each value is reduced to how many thresholds it reaches, counted per split by one ``bincount``."""
    s, f = _stack(saliency, "saliency"), _stack(fixation_counts, "fixation_counts")
    _check_lengths(s.maps, f.maps)
    n_pix = s.maps.shape[1] * s.maps.shape[2]
    n_fix_all = f.positive[2]
    out = np.full(len(s), np.nan)
    out[(n_fix_all > 0) & s.finite & s.constant] = 0.5
    drawn = (n_fix_all > 0) & s.finite & ~s.constant
    if not drawn.any():
        return out
    kept, norm = np.flatnonzero(drawn), s.norm
    rows, cols, n_fix, _ = _select_rows(f.positive, drawn)
    n_maps, n_t = len(kept), len(BORJI_THRESHOLDS)
    ascending = BORJI_THRESHOLDS[::-1]

    def reached(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
        """Per group: how many of ``values`` are >= each threshold, ``(n_groups, T)``."""
        missed = n_t - np.searchsorted(ascending, values, side="right")  # thresholds above the value
        hist = np.bincount(group * (n_t + 1) + missed, minlength=n_groups * (n_t + 1)).reshape(n_groups, n_t + 1)
        return np.cumsum(hist[:, :n_t], axis=1)  # >= t_i  <=>  fewer than i + 1 thresholds missed

    tp = reached(norm[kept[rows], cols], rows, n_maps) / n_fix[:, None]
    draws = rng.integers(0, n_pix, size=splits * int(n_fix.sum()))
    per_map = splits * n_fix
    owner = np.repeat(np.arange(n_maps), per_map)
    split = owner * splits + (np.arange(len(draws)) - np.repeat(np.cumsum(per_map) - per_map, per_map)) // \
        np.repeat(n_fix, per_map)
    fp = reached(norm[kept[owner], draws], split, n_maps * splits) / np.repeat(n_fix, splits)[:, None]
    tp = np.concatenate([np.zeros((n_maps, 1)), tp, np.ones((n_maps, 1))], axis=1)
    fp = np.concatenate([np.zeros((len(fp), 1)), fp, np.ones((len(fp), 1))], axis=1)
    tp = np.repeat(tp, splits, axis=0)
    areas = (np.diff(fp, axis=1) * (tp[:, 1:] + tp[:, :-1]) / 2).sum(axis=1)  # one row per (map, split)
    out[drawn] = areas.reshape(n_maps, splits).mean(axis=1)
    return out


def shuffled_auc_batch(saliency: np.ndarray, fixation_counts: np.ndarray,
                       other_fixation_counts: np.ndarray) -> np.ndarray:
    """``shuffled_auc`` of every map at once: the positives and negatives of all maps as one list each, keyed by
    (map, rank of the value among all values of the batch), so one sorted search serves every map."""
    s, f = _stack(saliency, "saliency"), _stack(fixation_counts, "fixation_counts")
    o = _stack(other_fixation_counts, "other_fixation_counts")
    _check_lengths(s.maps, f.maps, o.maps)
    out = np.full(len(s), np.nan)
    defined = (f.total > 0) & (o.total > 0) & s.finite
    out[defined & s.constant] = 0.5
    keep = defined & ~s.constant
    scored = np.flatnonzero(keep)
    if not len(scored):
        return out
    flat = s.flat
    pos_rows, pos_cols, _, _ = _select_rows(f.positive, keep)
    neg_rows, neg_cols, _, _ = _select_rows(o.positive, keep)
    pos, neg = flat[scored[pos_rows], pos_cols], flat[scored[neg_rows], neg_cols]
    pos_w, neg_w = f.flat[scored[pos_rows], pos_cols], o.flat[scored[neg_rows], neg_cols]
    _, rank = np.unique(np.concatenate([pos, neg]), return_inverse=True)  # equal values, equal ranks
    out[scored] = weighted_rank_auc(pos_rows, rank[:len(pos)], pos_w, neg_rows, rank[len(pos):], neg_w, len(scored))
    return out


def weighted_rank_auc(pos_rows: np.ndarray, pos_rank: np.ndarray, pos_w: np.ndarray, neg_rows: np.ndarray,
                      neg_rank: np.ndarray, neg_w: np.ndarray, n_rows: int) -> np.ndarray:
    """Per row (map), the weighted probability that a positive outranks a negative, ties counting half: the
    shuffled-AUC sum, for all rows at once. Positives and negatives are keyed by (row, rank), so one sorted search
    over the negatives serves every row; the weights are fixation counts (a pixel fixated twice counts twice)."""
    width = int(max(pos_rank.max(initial=0), neg_rank.max(initial=0))) + 2
    pos_key, neg_key = pos_rows * width + pos_rank, neg_rows * width + neg_rank
    order = np.argsort(neg_key, kind="stable")
    neg_key, neg_sorted_w = neg_key[order], neg_w[order]
    cum = np.concatenate([[0.0], np.cumsum(neg_sorted_w)])
    below = cum[np.searchsorted(neg_key, pos_key, side="left")] - cum[np.searchsorted(neg_key, pos_rows * width)]
    equal = cum[np.searchsorted(neg_key, pos_key, side="right")] - cum[np.searchsorted(neg_key, pos_key)]
    numerator = np.bincount(pos_rows, weights=pos_w * (below + 0.5 * equal), minlength=n_rows)
    return numerator / (np.bincount(pos_rows, weights=pos_w, minlength=n_rows)
                        * np.bincount(neg_rows, weights=neg_w, minlength=n_rows))


def all_metrics_batch(saliency: np.ndarray, fixation_counts: np.ndarray, gaze_density: np.ndarray,
                      other_fixation_counts: np.ndarray, baseline: np.ndarray,
                      rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every metric for a batch of observations, as ``{name: (N,)}`` in the order of ``METRICS``. The per-map
    work the metrics share (min-max, densities, mean and std, sorts) is done once per batch, and once per
    batch, not per map, when every map of the batch is the same (a static baseline). Any of the stacks may be
    given as ``prepare(maps)``, to share that work with other calls (the gaze maps, scored for several methods)."""
    s, gaze = _stack(saliency, "saliency"), _stack(gaze_density, "gaze_density")
    fixation_counts = _stack(fixation_counts, "fixation_counts")
    other_fixation_counts = _stack(other_fixation_counts, "other_fixation_counts")
    return {
        "nss": nss_batch(s, fixation_counts),
        "auc_judd": auc_judd_batch(s, fixation_counts),
        "auc_borji": auc_borji_batch(s, fixation_counts, rng),
        "shuffled_auc": shuffled_auc_batch(s, fixation_counts, other_fixation_counts),
        "kl_div": kl_div_batch(s, gaze),
        "cc": cc_batch(s, gaze),
        "sim": sim_batch(s, gaze),
        "info_gain": info_gain_batch(s, baseline, fixation_counts),
    }
