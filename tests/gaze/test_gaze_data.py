"""The Atari-HEAD reader on synthetic trials in the exact format: parsing, streaming, and every kind of damage."""

from __future__ import annotations

import random

import numpy as np
import pytest
from gaze_synthetic import SUBJECT, frame_image, frame_index_of, gaze_of, row, write_trial

from rl_saliency.errors import DataError
from rl_saliency.gaze.data import FrameStreamReport, Trial, find_trials, iter_frames, read_gaze_table

N = 40


def tar_of(stem):
    return stem.with_name(stem.name + ".tar.bz2")


def txt_of(stem):
    return stem.with_name(stem.name + ".txt")


def test_gaze_table_parses_rows_nulls_and_offscreen(tmp_path):
    order = list(range(1, N + 1))
    random.Random(0).shuffle(order)  # rows out of order in the file: sorted by index on reading
    stem = write_trial(tmp_path, N, txt_order=order, no_gaze=(3, 17),
                       rows={N: f"{SUBJECT}_{N},null,null,null,null,null,null",
                             7: f"{SUBJECT}_7,0,70,50,null,2,10.00,20.00,null,5.00,30.00,40.00"})
    table = read_gaze_table(txt_of(stem))
    assert table.frame_index.tolist() == list(range(1, N + 1))
    expected = sum(len(gaze_of(k)) for k in range(1, N) if k not in (3, 7, 17)) + 2  # row 7: 2 of 3 pairs
    assert table.n_samples == expected
    assert table.null_gaze_frames == 3 and table.null_samples == 1
    assert table.n_offscreen == len([k for k in range(1, N) if k % 5 == 0 and k not in (3, 7, 17)])
    np.testing.assert_allclose(table.samples(7), [[10, 20], [30, 40]])
    np.testing.assert_allclose(table.samples(2), gaze_of(2), atol=1e-4)
    assert np.isnan(table.score[-1]) and table.action[-1] == -1 and np.isnan(table.unclipped_reward[6])
    assert table.samples(999).shape == (0, 2)


@pytest.mark.parametrize(("bad", "reason"), [
    (f"{SUBJECT}_5,0,50,50,0,3,1.0,2.0,3.0", "odd number"),
    (f"{SUBJECT}_5,0,fifty,50,0,3,1.0,2.0", "corrupt row"),
    (f"{SUBJECT}_5,0,50", "fields"),
    ("garbage_frame,0,50,50,0,3,1.0,2.0", "frame_id"),
    (f"{SUBJECT}_5,0,50,50,0,99,1.0,2.0", "action"),
    (f"{SUBJECT}_4,0,50,50,0,3,1.0,2.0", "already given"),
])
def test_corrupt_rows_raise_with_file_and_line_or_are_skipped(tmp_path, bad, reason):
    stem = write_trial(tmp_path, N, rows={5: bad})
    with pytest.raises(DataError, match=rf"{txt_of(stem).name}, line 6: .*{reason}"):
        read_gaze_table(txt_of(stem))
    table = read_gaze_table(txt_of(stem), strict=False)
    assert len(table.issues) == 1 and "line 6" in table.issues[0]
    kept = set(table.frame_index.tolist())
    assert kept == set(range(1, N + 1)) - {5}  # nothing else lost
    assert table.n_samples == sum(len(gaze_of(k)) for k in kept)


