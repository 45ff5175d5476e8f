"""Fixation maps: counts per observation, blur, shuffled negatives, which observations exist."""

from __future__ import annotations

import numpy as np
import pytest
from gaze_synthetic import SUBJECT, gaze_of, write_trial

from rl_saliency.envs.replay import covered_frames
from rl_saliency.gaze.data import read_gaze_table
from rl_saliency.gaze.fixations import (
    fixation_counts,
    gaze_density,
    observation_counts,
    observation_indices,
    observation_samples,
    shuffled_negatives,
)

N = 40


@pytest.fixture()
def gaze(tmp_path):
    stem = write_trial(tmp_path, N, no_gaze=(20,))
    return read_gaze_table(stem.with_name(stem.name + ".txt"))


def test_fixation_counts_pixels_and_offscreen():
    xy = np.array([[0, 0], [159.99, 209.99], [80.5, 100.2], [80.9, 100.7], [-0.01, 5], [160, 5], [5, 210]])
    counts, off = fixation_counts(xy)
    assert off == 3 and counts.sum() == 4
    assert counts[0, 0] == 1 and counts[209, 159] == 1 and counts[100, 80] == 2
    small, off84 = fixation_counts(xy, (84, 84))
    assert off84 == 3 and small[0, 0] == 1 and small[83, 83] == 1 and small[40, 42] == 2  # 100.2*84/210, 80.5*84/160


def test_observation_counts_are_the_union_of_the_covered_frames(gaze):
    indices = [14, 20, 27, 40]
    for shape in ((210, 160), (84, 84)):
        counts, n_fix, n_off = observation_counts(gaze, indices, shape)
        for k, i in enumerate(indices):
            samples = np.concatenate([np.array(gaze_of(f), np.float32) for f in covered_frames(i) if f != 20])
            expected, off = fixation_counts(samples, shape)
            np.testing.assert_array_equal(counts[k], expected)
            np.testing.assert_array_equal(fixation_counts(observation_samples(gaze, i), shape)[0], expected)
            assert n_off[k] == off and n_fix[k] + n_off[k] == len(samples)
    assert n_off.sum() > 0  # every 5th frame has an off-screen sample


def test_gaze_density_blurs_with_the_protocol_sigmas():
    counts = np.zeros((210, 160), np.float32)
    counts[100, 80] = 1
    density = gaze_density(counts)
    assert density.sum() == pytest.approx(1.0, abs=1e-3) and density.argmax() == 100 * 160 + 80
    ys, xs = np.mgrid[0:210, 0:160]
    sigma = np.sqrt((density * (ys - 100) ** 2).sum() / density.sum())
    assert sigma == pytest.approx(5.0, rel=0.05)
    small = np.zeros((2, 84, 84), np.float32)
    small[:, 40, 40] = 1
    d84 = gaze_density(small)
    sigma84 = np.sqrt((d84[0] * (np.mgrid[0:84, 0:84][0] - 40) ** 2).sum() / d84[0].sum())
    assert d84.shape == (2, 84, 84) and sigma84 == pytest.approx(2.0, rel=0.05)
    with pytest.raises(ValueError, match="sigma"):
        gaze_density(np.zeros((10, 10)))


def test_shuffled_negatives_are_ten_other_observations(gaze):
    indices, _ = observation_indices(gaze)
    negatives = shuffled_negatives(gaze, indices, [0, 5], np.random.default_rng(0), (84, 84))
    assert negatives.shape == (2, 84, 84)
    own = observation_counts(gaze, indices, (84, 84))[0]
    draw = np.random.default_rng(0)  # the same draws: 10 distinct others, never the observation itself
    for row, position in zip(negatives, (0, 5), strict=True):
        picks = draw.choice(len(indices) - 1, size=10, replace=False)
        picks = picks + (picks >= position)
        assert position not in picks and len(set(picks)) == 10
        np.testing.assert_array_equal(row, own[picks].sum(axis=0))
    single = shuffled_negatives(gaze, indices[:1], [0], np.random.default_rng(0), (84, 84))
    assert single.sum() == 0  # no other observation


