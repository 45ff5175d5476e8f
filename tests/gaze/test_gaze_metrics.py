"""Metrics against the reference test vector, the constant-map conventions and brute-force definitions."""

from __future__ import annotations

import numpy as np
import pytest

from rl_saliency.gaze import metrics as M


def _counts(points: list[tuple[int, int]], shape=(40, 40)) -> np.ndarray:
    f = np.zeros(shape)
    for x, y in points:
        f[y, x] += 1
    return f


@pytest.fixture()
def vector():
    ys, xs = np.mgrid[0:40, 0:40].astype(float)
    s = np.exp(-0.5 * ((ys - 20) ** 2 + (xs - 20) ** 2) / np.sqrt(40**2 + 40**2))
    a = _counts([(0, 10), (1, 11), (2, 12), (2, 12), (2, 12)])
    b = _counts([(1, 21), (5, 25), (3, 33)])
    return s, a, b


def test_reference_test_vector(vector):
    s, a, b = vector
    assert M.nss(s, a) == pytest.approx(-0.7665941302533, abs=1e-10)
    assert M.nss(s, b) == pytest.approx(-0.6468290884950, abs=1e-10)
    assert M.nss(s, a + b) == pytest.approx(-0.7216822395940, abs=1e-10)
    assert M.auc_judd(s, a) == pytest.approx(0.3143393863494, abs=1e-10)
    assert M.auc_judd(s, b) == pytest.approx(0.4537674806930, abs=1e-10)
    assert M.auc_judd(s, a + b) == pytest.approx(0.3115328314513, abs=1e-10)
    uniform = np.full_like(s, 1.0 / s.size)
    assert M.kl_div(s, uniform) == pytest.approx(0.8396272788881, abs=1e-10)
    assert M.sim(s, uniform) == pytest.approx(0.5421412203524, abs=1e-10)


def test_constant_map_conventions(vector):
    _, a, b = vector
    const = np.full((40, 40), 3.0)
    rng = np.random.default_rng(0)
    assert M.nss(const, a) == 0.0
    assert M.auc_judd(const, a) == 0.5
    assert M.auc_borji(const, a, rng) == 0.5
    assert M.shuffled_auc(const, a, b) == 0.5
    assert M.cc(const, a) == 0.0
    # uniform density in KL / SIM / IG: identical to an explicit uniform map, whatever the constant
    uniform = np.full((40, 40), 1.0 / 1600)
    density = a + 0.1
    assert M.kl_div(const, density) == pytest.approx(M.kl_div(uniform, density))
    assert M.kl_div(np.zeros((40, 40)), density) == pytest.approx(M.kl_div(uniform, density))
    assert M.sim(const, density) == pytest.approx(M.sim(uniform, density))
    assert M.info_gain(const, uniform, a) == pytest.approx(0.0, abs=1e-12)


def test_no_fixations_is_undefined(vector):
    s, _, b = vector
    empty = np.zeros((40, 40))
    rng = np.random.default_rng(0)
    for value in (M.nss(s, empty), M.auc_judd(s, empty), M.auc_borji(s, empty, rng), M.shuffled_auc(s, empty, b),
                  M.kl_div(s, empty), M.cc(s, empty), M.sim(s, empty), M.info_gain(s, s, empty)):
        assert np.isnan(value)
    assert np.isnan(M.shuffled_auc(s, b, empty))  # no negatives


def test_perfect_and_inverted_maps():
    rng = np.random.default_rng(1)
    f = np.zeros((30, 30))
    f[5, 7] = 2
    f[20, 12] = 1
    s = f.copy()  # saliency exactly on the fixations
    assert M.auc_judd(s, f) == pytest.approx(1.0)
    assert M.auc_borji(s, f, rng) > 0.99
    assert M.nss(s, f) > 10
    # inverted: thresholds 4 then 3 give ROC points (0.5, 1.0) and (1.0, 1.0): area 0.25 by the definition
    assert M.auc_judd(-s + 5, f) == pytest.approx(0.25)
    assert M.sim(s, s) == pytest.approx(1.0)
    assert M.cc(s, s) == pytest.approx(1.0)
    assert M.kl_div(s, s) == pytest.approx(0.0, abs=1e-9)


