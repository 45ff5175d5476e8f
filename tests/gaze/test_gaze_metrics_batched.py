"""The batched metric forms (one pass over a whole batch, no per-map loop) against the per-map reference forms,
which stay the oracle: the same numbers on random, plateau/tied, mostly-zero, uint8-like and constant maps, with
undefined cases (no fixation, non-finite maps) mixed into the same batch."""

from __future__ import annotations

import numpy as np
import pytest

from rl_saliency.gaze import metrics as M

SHAPE = (30, 26)


def _saliency(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    h, w = SHAPE
    if kind == "random":
        return rng.random((n, h, w))
    if kind == "plateau":  # block maps of a few levels: long runs of tied values
        return np.kron(rng.integers(0, 3, (n, 6, 13)), np.ones((5, 2))).astype(float)
    if kind == "mostly_zero":
        s = np.zeros((n, h, w))
        s[:, 4:9, 10:14] = rng.random((n, 1, 1)) + 0.1
        return s
    if kind == "uint8":
        return rng.integers(0, 256, (n, h, w)).astype(np.float32)
    if kind == "constant":
        return np.full((n, h, w), 2.5)
    raise ValueError(kind)


def _batch(kind: str, seed: int, n: int = 12):
    rng = np.random.default_rng(seed)
    h, w = SHAPE
    s = _saliency(kind, rng, n)
    counts = np.zeros((n, h * w))
    for k in range(n):
        fixated = rng.choice(h * w, int(rng.integers(1, 60)), replace=False)
        counts[k, fixated] = rng.integers(1, 6, len(fixated))
    counts = counts.reshape(n, h, w)
    counts[1] = 0  # no fixation: undefined
    counts[2] = 0
    counts[2, 0, 0] = 3  # a single fixated pixel
    other = np.zeros((n, h * w))
    other[rng.random((n, h * w)) < 0.05] = 1
    other = other.reshape(n, h, w)
    other[3] = 0  # no shuffled negative: undefined
    if kind != "constant":
        s[4, 2, 2] = np.nan  # a non-finite map: undefined
        s[5] = 7.0  # a constant map among others
        s[6] = s[0]  # a repeated map, as the baselines give
    return s, counts, other


KINDS = ["random", "plateau", "mostly_zero", "uint8", "constant"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_rank_metrics_batched_equal_the_per_map_forms(kind, seed):
    s, counts, other = _batch(kind, seed)
    n = len(s)
    judd = M.auc_judd_batch(s, counts)
    np.testing.assert_allclose(judd, [M.auc_judd(s[k], counts[k]) for k in range(n)], rtol=0, atol=1e-6)
    # bit for bit, in fact: the same float operations and numpy's own sum for each map's trapezoid
    np.testing.assert_array_equal(judd, [M.auc_judd(s[k], counts[k]) for k in range(n)])
    single_rng = np.random.default_rng(seed + 10)
    borji = M.auc_borji_batch(s, counts, np.random.default_rng(seed + 10))
    np.testing.assert_array_equal(borji, [M.auc_borji(s[k], counts[k], single_rng) for k in range(n)])
    shuffled = M.shuffled_auc_batch(s, counts, other)
    np.testing.assert_allclose(shuffled, [M.shuffled_auc(s[k], counts[k], other[k]) for k in range(n)],
                               rtol=0, atol=1e-6)
    assert np.isnan(judd[1]) and np.isnan(borji[1]) and np.isnan(shuffled[3])
    if kind != "constant":
        assert np.isnan(judd[4]) and np.isnan(borji[4]) and np.isnan(shuffled[4])
        assert borji[5] == 0.5 and shuffled[5] == 0.5


@pytest.mark.parametrize("kind", KINDS)
def test_all_metrics_batched_equal_the_per_map_forms(kind):
    s, counts, other = _batch(kind, 5)
    density = counts + 0.1 * (counts > 0) * np.random.default_rng(2).random(counts.shape)
    base = _saliency("random", np.random.default_rng(3), 1)[0]
    out = M.all_metrics_batch(s, counts, density, other, base, np.random.default_rng(9))
    rng = np.random.default_rng(9)
    for k in range(len(s)):
        expected = {
            "nss": M.nss(s[k], counts[k]), "auc_judd": M.auc_judd(s[k], counts[k]),
            "auc_borji": M.auc_borji(s[k], counts[k], rng),
            "shuffled_auc": M.shuffled_auc(s[k], counts[k], other[k]),
            "kl_div": M.kl_div(s[k], density[k]), "cc": M.cc(s[k], density[k]), "sim": M.sim(s[k], density[k]),
            "info_gain": M.info_gain(s[k], base, counts[k]),
        }
        for name, value in expected.items():
            np.testing.assert_allclose(out[name][k], value, rtol=0, atol=1e-6, err_msg=f"{kind} {name}[{k}]")


def test_batched_rank_metrics_on_empty_and_mismatched_batches():
    empty = np.zeros((0, *SHAPE))
    assert M.auc_judd_batch(empty, empty).shape == (0,)
    assert M.auc_borji_batch(empty, empty, np.random.default_rng(0)).shape == (0,)
    assert M.shuffled_auc_batch(empty, empty, empty).shape == (0,)
    with pytest.raises(ValueError, match="same length"):
        M.auc_judd_batch(np.zeros((2, *SHAPE)), np.zeros((3, *SHAPE)))
    with pytest.raises(ValueError, match="same shape"):
        M.shuffled_auc_batch(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), np.zeros((2, 5, 4)))


@pytest.mark.parametrize("kind", ["random", "uint8", "constant"])
def test_repeated_maps_and_prepared_stacks_give_the_same_numbers(kind):
    """A batch of one map repeated (the centre-bias and uniform baselines) has its per-map work done once, and
    ``prepare``d gaze stacks share theirs between calls: neither changes a number."""
    s, counts, other = _batch(kind, 7)
    repeated = np.repeat(s[:1], len(s), axis=0)
    density = counts * 0.5
    base = np.random.default_rng(1).random(SHAPE)
    prepared = M.prepare(counts), M.prepare(density), M.prepare(other)
    for maps in (repeated, s):
        plain = M.all_metrics_batch(maps, counts, density, other, base, np.random.default_rng(4))
        for _ in range(2):  # the second call reuses the stacks' cached work
            shared = M.all_metrics_batch(maps, *prepared, base, np.random.default_rng(4))
            for name in M.METRICS:
                np.testing.assert_array_equal(shared[name], plain[name], err_msg=name)
    rng = np.random.default_rng(4)
    for k in range(len(s)):
        assert plain is not None
        np.testing.assert_allclose(
            M.all_metrics_batch(repeated, counts, density, other, base, np.random.default_rng(4))["auc_judd"][k],
            M.auc_judd(repeated[k], counts[k]), rtol=0, atol=1e-6)
    borji = M.auc_borji_batch(repeated, counts, np.random.default_rng(4))
    np.testing.assert_array_equal(borji, [M.auc_borji(repeated[k], counts[k], rng) for k in range(len(s))])
