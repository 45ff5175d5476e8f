"""The real Ms. Pac-Man trial (../shared/atari_head; skipped when absent). Only the txt is read in full; the
frames are streamed for the first few hundred only."""

from __future__ import annotations

import tarfile

import cv2
import numpy as np
import pytest

from rl_saliency.envs.replay import replay_observations, warp_frame
from rl_saliency.gaze.data import Trial, find_trials
from rl_saliency.gaze.fixations import gaze_density, observation_counts, observation_indices

FRAMES = 17_382
SAMPLES = 881_897  # every x,y pair in the txt, off-screen ones included (the dataset README's figure)
OFFSCREEN = 3_321  # measured: x outside [0, 160) or y outside [0, 210)
NULL_FRAMES = 81


@pytest.fixture(scope="module")
def trial(real_trial) -> Trial:
    return Trial.open(real_trial.with_suffix(".txt"))


def _raw_lines(real_trial, indices: set[int]) -> dict[int, list[str]]:
    """The txt's own fields for a few frames, parsed here independently of the reader."""
    out = {}
    with open(real_trial.with_suffix(".txt")) as f:
        next(f)
        for line in f:
            parts = line.rstrip("\n").split(",")
            k = int(parts[0].rsplit("_", 1)[1])
            if k in indices:
                out[k] = parts
            if len(out) == len(indices):
                break
    return out


def _members(real_trial, ks: set[int]) -> dict[int, np.ndarray]:
    """Frames read by member name with tarfile directly (stops once all are found: they come early)."""
    names = {f"{real_trial.name}/RZ_5037271_{k}.png": k for k in ks}
    out = {}
    with tarfile.open(real_trial.with_name(real_trial.name + ".tar.bz2"), "r|bz2") as archive:
        for member in archive:
            if member.name in names:
                data = np.frombuffer(archive.extractfile(member).read(), np.uint8)
                out[names[member.name]] = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                if len(out) == len(names):
                    return out
    raise AssertionError(f"frames {sorted(set(ks) - set(out))} not in the tar")


def test_discovery(atari_head_dir):
    trials, issues = find_trials(atari_head_dir)
    assert [(t.game, t.name) for t in trials] == [("ms_pacman", "593_RZ_5037271_Aug-05-15-35-12")] and not issues


def test_counts_of_the_whole_txt(trial):
    gaze = trial.gaze
    assert len(gaze) == FRAMES and gaze.frame_index.tolist() == list(range(1, FRAMES + 1))
    assert gaze.n_samples == SAMPLES and gaze.n_offscreen == OFFSCREEN
    assert gaze.null_gaze_frames == NULL_FRAMES and gaze.null_samples == 0 and not gaze.issues
    null_rows = np.flatnonzero(np.diff(gaze.offsets) == 0) + 1
    assert len(null_rows) == NULL_FRAMES and null_rows[-1] == FRAMES  # the last frame has no gaze
    assert np.isnan(gaze.score[null_rows - 1]).all() and (gaze.action[null_rows - 1] == -1).all()
    assert np.isnan(gaze.episode_id).all()  # this copy has no episode ids
    # each frame carries about `duration` samples at 1000 Hz
    has = ~np.isnan(gaze.duration)
    ratio = np.diff(gaze.offsets)[has].sum() / gaze.duration[has].sum()
    assert 0.9 < ratio < 1.1
    indices, skipped = observation_indices(gaze)
    assert len(indices) == FRAMES - 13 and not any(skipped.values())


def test_first_frames_stream_in_order(trial, real_trial):
    frames = list(trial.frames(max_index=300))
    assert [i for i, _ in frames] == list(range(1, 301)) and not trial.last_report.issues()
    for k, image in _members(real_trial, {1, 300}).items():
        np.testing.assert_array_equal(frames[k - 1][1], image)
    assert trial.last_report.out_of_order == 0 and trial.last_report.peak_buffer_frames == 1


def test_first_observations_align_with_frames_and_gaze(trial, real_trial):
    observations = dict(replay_observations(trial.frames(max_index=40), indices=[14, 15, 40]))
    assert sorted(observations) == [14, 15, 40]
    raw = _members(real_trial, {1, 2, 5, 6, 9, 10, 13, 14})
    expected = np.stack([warp_frame(np.maximum(raw[a], raw[b])) for a, b in ((1, 2), (5, 6), (9, 10), (13, 14))])
    np.testing.assert_array_equal(observations[14], expected)
    # fixations of the observation at 14: the union of the gaze of raw frames 14, 13, 10, 9, 6, 5, 2, 1
    lines = _raw_lines(real_trial, {1, 2, 5, 6, 9, 10, 13, 14})
    xy = np.array([float(v) for k in sorted(lines) for v in lines[k][6:]]).reshape(-1, 2)
    onscreen = (xy[:, 0] >= 0) & (xy[:, 0] < 160) & (xy[:, 1] >= 0) & (xy[:, 1] < 210)
    manual = np.zeros((210, 160))
    np.add.at(manual, (xy[onscreen, 1].astype(int), xy[onscreen, 0].astype(int)), 1)
    counts, n_fix, n_off = observation_counts(trial.gaze, [14])
    np.testing.assert_array_equal(counts[0], manual)
    assert n_fix[0] + n_off[0] == len(xy) and n_off[0] == (~onscreen).sum()
    counts84, n84, _ = observation_counts(trial.gaze, [14], shape=(84, 84))
    manual84 = np.zeros((84, 84))
    np.add.at(manual84, ((xy[onscreen, 1] * 84 / 210).astype(int), (xy[onscreen, 0] * 84 / 160).astype(int)), 1)
    np.testing.assert_array_equal(counts84[0], manual84)
    assert n84[0] == n_fix[0]
    density = gaze_density(counts)
    assert density.sum() == pytest.approx(counts.sum(), rel=0.02)  # the blur keeps the mass inside the frame


def test_reader_agrees_with_a_plain_parse(trial, real_trial):
    gaze = trial.gaze
    lines = _raw_lines(real_trial, {1, 2, 4})
    for k in (1, 2, 4):
        expected = np.array(lines[k][6:], dtype=np.float32).reshape(-1, 2)
        np.testing.assert_array_equal(gaze.samples(k), expected)
        assert gaze.action[k - 1] == int(lines[k][5]) and gaze.duration[k - 1] == float(lines[k][3])


def test_baselines_on_the_first_frames(trial):
    from rl_saliency.gaze import evaluator as E

    table, summary = E.evaluate_trial(trial, None, E.resolve_methods([], None), max_frames=100, progress=False)
    assert len(table) == 3 * 87 and summary["observations_scored"] == 87 and not summary["issues"]
    means = table.groupby("method")[["nss", "auc_borji", "shuffled_auc", "cc"]].mean()
    assert means.loc["uniform"].tolist() == [0.0, 0.5, 0.5, 0.0]
    assert means.loc["centre_bias", "nss"] > 0.3  # Ms. Pac-Man players look near the centre of the maze
    assert (table["n_fixations"] > 0).all()  # each observation covers 8 frames of gaze