def test_shuffled_auc_matches_brute_force_with_ties():
    rng = np.random.default_rng(2)
    s = rng.integers(0, 4, size=(12, 12)).astype(float)  # many ties
    f = rng.poisson(0.3, size=(12, 12)).astype(float)
    o = rng.poisson(0.5, size=(12, 12)).astype(float)
    pos = [(s.flat[k], f.flat[k]) for k in range(s.size) if f.flat[k] > 0]
    neg = [(s.flat[k], o.flat[k]) for k in range(s.size) if o.flat[k] > 0]
    num = sum(wp * wn * (1.0 if p > n else 0.5 if p == n else 0.0) for p, wp in pos for n, wn in neg)
    expected = num / (sum(w for _, w in pos) * sum(w for _, w in neg))
    assert M.shuffled_auc(s, f, o) == pytest.approx(expected, abs=1e-12)


def test_info_gain_brute_force(vector):
    s, a, _ = vector
    ys, xs = np.mgrid[0:40, 0:40]
    base = np.exp(-((ys - 10) ** 2 + (xs - 30) ** 2) / 50.0)

    def dens(m):
        m = (m - m.min()) / (m.max() - m.min())
        return m / m.sum()

    p, q = dens(s), dens(base)
    points = [(0, 10), (1, 11), (2, 12), (2, 12), (2, 12)]
    gains = [np.log2(M.EPS + p[y, x]) - np.log2(M.EPS + q[y, x]) for x, y in points]
    assert M.info_gain(s, base, a) == pytest.approx(np.mean(gains), abs=1e-10)


def test_batched_forms_match_single(vector):
    s, a, b = vector
    rng = np.random.default_rng(3)
    noise = rng.random((40, 40))
    sal = np.stack([s, noise, np.full((40, 40), 2.0), s])
    counts = np.stack([a, b, a, np.zeros((40, 40))])
    dens = counts + np.stack([np.zeros((40, 40)), rng.random((40, 40)), np.zeros((40, 40)), np.zeros((40, 40))])
    other = np.stack([b, a, b, a])
    base = np.ones((40, 40))
    out = M.all_metrics_batch(sal, counts, dens, other, base, np.random.default_rng(0))
    assert list(out) == list(M.METRICS)
    rng_single = np.random.default_rng(0)
    for k in range(4):
        expected = {
            "nss": M.nss(sal[k], counts[k]), "auc_judd": M.auc_judd(sal[k], counts[k]),
            "auc_borji": M.auc_borji(sal[k], counts[k], rng_single),
            "shuffled_auc": M.shuffled_auc(sal[k], counts[k], other[k]),
            "kl_div": M.kl_div(sal[k], dens[k]), "cc": M.cc(sal[k], dens[k]), "sim": M.sim(sal[k], dens[k]),
            "info_gain": M.info_gain(sal[k], base, counts[k]),
        }
        for name, value in expected.items():
            np.testing.assert_allclose(out[name][k], value, rtol=1e-9, atol=1e-12, err_msg=f"{name}[{k}]")
    assert np.isnan(out["nss"][3]) and out["nss"][2] == 0.0


def test_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        M.nss(np.ones((4, 4)), np.ones((5, 4)))
    with pytest.raises(ValueError, match="2-D"):
        M.cc(np.ones((2, 4, 4)), np.ones((4, 4)))


@pytest.mark.parametrize("n_fixated", [5, 300])  # both counting paths (compare, sort)
def test_auc_judd_matches_its_definition(n_fixated):
    rng = np.random.default_rng(4)
    s = np.round(rng.random((40, 40)), 2)  # ties
    f = np.zeros(1600)
    f[rng.choice(1600, n_fixated, replace=False)] = rng.integers(1, 4, n_fixated)
    f = f.reshape(40, 40)
    norm = (s - s.min()) / (s.max() - s.min())
    thresholds = sorted(norm[f > 0], reverse=True)
    tp, fp = [0.0], [0.0]
    for i, t in enumerate(thresholds, start=1):
        tp.append(i / n_fixated)
        fp.append(((norm >= t).sum() - i) / (1600 - n_fixated))
    tp.append(1.0)
    fp.append(1.0)
    assert M.auc_judd(s, f) == pytest.approx(np.trapezoid(tp, fp), abs=1e-12)
