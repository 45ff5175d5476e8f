"""The evaluator's fast scoring: every metric of ``gaze.metrics`` for a batch of observations and several methods,
with the work that does not change done once.

The numbers are those of ``metrics.all_metrics_batch`` (and so of the per-map reference forms, the tests' oracle)
to 1e-6, in float64; what changes is where the work is done:

- the gaze side of a batch (fixated pixels and their counts, the other observations' fixated pixels, the gaze
  density's normalised values where it is > 0, its z-scores) once per batch, for every method (``GazeBatch``);
- a map that is the same for every observation (the centre-bias and uniform baselines) has its per-map work
  (min-max, densities, z-scores, its sorted values, each pixel's AUC-Borji level and its rank) done once per
  evaluation, so that its per-observation cost is only at the fixated pixels, the random negatives and where the
  gaze density is > 0 (``Scorer``, which keeps them between batches);
- a map that changes (intensity, an agent's attention) is never normalised as a whole: its densities are taken at
  the pixels a metric reads; a map of small integers (the intensity baseline's grey levels) has its ranks from a
  histogram instead of a sort;
- the AUC-Borji random negatives, drawn from a generator seeded alike for every method, are drawn once per batch
  when the methods' maps are defined on the same observations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from rl_saliency.gaze.metrics import BORJI_SPLITS, BORJI_THRESHOLDS, EPS, METRICS, weighted_rank_auc

MAX_INTEGER_SPAN = 4096  # maps of integers spanning up to this many values are ranked by histogram
_ASCENDING = BORJI_THRESHOLDS[::-1]
_N_T = len(BORJI_THRESHOLDS)


def _ragged(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(mask)
    return rows, cols, np.bincount(rows, minlength=len(mask))


def _select(rows: np.ndarray, cols: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ragged entries restricted to the rows where ``keep``, renumbered 0, 1, ... in order; their counts."""
    chosen = keep[rows]
    new_rows = (np.cumsum(keep) - 1)[rows[chosen]]
    return new_rows, cols[chosen], np.bincount(new_rows, minlength=int(keep.sum()))