def test_bad_header_and_empty_file(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match="bad.txt, line 1"):
        read_gaze_table(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("frame_id,episode_id,score,duration(ms),unclipped_reward,action,gaze_positions\n")
    with pytest.raises(DataError, match="no frame rows"):
        read_gaze_table(empty)
    with pytest.raises(FileNotFoundError):
        read_gaze_table(tmp_path / "absent.txt")


def _stream(stem, **kwargs):
    report = FrameStreamReport(tar_of(stem))
    table = read_gaze_table(txt_of(stem), strict=False)
    frames = list(iter_frames(tar_of(stem), expected=table.frame_index.tolist(), report=report, **kwargs))
    return frames, report


def test_frames_stream_in_index_order_with_identity(tmp_path):
    stem = write_trial(tmp_path, N)
    frames, report = _stream(stem)
    assert [i for i, _ in frames] == list(range(1, N + 1))
    for i, image in frames:
        assert image.shape == (210, 160, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, frame_image(i))  # RGB, not BGR
    assert report.issues() == [] and report.peak_buffer_frames == 1


@pytest.mark.parametrize("order", ["shuffled", "lexicographic", "reversed"])
def test_out_of_order_members_are_reordered(tmp_path, order):
    members = list(range(1, N + 1))
    if order == "shuffled":
        random.Random(1).shuffle(members)
    elif order == "lexicographic":
        members.sort(key=str)
    else:
        members.reverse()
    stem = write_trial(tmp_path, N, members=members)
    frames, report = _stream(stem)
    assert [i for i, _ in frames] == list(range(1, N + 1))
    assert all(frame_index_of(image) == i for i, image in frames)
    assert report.out_of_order > 0 and report.peak_buffer_frames > 1 and not report.issues()


def test_missing_and_extra_frames_are_reported_not_fatal(tmp_path):
    members = [k for k in range(1, N + 4) if k not in (6, 21)]  # 6, 21 missing; N+1..N+3 not in the txt
    stem = write_trial(tmp_path, N, members=members)
    frames, report = _stream(stem)
    assert [i for i, _ in frames] == members
    assert report.missing == [6, 21] and report.extra == [N + 1, N + 2, N + 3]
    assert any("2 frames missing from the tar: 6, 21" in s for s in report.issues())


def test_small_reorder_buffer_gives_up_on_a_missing_frame(tmp_path):
    members = [k for k in range(1, N + 1) if k != 3]
    stem = write_trial(tmp_path, N, members=members)
    frames, report = _stream(stem)
    assert [i for i, _ in frames] == members and report.missing == [3]
    assert report.peak_buffer_frames == N - 3  # waited for frame 3 until the end of the tar
    frame_bytes = report.peak_buffer_bytes / report.peak_buffer_frames
    cap = int(4 * frame_bytes)
    frames, report = _stream(stem, reorder_bytes=cap)
    assert [i for i, _ in frames] == members and report.missing == [3]
    assert report.peak_buffer_frames <= 6 and report.peak_buffer_bytes <= cap + 2 * frame_bytes


def test_truncated_tar_keeps_the_frames_before_the_cut(tmp_path):
    stem = write_trial(tmp_path, N)
    data = tar_of(stem).read_bytes()
    tar_of(stem).write_bytes(data[: len(data) // 2])
    frames, report = _stream(stem)
    got = [i for i, _ in frames]
    assert report.truncated is not None and 0 < len(got) < N
    assert got == list(range(1, len(got) + 1))
    assert report.missing == list(range(len(got) + 1, N + 1))
    assert "tar ends early" in report.issues()[0]


def test_undecodable_png_is_a_gap(tmp_path):
    stem = write_trial(tmp_path, N, corrupt_members=(9,))
    frames, report = _stream(stem)
    assert [i for i, _ in frames] == [k for k in range(1, N + 1) if k != 9]
    assert report.undecodable == [9]


def test_max_index_stops_early(tmp_path):
    stem = write_trial(tmp_path, N)
    frames, report = _stream(stem, max_index=10)
    assert [i for i, _ in frames] == list(range(1, 11)) and report.members <= 11 and not report.missing


def test_find_trials_layout_filters_and_unpaired(tmp_path):
    write_trial(tmp_path / "ms_pacman", 20, name="100_XX_1234_Jan-01-00-00-00")
    write_trial(tmp_path / "ms_pacman" / "highscore", 20, name="101_XX_1234_Jan-02-00-00-00")
    write_trial(tmp_path / "breakout", 20, name="102_XX_1234_Jan-03-00-00-00")
    (tmp_path / "breakout" / "103_XX_1234_Jan-04-00-00-00.txt").write_text(
        "frame_id,episode_id,score,duration(ms),unclipped_reward,action,gaze_positions\n" + row(1, [(1, 2)]) + "\n")
    (tmp_path / "breakout" / "notes.txt").write_text("not a trial\n")
    trials, issues = find_trials(tmp_path)
    assert [(t.game, t.name, t.highscore) for t in trials] == [
        ("breakout", "102_XX_1234_Jan-03-00-00-00", False),
        ("ms_pacman", "100_XX_1234_Jan-01-00-00-00", False),
        ("ms_pacman", "101_XX_1234_Jan-02-00-00-00", True)]
    assert len(issues) == 1 and "103_XX_1234_Jan-04-00-00-00.txt: gaze file without frames" in issues[0]
    assert [t.name for t in find_trials(tmp_path, games=["MsPacman"])[0]] == [
        "100_XX_1234_Jan-01-00-00-00", "101_XX_1234_Jan-02-00-00-00"]
    assert [t.trial_number for t in find_trials(tmp_path, trials=["101"])[0]] == [101]
    single, _ = find_trials(tmp_path / "breakout" / "102_XX_1234_Jan-03-00-00-00.tar.bz2")
    assert [t.name for t in single] == ["102_XX_1234_Jan-03-00-00-00"] and single[0].game == "breakout"
    with pytest.raises(FileNotFoundError, match="no Atari-HEAD trial"):
        find_trials(tmp_path / "nothing_here")


def test_meta_data_names_the_game_when_the_folder_does_not(tmp_path):
    stem = write_trial(tmp_path / "downloads", 20, name="555_XX_1234_Jan-01-00-00-00")
    assert find_trials(stem)[0][0].game is None
    (tmp_path / "downloads" / "meta_data.csv").write_text("GameName,trial_id,subject_id,fps\nenduro,555,XX,20\n")
    trial = find_trials(stem)[0][0]
    assert trial.game == "enduro" and trial.meta == {"GameName": "enduro", "trial_id": 555, "subject_id": "XX",
                                                     "fps": 20}


def test_trial_collects_issues(tmp_path):
    stem = write_trial(tmp_path / "ms_pacman", N, members=[k for k in range(1, N + 1) if k != 12],
                       rows={30: f"{SUBJECT}_30,0,1,2"})
    with pytest.raises(DataError, match="line 31"):
        Trial.open(stem)
    trial = Trial.open(stem, strict=False)
    assert trial.game == "ms_pacman" and len(list(trial.frames())) == N - 1
    assert len(trial.issues) == 3  # the corrupt row, frame 12 missing, frame 30 in the tar but not the txt
