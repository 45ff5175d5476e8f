"""The evaluator's fast scoring (gaze/scoring.py) against the per-map reference forms of gaze/metrics.py, which stay
the oracle: every metric within 1e-6 (in fact ~1e-14) on random, tied, mostly-zero, integer, float32 and constant
maps, on maps repeated over the batch (the static path: the centre-bias and uniform baselines) and on single-map
batches, with undefined cases mixed in; and end to end, evaluate_trial's table against the per-map forms on the
real trial's first observations."""

from __future__ import annotations

import numpy as np
import pytest

from rl_saliency.gaze import metrics as M
from rl_saliency.gaze.scoring import GazeBatch, Scorer

SHAPE = (30, 26)
TOL = 1e-6


def _saliency(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    h, w = SHAPE
    if kind == "random":
        return rng.random((n, h, w))
    if kind == "float32":
        return rng.random((n, h, w)).astype(np.float32) ** 3
    if kind == "plateau":  # block maps of a few levels: long runs of tied values
        return np.kron(rng.integers(0, 3, (n, 6, 13)), np.ones((5, 2))).astype(float)
    if kind == "mostly_zero":
        s = np.zeros((n, h, w))
        s[:, 4:9, 10:14] = rng.random((n, 1, 1)) + 0.1
        return s
    if kind == "uint8":  # the intensity baseline's kind: integers, ranked by histogram
        return rng.integers(0, 256, (n, h, w)).astype(np.float32)
    if kind == "constant":
        return np.full((n, h, w), 2.5)
    raise ValueError(kind)


def _gaze(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = SHAPE
    counts = np.zeros((n, h * w), np.float32)
    for k in range(n):
        fixated = rng.choice(h * w, int(rng.integers(1, 60)), replace=False)
        counts[k, fixated] = rng.integers(1, 6, len(fixated))
    counts = counts.reshape(n, h, w)
    counts[1] = 0  # no fixation: undefined
    counts[2] = 0
    counts[2, 0, 0] = 3  # a single fixated pixel
    density = counts + 0.1 * (counts > 0) * rng.random(counts.shape).astype(np.float32)
    density[3] += 0.01  # no zero pixel: its minimum is elsewhere (the dense form of the gaze side)
    density[4] = 0.5  # a constant density
    density[-1, 0, :3] = -0.02  # negative values (a map no blur of counts gives): the dense forms
    other = (rng.random((n, h, w)) < 0.05).astype(np.float32)
    other[5] = 0  # no shuffled negative: undefined
    return counts, density, other


def _per_map(s, counts, density, other, base, seed) -> dict[str, np.ndarray]:
    """The per-map reference forms, one map at a time (AUC-Borji's generator shared in map order)."""
    rng = np.random.default_rng(seed)
    out = {name: [] for name in M.METRICS}
    for k in range(len(s)):
        out["nss"].append(M.nss(s[k], counts[k]))
        out["auc_judd"].append(M.auc_judd(s[k], counts[k]))
        out["auc_borji"].append(M.auc_borji(s[k], counts[k], rng))
        out["shuffled_auc"].append(M.shuffled_auc(s[k], counts[k], other[k]))
        out["kl_div"].append(M.kl_div(s[k], density[k]))
        out["cc"].append(M.cc(s[k], density[k]))
        out["sim"].append(M.sim(s[k], density[k]))
        out["info_gain"].append(M.info_gain(s[k], base, counts[k]))
    return {k: np.array(v) for k, v in out.items()}


def _assert_close(got: dict[str, np.ndarray], expected: dict[str, np.ndarray], what: str) -> None:
    assert list(got) == list(M.METRICS)
    for name in M.METRICS:
        np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=TOL, err_msg=f"{what}: {name}")
        np.testing.assert_array_equal(np.isnan(got[name]), np.isnan(expected[name]), err_msg=f"{what}: {name}")


KINDS = ["random", "float32", "plateau", "mostly_zero", "uint8", "constant"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_fast_scoring_equals_the_per_map_forms(kind, seed):
    n = 12
    counts, density, other = _gaze(seed, n)
    s = _saliency(kind, np.random.default_rng(seed + 100), n)
    if kind != "constant":
        s[6, 2, 2] = np.nan  # a non-finite map: undefined
        s[7] = 7.0  # a constant map among others
        s[8] = s[0]  # a map given twice
    base = np.random.default_rng(3).random(SHAPE)
    scorer = Scorer(base)
    gaze = GazeBatch(counts, density, other)
    got = scorer.score(s, gaze, seed=9)
    _assert_close(got, _per_map(s, counts, density, other, base, 9), f"{kind} seed {seed}")
    assert np.isnan(got["nss"][1]) and np.isnan(got["shuffled_auc"][5])
    if kind != "constant":
        assert all(np.isnan(got[name][6]) for name in M.METRICS)


@pytest.mark.parametrize("kind", ["random", "uint8", "constant", "mostly_zero"])
def test_static_maps_repeated_over_batches_and_one_map_batches(kind):
    """A map repeated over the batch takes the static path, whose work is kept between batches: the numbers are
    the per-map forms' on every batch, and two static maps scored in turn do not mix."""
    n = 10
    first = _saliency(kind, np.random.default_rng(5), 1)[0]
    second = np.random.default_rng(6).random(SHAPE)
    base = np.random.default_rng(4).random(SHAPE)
    scorer = Scorer(base)
    for batch_seed in (11, 12, 13):
        counts, density, other = _gaze(batch_seed, n)
        gaze = GazeBatch(counts, density, other)
        for one in (first, second):
            s = np.repeat(one[None], n, axis=0)
            _assert_close(scorer.score(s, gaze, seed=batch_seed), _per_map(s, counts, density, other, base,
                                                                           batch_seed), f"{kind} static")
        single = GazeBatch(counts[:1], density[:1], other[:1])  # a last batch of one observation
        _assert_close(scorer.score(first[None], single, seed=3),
                      _per_map(first[None], counts[:1], density[:1], other[:1], base, 3), f"{kind} single")


def test_borji_draws_shared_by_methods_are_each_methods_own():
    """The random negatives drawn once per batch for several methods are the ones each method's own generator
    (seeded alike) would draw: scoring methods in any order gives the same numbers."""
    n = 8
    counts, density, other = _gaze(21, n)
    gaze = GazeBatch(counts, density, other)
    maps = [_saliency(k, np.random.default_rng(22), n) for k in ("random", "uint8", "plateau")]
    base = np.ones(SHAPE)
    forward = [Scorer(base).score(m, gaze, seed=5)["auc_borji"] for m in maps]
    scorer = Scorer(base)
    together = [scorer.score(m, gaze, seed=5)["auc_borji"] for m in maps[::-1]][::-1]
    for a, b in zip(forward, together, strict=True):
        np.testing.assert_array_equal(a, b)


def test_shape_mismatch_is_refused():
    counts, density, other = _gaze(0, 8)
    with pytest.raises(ValueError, match="do not match"):
        Scorer(np.ones(SHAPE)).score(np.ones((3, *SHAPE)), GazeBatch(counts, density, other), seed=0)


def test_evaluate_trial_equals_the_per_map_forms_on_the_real_trial(real_trial):
    """End to end on the real trial's first 150 frames: decoded in the producer process, scored by the fast
    path; every row equals the per-map reference forms on the same observations, fixation maps and seeds."""
    from rl_saliency.envs.replay import replay_observations
    from rl_saliency.gaze import evaluator as E
    from rl_saliency.gaze.data import Trial
    from rl_saliency.gaze.fixations import gaze_density, observation_counts, observation_indices, shuffled_negatives

    trial = Trial.open(real_trial.with_suffix(".txt"))
    methods = E.resolve_methods([], None)
    batch_size, frames = 32, 150
    table, summary = E.evaluate_trial(trial, None, methods, max_frames=frames, batch_size=batch_size,
                                      progress=False)
    first = int(trial.gaze.frame_index[0])
    indices, _ = observation_indices(trial.gaze, max_index=first + frames - 1)
    observations = dict(replay_observations(trial.frames(max_index=indices[-1]), indices=indices))
    assert summary["observations_scored"] == len(observations) == len(table) // len(methods) > 100
    rng = np.random.default_rng(E._trial_seed(0, trial.name))
    base = E.centre_bias_map((84, 84))
    expected = []
    for start in range(0, len(indices), batch_size):
        at = indices[start:start + batch_size]
        obs = np.stack([observations[i] for i in at])
        counts = observation_counts(trial.gaze, at, (84, 84))[0]
        density = gaze_density(counts)
        other = shuffled_negatives(trial.gaze, indices, list(range(start, start + len(at))), rng, (84, 84))
        seed = int(rng.integers(2**63))
        for name, method in methods.items():
            values = _per_map(method.attribute(None, obs), counts, density, other, base, seed)
            expected.extend({"method": name, "frame_index": i, **{m: values[m][k] for m in M.METRICS}}
                            for k, i in enumerate(at))
    assert list(table["method"]) == [e["method"] for e in expected]
    assert list(table["frame_index"]) == [e["frame_index"] for e in expected]
    for name in M.METRICS:
        np.testing.assert_allclose(table[name].to_numpy(), [e[name] for e in expected], rtol=0, atol=TOL,
                                   err_msg=name)