def _constant(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    top = np.maximum(np.maximum(np.abs(lo), np.abs(hi)), 1e-300)
    with np.errstate(invalid="ignore"):
        return ~((hi - lo) > 1e-12 * top)


class GazeBatch:
    """The gaze side of every metric for one batch: fixation counts, gaze densities and shuffled-AUC negatives,
    each ``(N, h, w)``, reduced to what the metrics read (the maps' non-zero pixels, their sums and spreads)."""

    def __init__(self, counts: np.ndarray, density: np.ndarray, others: np.ndarray):
        n = len(counts)
        self.n, self.shape = n, counts.shape[1:]
        self.n_pix = n_pix = int(np.prod(self.shape))
        self.f_rows, self.f_cols, self.n_fix, self.f_w, self.f_total = _sparse(counts)
        self.o_rows, self.o_cols, _, self.o_w, self.o_total = _sparse(others)
        g32 = np.asarray(density).reshape(n, -1)
        lo, hi = g32.min(axis=1).astype(np.float64), g32.max(axis=1).astype(np.float64)
        self.g_constant = _constant(lo, hi)
        rows, cols = np.nonzero(g32 > 0)
        values = g32[rows, cols].astype(np.float64)
        self.g_rows, self.g_cols, self.g_values = rows, cols, values
        self.g_dense: np.ndarray | None = None  # the whole density, where a map has negative values
        if (lo < 0).any():
            self.g_dense = np.asarray(g32, np.float64)
            self.g_total = self.g_dense.sum(axis=1)
            std = self.g_dense.std(axis=1)
        else:  # its sums from the positive pixels
            self.g_total = np.bincount(rows, weights=values, minlength=n)
            mean = self.g_total / n_pix
            std = np.sqrt(np.maximum(np.bincount(rows, weights=values * values, minlength=n) / n_pix - mean * mean,
                                     0.0))
        self.g_mean = self.g_total / n_pix
        std[self.g_constant] = 1.0
        self.g_std = std
        # KL's p: the density normalised to sum 1, where > 0 (a constant map uniform, an empty one uniform)
        special = self.g_constant | (self.g_total <= 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.p_rows, self.p_cols, self.p = rows, cols, values / self.g_total[rows]
        # SIM's gaze side: min-max then sum 1, where > 0 (a saliency density is >= 0: elsewhere min() is 0); a map
        # with no zero pixel has its minimum elsewhere: done densely, as every special row
        span = np.where(self.g_constant, 1.0, hi - lo)
        mm = (values - lo[rows]) / span[rows]
        mm_total = np.bincount(rows, weights=mm, minlength=n)
        dense = special | (lo != 0) | (mm_total <= 0)
        if dense.any():
            self._dense_rows(np.asarray(g32, np.float64), lo, span)
        else:
            self.m_rows, self.m_cols, self.m = rows, cols, mm / mm_total[rows]

    def _dense_rows(self, g: np.ndarray, lo: np.ndarray, span: np.ndarray) -> None:
        """p and the min-max density with every row's form (the rare rows with no zero pixel, constant or empty)."""
        self.p_rows, self.p_cols, self.p = self._distribution(g.copy())
        self.m_rows, self.m_cols, self.m = self._distribution((g - lo[:, None]) / span[:, None])

    def _distribution(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each row of ``values`` (changed in place) as a distribution over its pixels: a constant row uniform, an
        empty one uniform too; returned at its positive pixels (rows, columns, values)."""
        values[self.g_constant] = 1.0
        total = values.sum(axis=1, keepdims=True)
        empty = total[:, 0] <= 0
        total[empty] = 1.0
        values /= total
        values[empty] = 1.0 / self.n_pix
        rows, cols, _ = _ragged(values > 0)
        return rows, cols, values[rows, cols]


def _sparse(maps: np.ndarray) -> tuple[np.ndarray, ...]:
    """The positive pixels of count maps ``(N, h, w)``: rows, columns, count per row, values (float64), row sums."""
    flat = np.asarray(maps).reshape(len(maps), -1)
    rows, cols = np.nonzero(flat > 0)
    values = flat[rows, cols].astype(np.float64)
    return (rows, cols, np.bincount(rows, minlength=len(flat)), values,
            np.asarray(flat, np.float64).sum(axis=1) if (flat < 0).any() else
            np.bincount(rows, weights=values, minlength=len(flat)))


@dataclass
class _Maps:
    """Per-map quantities of the saliency maps of one method and batch: ``n`` rows (1 for a map repeated over the
    batch), and ``row`` (N,) the stats row of each observation."""

    s: np.ndarray  # (n, P) float64
    row: np.ndarray
    finite: np.ndarray
    constant: np.ndarray
    lo: np.ndarray
    span: np.ndarray  # 1 where constant
    mean: np.ndarray
    std: np.ndarray  # 1 where constant
    total: np.ndarray  # sum of s
    raw_total: np.ndarray  # KL's normaliser: sum of s (P where constant), <= 0 -> uniform
    mm_total: np.ndarray  # sum of the min-max map (P where constant)
    integer: bool  # every value an integer, spanning <= MAX_INTEGER_SPAN values: ranks by histogram
    static: bool
    source: np.ndarray | None = None  # the maps as given, when float32 (sorted faster than ``s``, same order)

    def at(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stats row of each observation row, and the map's values at (rows, cols)."""
        k = self.row[rows]
        return k, self.s.reshape(-1).take(k * self.s.shape[1] + cols)

    def norm(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Min-max normalised values at (observation rows, cols), as ``metrics._min_max`` computes them."""
        k, values = self.at(rows, cols)
        out = (values - self.lo[k]) / self.span[k]
        if self.constant.any():
            out[self.constant[k]] = 1.0
        return out

    def _normalised(self, k: np.ndarray, values: np.ndarray, total: np.ndarray) -> np.ndarray:
        empty = total <= 0
        with np.errstate(invalid="ignore", divide="ignore"):
            out = values / total[k]
        if empty.any():
            out[empty[k]] = 1.0 / self.s.shape[1]
        return out

    def density_raw(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """KL's density (the map over its sum; constant maps and maps summing to <= 0 uniform) at (rows, cols)."""
        k, values = self.at(rows, cols)
        if self.constant.any():
            values[self.constant[k]] = 1.0
        return self._normalised(k, values, self.raw_total)

    def density_mm(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """SIM's and information gain's density (the min-max map over its sum) at (rows, cols)."""
        return self._normalised(self.row[rows], self.norm(rows, cols), self.mm_total)

    def offsets(self) -> np.ndarray:
        """``integer`` maps: each value minus its map's minimum, as int64 ``(n, P)``."""
        if "_offsets" not in self.__dict__:
            self.__dict__["_offsets"] = (self.s - self.lo[:, None]).astype(np.int64)
        return self.__dict__["_offsets"]


def _map_stats(s: np.ndarray, row: np.ndarray, static: bool) -> _Maps:
    n_pix = s.shape[1]
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(s).all(axis=1)
        lo, hi = s.min(axis=1), s.max(axis=1)
        constant = _constant(lo, hi)
        span = np.where(constant, 1.0, hi - lo)
        total = s.sum(axis=1)
        mean = total / n_pix
        std = np.where(constant, 1.0, s.std(axis=1))
        raw_total = np.where(constant, float(n_pix), total)
        if static:  # summed as the reference sums it (one map: no cost)
            mm_total = np.where(constant, float(n_pix), ((s - lo[:, None]) / span[:, None]).sum(axis=1))
        else:
            mm_total = np.where(constant, float(n_pix), (total - n_pix * lo) / span)
        integer = bool(finite.all() and (hi - lo).max(initial=0) <= MAX_INTEGER_SPAN
                       and np.array_equal(s, np.floor(s)))
    return _Maps(s, row, finite, constant, lo, span, mean, std, total, raw_total, mm_total, integer, static)


class _Static:
    """Everything a map repeated over every observation needs, computed once."""

    def __init__(self, one: np.ndarray, baseline_gain_q: np.ndarray):
        self.stats = _map_stats(one[None], np.zeros(1, np.int64), static=True)
        st = self.stats
        all_cols = np.arange(one.size)
        zeros = np.zeros(one.size, np.int64)
        norm = st.norm(zeros, all_cols)
        self.sorted_norm = np.sort(norm)
        self.missed = (_N_T - np.searchsorted(_ASCENDING, norm, side="right")).astype(np.int64)
        self.rank = np.unique(one, return_inverse=True)[1].reshape(-1).astype(np.int64)
        self.z = (one - st.mean[0]) / st.std[0]
        self.density_raw = st.density_raw(zeros, all_cols)
        self.density_mm = st.density_mm(zeros, all_cols)
        self.gain = np.log2(EPS + self.density_mm) - np.log2(EPS + baseline_gain_q)


def _repeated(maps: np.ndarray) -> bool:
    return len(maps) > 1 and bool((maps[1:] == maps[:1]).all())


class Scorer:
    """Scores batches of saliency maps against a batch's gaze; keeps the static maps' work between batches (one
    ``Scorer`` per evaluation: ``baseline`` is information gain's reference map)."""

    def __init__(self, baseline: np.ndarray):
        b = np.asarray(baseline, np.float64).reshape(1, -1)
        st = _map_stats(b, np.zeros(1, np.int64), static=True)
        cols = np.arange(b.shape[1])
        self.baseline_q = st.density_mm(np.zeros(b.shape[1], np.int64), cols)
        self._static: dict[bytes, _Static] = {}
        self._drawn: dict[tuple, tuple] = {}

    def score(self, maps: np.ndarray, gaze: GazeBatch, seed: int) -> dict[str, np.ndarray]:
        """Every metric ``{name: (N,)}`` (in the order of ``METRICS``) of ``maps`` ``(N, h, w)``; AUC-Borji draws
        its negatives from ``np.random.default_rng(seed)``, as ``metrics.all_metrics_batch`` does from it."""
        maps = np.asarray(maps)
        n = len(maps)
        if n != gaze.n or maps.shape[1:] != gaze.shape:
            raise ValueError(f"maps {maps.shape} do not match the gaze batch ({gaze.n}, {gaze.shape})")
        flat = maps.reshape(n, -1)
        static = None
        if n > 0 and (n == 1 or _repeated(flat)):
            one = np.asarray(flat[0], np.float64)
            key = one.tobytes()
            if key not in self._static:
                if len(self._static) > 16:
                    self._static.clear()
                self._static[key] = _Static(one, self.baseline_q)
            static = self._static[key]
            st = dataclasses.replace(static.stats, row=np.zeros(n, np.int64))
        else:
            st = _map_stats(np.asarray(flat, np.float64), np.arange(n), static=False)
            if flat.dtype == np.float32:
                st.source = flat
        finite = st.finite[st.row]
        out = {
            "nss": self._nss(st, static, gaze),
            "auc_judd": self._auc_judd(st, static, gaze, finite),
            "auc_borji": self._auc_borji(st, static, gaze, finite, seed),
            "shuffled_auc": self._shuffled_auc(st, static, gaze, finite),
            "kl_div": self._kl(st, static, gaze),
            "cc": self._cc(st, static, gaze),
            "sim": self._sim(st, static, gaze),
            "info_gain": self._info_gain(st, static, gaze),
        }
        for name in ("nss", "kl_div", "cc", "sim", "info_gain"):
            total = gaze.f_total if name in ("nss", "info_gain") else gaze.g_total
            out[name][(total <= 0) | ~finite] = np.nan
        assert list(out) == list(METRICS)
        return out

    # ------------------------------------------------------------------------------------------ each metric

    @staticmethod
    def _nss(st: _Maps, static: _Static | None, gaze: GazeBatch) -> np.ndarray:
        rows, cols = gaze.f_rows, gaze.f_cols
        if static is not None:
            z = static.z[cols]
        else:
            k = st.row[rows]
            z = (st.s[k, cols] - st.mean[k]) / st.std[k]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.bincount(rows, weights=gaze.f_w * z, minlength=gaze.n) / gaze.f_total
        out[st.constant[st.row]] = 0.0
        return out

    @staticmethod
    def _kl(st: _Maps, static: _Static | None, gaze: GazeBatch) -> np.ndarray:
        rows, cols, p = gaze.p_rows, gaze.p_cols, gaze.p
        q = static.density_raw[cols] if static is not None else st.density_raw(rows, cols)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.bincount(rows, weights=p * np.log(EPS + p / (q + EPS)), minlength=gaze.n)

    @staticmethod
    def _sim(st: _Maps, static: _Static | None, gaze: GazeBatch) -> np.ndarray:
        rows, cols = gaze.m_rows, gaze.m_cols
        d = static.density_mm[cols] if static is not None else st.density_mm(rows, cols)
        with np.errstate(invalid="ignore"):
            return np.bincount(rows, weights=np.minimum(d, gaze.m), minlength=gaze.n)

    def _info_gain(self, st: _Maps, static: _Static | None, gaze: GazeBatch) -> np.ndarray:
        rows, cols = gaze.f_rows, gaze.f_cols
        if static is not None:
            gain = static.gain[cols]
        else:
            gain = np.log2(EPS + st.density_mm(rows, cols)) - np.log2(EPS + self.baseline_q[cols])
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.bincount(rows, weights=gaze.f_w * gain, minlength=gaze.n) / gaze.f_total

    @staticmethod
    def _cc(st: _Maps, static: _Static | None, gaze: GazeBatch) -> np.ndarray:
        """Pearson's r as the mean product of z-scores, from the sums: (S.G - P ms mg) / (P ss sg), S.G over the
        density's positive pixels."""
        n_pix = gaze.n_pix
        with np.errstate(invalid="ignore", divide="ignore"):
            if static is not None:
                dot = gaze.g_dense @ static.z if gaze.g_dense is not None else np.bincount(
                    gaze.g_rows, weights=static.z[gaze.g_cols] * gaze.g_values, minlength=gaze.n)
                out = (dot - gaze.g_mean * static.z.sum()) / (gaze.g_std * n_pix)
            else:
                dot = np.einsum("ij,ij->i", st.s, gaze.g_dense) if gaze.g_dense is not None else np.bincount(
                    gaze.g_rows, weights=st.at(gaze.g_rows, gaze.g_cols)[1] * gaze.g_values, minlength=gaze.n)
                out = (dot - n_pix * st.mean * gaze.g_mean) / (st.std * gaze.g_std * n_pix)
        out[st.constant[st.row] | gaze.g_constant] = 0.0
        return out

    @staticmethod
    def _below(st: _Maps, static: _Static | None, rows: np.ndarray, cols: np.ndarray,
               values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For thresholds ``values`` (the min-max values of the maps at (rows, cols)): how many pixels of the map
        are < and <= each."""
        if static is not None:
            ordered = static.sorted_norm
            return np.searchsorted(ordered, values, side="left"), np.searchsorted(ordered, values, side="right")
        k = st.row[rows]
        if st.integer:  # a histogram of each map's integer offsets: the min-max map keeps their order and ties
            offsets = st.offsets()
            width = int(offsets.max(initial=0)) + 1
            hist = np.bincount((np.arange(len(st.s))[:, None] * width + offsets).ravel(),
                               minlength=len(st.s) * width).reshape(len(st.s), width)
            cum = np.cumsum(hist, axis=1)
            at = k * width + offsets.reshape(-1).take(k * offsets.shape[1] + cols)
            below_or_at = cum.reshape(-1).take(at)
            return below_or_at - hist.reshape(-1).take(at), below_or_at
        # one sort per map (of its float32 values when it came as float32: the same order, twice as fast), then a
        # binary search per map; the min-max map keeps the order, so the sorted values are normalised after
        source = st.source if st.source is not None else st.s
        left, right = np.empty(len(k), np.int64), np.empty(len(k), np.int64)
        order = np.argsort(k, kind="stable")
        bounds = np.searchsorted(k[order], np.arange(len(st.s) + 1))
        for row in np.unique(k):
            ordered = np.sort(source[row]).astype(np.float64)
            ordered = np.ones_like(ordered) if st.constant[row] else (ordered - st.lo[row]) / st.span[row]
            which = order[bounds[row]:bounds[row + 1]]
            left[which] = np.searchsorted(ordered, values[which], side="left")
            right[which] = np.searchsorted(ordered, values[which], side="right")
        return left, right

    def _auc_judd(self, st: _Maps, static: _Static | None, gaze: GazeBatch, finite: np.ndarray) -> np.ndarray:
        n_pix = gaze.n_pix
        out = np.full(gaze.n, np.nan)
        valid = (gaze.n_fix > 0) & (gaze.n_fix < n_pix) & finite
        if not valid.any():
            return out
        kept = np.flatnonzero(valid)
        rows, cols, n_fix = _select(gaze.f_rows, gaze.f_cols, valid)
        n_neg = n_pix - n_fix
        values = st.norm(kept[rows], cols)
        order = np.lexsort((-values, rows))  # each map's thresholds in descending order, maps kept in order
        values, cols = values[order], cols[order]
        row_start = np.concatenate([[0], np.cumsum(n_fix)[:-1]])
        position = np.arange(len(values)) - row_start[rows]
        left, right = self._below(st, static, kept[rows], cols, values)
        new_run = np.concatenate([[True], (values[1:] != values[:-1]) | (rows[1:] != rows[:-1])])
        run = np.cumsum(new_run) - 1
        run_starts = np.flatnonzero(new_run)
        run_lengths = np.diff(np.concatenate([run_starts, [len(values)]]))
        first_of_run = run_starts[run] - row_start[rows]
        j = np.arange(len(values)) - run_starts[run] + 1
        fix_not_above = n_fix[rows] - first_of_run
        fix_below = fix_not_above - run_lengths[run]
        past_tied = right - fix_not_above
        first_tied = left - fix_below
        above, tied = n_neg[rows] - past_tied, past_tied - first_tied
        expected_above = above + tied * j / (run_lengths[run] + 1)
        # trapezoid over each map's points (0, 0), (fp_1, tp_1), ..., (fp_n, tp_n), (1, 1)
        tp = (position + 1) / n_fix[rows]
        fp = expected_above / n_neg[rows]
        first = position == 0
        tp_prev = np.where(first, 0.0, np.concatenate([[0.0], tp[:-1]]))
        fp_prev = np.where(first, 0.0, np.concatenate([[0.0], fp[:-1]]))
        area = np.bincount(rows, weights=(fp - fp_prev) * (tp + tp_prev) / 2.0, minlength=len(kept))
        last = row_start + n_fix - 1
        area += (1.0 - fp[last]) * (1.0 + tp[last]) / 2.0
        out[kept] = area
        return out

    def _draws(self, gaze: GazeBatch, drawn: np.ndarray, n_fix: np.ndarray, seed: int,
               splits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """AUC-Borji's random pixels, shared by the methods of a batch: the pixels, each one's (map, split) key
        base ``split * (T + 1)``, its observation, and its position in the batch's flattened maps."""
        key = (id(gaze), seed, drawn.tobytes())
        if key not in self._drawn:
            self._drawn.clear()
            draws = np.random.default_rng(seed).integers(0, gaze.n_pix, size=splits * int(n_fix.sum()))
            split = np.repeat(np.arange(len(n_fix) * splits), np.repeat(n_fix, splits))
            observation = np.repeat(np.flatnonzero(drawn), splits * n_fix)
            self._drawn[key] = (draws, split * (_N_T + 1), observation, observation * gaze.n_pix + draws,
                                gaze)  # gaze kept alive: its id is not reused meanwhile
        return self._drawn[key][:4]

    def _auc_borji(self, st: _Maps, static: _Static | None, gaze: GazeBatch, finite: np.ndarray,
                   seed: int, splits: int = BORJI_SPLITS) -> np.ndarray:
        out = np.full(gaze.n, np.nan)
        constant = st.constant[st.row]
        out[(gaze.n_fix > 0) & finite & constant] = 0.5
        drawn = (gaze.n_fix > 0) & finite & ~constant
        if not drawn.any():
            return out
        kept = np.flatnonzero(drawn)
        rows, cols, n_fix = _select(gaze.f_rows, gaze.f_cols, drawn)
        n_maps = len(kept)
        draws, split_key, observation, at = self._draws(gaze, drawn, n_fix, seed, splits)
        if static is not None:
            missed_pos, missed_neg = static.missed[cols], static.missed.take(draws)
        elif st.integer:  # each integer offset's level, per map; the same floats as the min-max values
            offsets = st.offsets()
            width = int(offsets.max(initial=0)) + 1
            levels = np.arange(width)[None, :] / st.span[:, None]
            lut = (_N_T - np.searchsorted(_ASCENDING, levels.ravel(), side="right")).reshape(-1)
            flat = offsets.reshape(-1)
            k_pos = kept[rows]
            missed_pos = lut.take(k_pos * width + flat.take(k_pos * offsets.shape[1] + cols))
            missed_neg = lut.take(observation * width + flat.take(at))
        else:
            missed_pos = _N_T - np.searchsorted(_ASCENDING, st.norm(kept[rows], cols), side="right")
            values = (st.s.reshape(-1).take(at) - st.lo[observation]) / st.span[observation]
            missed_neg = _N_T - np.searchsorted(_ASCENDING, values, side="right")

        def reached(keys: np.ndarray, n_groups: int) -> np.ndarray:
            hist = np.bincount(keys, minlength=n_groups * (_N_T + 1))
            return np.cumsum(hist.reshape(n_groups, _N_T + 1)[:, :_N_T], axis=1)

        tp = reached(rows * (_N_T + 1) + missed_pos, n_maps) / n_fix[:, None]
        fp = reached(split_key + missed_neg, n_maps * splits) / np.repeat(n_fix, splits)[:, None]
        tp = np.concatenate([np.zeros((n_maps, 1)), tp, np.ones((n_maps, 1))], axis=1)
        fp = np.concatenate([np.zeros((len(fp), 1)), fp, np.ones((len(fp), 1))], axis=1)
        tp = np.repeat(tp, splits, axis=0)
        areas = (np.diff(fp, axis=1) * (tp[:, 1:] + tp[:, :-1]) / 2).sum(axis=1)
        out[kept] = areas.reshape(n_maps, splits).mean(axis=1)
        return out

    @staticmethod
    def _shuffled_auc(st: _Maps, static: _Static | None, gaze: GazeBatch, finite: np.ndarray) -> np.ndarray:
        out = np.full(gaze.n, np.nan)
        constant = st.constant[st.row]
        defined = (gaze.f_total > 0) & (gaze.o_total > 0) & finite
        out[defined & constant] = 0.5
        keep = defined & ~constant
        scored = np.flatnonzero(keep)
        if not len(scored):
            return out
        chosen = keep[gaze.f_rows]
        pos_rows, pos_cols, pos_w = (np.cumsum(keep) - 1)[gaze.f_rows[chosen]], gaze.f_cols[chosen], gaze.f_w[chosen]
        chosen = keep[gaze.o_rows]
        neg_rows, neg_cols, neg_w = (np.cumsum(keep) - 1)[gaze.o_rows[chosen]], gaze.o_cols[chosen], gaze.o_w[chosen]
        if static is not None:
            pos_rank, neg_rank = static.rank[pos_cols], static.rank[neg_cols]
        elif st.integer:
            pos_rank = (st.s[scored[pos_rows], pos_cols] - st.lo[scored[pos_rows]]).astype(np.int64)
            neg_rank = (st.s[scored[neg_rows], neg_cols] - st.lo[scored[neg_rows]]).astype(np.int64)
        else:
            both = np.concatenate([st.s[scored[pos_rows], pos_cols], st.s[scored[neg_rows], neg_cols]])
            rank = np.unique(both, return_inverse=True)[1].reshape(-1)
            pos_rank, neg_rank = rank[:len(pos_rows)], rank[len(pos_rows):]
        out[scored] = weighted_rank_auc(pos_rows, pos_rank, pos_w, neg_rows, neg_rank, neg_w, len(scored))
        return out