def test_observation_indices_skip_missing_rows_and_episode_changes(tmp_path):
    rows = {25: None}  # frame 25 has no txt row
    rows.update({k: f"{SUBJECT}_{k},1,0,50,0,0,10.00,10.00" for k in range(31, N + 1)})  # episode 1 from 31 on
    stem = write_trial(tmp_path, N, rows=rows)
    gaze = read_gaze_table(stem.with_name(stem.name + ".txt"))
    indices, skipped = observation_indices(gaze)
    missing = [i for i in range(14, N + 1) if 25 in covered_frames(i)]
    crossing = [i for i in range(14, N + 1) if i not in missing and min(covered_frames(i)) < 31 <= i]
    assert skipped["frames_missing_from_txt"] == missing and skipped["episode_boundary"] == crossing
    assert indices == sorted(set(range(14, N + 1)) - set(missing) - set(crossing))
    assert observation_indices(gaze, stride=4, max_index=24)[0] == [14, 18, 22]


def test_aligned_observations_are_the_decision_points_from_the_first_frame(tmp_path):
    """The paper protocol's observations: raw frames first + 4k (the FLS reference replayed the trial from its
    first frame, one agent step per 4 frames), from the first with a full stack of 14 frames."""
    stem = write_trial(tmp_path, N)
    gaze = read_gaze_table(stem.with_name(stem.name + ".txt"))
    assert observation_indices(gaze, stride=4, aligned=True)[0] == [17, 21, 25, 29, 33, 37]  # 1-based: 1 + 4k
    assert observation_indices(gaze, stride=4)[0] == [14, 18, 22, 26, 30, 34, 38]
    assert observation_indices(gaze, stride=1, aligned=True)[0] == observation_indices(gaze)[0]
    assert observation_indices(gaze, stride=5, aligned=True)[0] == [16, 21, 26, 31, 36]


def test_reference_quirk_options_rounding_and_gaze_offset(gaze):
    """Options kept only to measure the FLS reference's quirks: nearest-pixel rounding (half to even, dropped
    when it rounds off the frame) and the gaze of one frame earlier."""
    xy = np.array([[10.5, 20.49], [11.5, 20.51], [159.6, 3], [-0.4, 3], [3, 209.4], [3, 209.5]])
    counts, off = fixation_counts(xy, rounding="round")
    assert counts[20, 10] == 1 and counts[21, 12] == 1  # 10.5 -> 10, 11.5 -> 12 (half to even)
    assert counts[3, 0] == 1 and counts[209, 3] == 1 and off == 2  # -0.4 -> 0 kept; 159.6 -> 160, 209.5 dropped
    floor, off_floor = fixation_counts(xy)
    assert floor[20, 10] == 1 and floor[20, 11] == 1 and off_floor == 1
    shifted, _, _ = observation_counts(gaze, [30], (84, 84), gaze_offset=-1)
    samples = np.concatenate([np.array(gaze_of(f - 1), np.float32) for f in covered_frames(30) if f - 1 != 20])
    np.testing.assert_array_equal(shifted[0], fixation_counts(samples, (84, 84))[0])
    rounded, _, _ = observation_counts(gaze, [30], (210, 160), rounding="round")
    own = np.concatenate([np.array(gaze_of(f), np.float32) for f in covered_frames(30) if f != 20])
    np.testing.assert_array_equal(rounded[0], fixation_counts(own, rounding="round")[0])


def test_negatives_with_replacement_and_reflected_blur(gaze):
    indices, _ = observation_indices(gaze)
    own = observation_counts(gaze, indices, (84, 84))[0]
    negatives = shuffled_negatives(gaze, indices, [3], np.random.default_rng(1), (84, 84), replace=True)
    picks = np.random.default_rng(1).integers(0, len(indices) - 1, size=10)
    picks = picks + (picks >= 3)
    np.testing.assert_array_equal(negatives[0], own[picks].sum(axis=0))  # a pick drawn twice counts twice
    edge = np.zeros((2, 210, 160), np.float32)
    edge[0, 2, 80] = edge[1, 100, 80] = 1  # near the top edge; in the middle
    mirrored, zero = gaze_density(edge, border="reflect").sum(axis=(1, 2)), gaze_density(edge).sum(axis=(1, 2))
    assert zero[0] < 0.75 and mirrored[0] > zero[0] + 0.3  # zero outside loses the blob's top; mirrored folds it in
    assert mirrored[1] == pytest.approx(zero[1], abs=1e-6)
    with pytest.raises(ValueError, match="border"):
        gaze_density(edge, border="wrap")
