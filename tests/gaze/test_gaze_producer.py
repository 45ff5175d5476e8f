"""The decoding process of gaze-eval (prefetch.replayed_batches) and the tar reader it uses: the same batches as the
in-process replay, the producer's errors raised in the evaluator with their traceback, a killed producer a clear
error within seconds (never a hang), an early stop ends the process; the reader gives tarfile's members."""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import tarfile
import time

import numpy as np
import pandas as pd
import pytest
from gaze_synthetic import write_trial

from rl_saliency.envs.replay import replay_observations
from rl_saliency.gaze import evaluator as E
from rl_saliency.gaze.data import Trial, tar_members
from rl_saliency.gaze.fixations import observation_indices
from rl_saliency.gaze.prefetch import ProducerError, replayed_batches

N = 120


@pytest.fixture()
def trial(tmp_path) -> Trial:
    return Trial.open(write_trial(tmp_path / "ms_pacman", N).with_suffix(".txt"))


def _batches(trial: Trial, batch_size: int, **kwargs):
    indices, _ = observation_indices(trial.gaze)
    return indices, replayed_batches(trial.files.tar, trial.gaze.frame_index.tolist(), indices, batch_size,
                                     max_index=indices[-1], **kwargs)


def _producers() -> list:
    return [p for p in multiprocessing.active_children() if p.name == "gaze-replay"]


@pytest.mark.parametrize("pool", ["rgb", "grey"])
def test_same_batches_as_the_replay_in_process(trial, pool):
    indices, batches = _batches(trial, 16, pool=pool, reports=(reports := {}))
    got = list(batches)
    expected = list(replay_observations(trial.frames(max_index=indices[-1]), indices=indices, pool=pool))
    assert [len(at) for at, _, _ in got] == [16] * (len(expected) // 16) + ([len(expected) % 16] if len(expected) % 16
                                                                          else [])
    assert np.concatenate([at for at, _, _ in got]).tolist() == [i for i, _ in expected]
    np.testing.assert_array_equal(np.concatenate([obs for _, obs, _ in got]), np.stack([o for _, o in expected]))
    assert reports["replay"].emitted == len(expected) and reports["frames"].emitted == indices[-1]
    assert not _producers()


def test_a_producer_error_is_raised_here_with_its_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist") as caught:
        list(replayed_batches(tmp_path / "absent.tar.bz2", [1, 2], [14], 4))
    assert any("raised in the process decoding" in note for note in caught.value.__notes__)
    assert not _producers()


def test_an_error_after_some_batches_comes_after_them(trial):
    """A failure inside the producer (here its per-batch work, which fails on the first batch holding frame 54 or
    later: a picklable callable, as the producer is started by the fork server) reaches the evaluator after the
    batches before it; evaluate_trial raises a producer's error rather than writing a partial table."""
    import functools

    indices, _ = observation_indices(trial.gaze)
    fails_from_54 = functools.partial(np.take, np.zeros(54))  # IndexError for any index >= 54
    seen = []
    with pytest.raises(IndexError, match="index 5[4-9] is out of bounds") as caught:
        for at, _, _ in _batches(trial, 8, per_batch=fails_from_54)[1]:
            seen.extend(at.tolist())
    assert any("raised in the process decoding" in note for note in caught.value.__notes__)
    before = [i for i in indices if i < 54]
    assert seen == before[:len(before) // 8 * 8] and len(seen) > 0  # every whole batch before the failing one
    trial.files.tar.unlink()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        E.evaluate_trial(trial, None, E.resolve_methods(["uniform"], None), batch_size=8, progress=False)
    assert not _producers()


def test_a_killed_producer_is_a_clear_error_not_a_hang(trial):
    _, batches = _batches(trial, 2, depth=1, poll_s=0.2)
    next(batches)
    (producer,) = _producers()
    os.kill(producer.pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(ProducerError, match=r"stopped \(exit code -9\) before the end of the stream"):
        for _ in batches:
            pass
    assert time.monotonic() - start < 10
    assert not _producers()


def test_closing_early_ends_the_producer(trial):
    _, batches = _batches(trial, 2, depth=1)
    next(batches)
    (producer,) = _producers()
    batches.close()
    assert not producer.is_alive() and not _producers()


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        list(replayed_batches("x.tar.bz2", [], [14], 0))


# ------------------------------------------------------------------------------------------------ the tar reader

def _tar(path, members, fmt=tarfile.PAX_FORMAT) -> None:
    with tarfile.open(path, "w:bz2", format=fmt) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(data)
                info.mtime = 1.5  # a fractional mtime: a pax header before the member
                archive.addfile(info, io.BytesIO(data))


def _tarfile_members(path) -> list[tuple[str, bool, bytes]]:
    out = []
    with tarfile.open(path, "r|bz2") as archive:
        for member in archive:
            handle = archive.extractfile(member)
            out.append((member.name, member.isfile(), handle.read() if handle is not None else b""))
    return out


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_tar_reader_gives_tarfiles_members(tmp_path, fmt):
    long = "trial/" + "x" * 150 + "/RZ_1_7.png"  # longer than a ustar name: pax path, GNU long name or prefix
    members = [("trial/RZ_1_1.png", b"a" * 700), ("trial", None), ("trial/RZ_1_2.png", b""),
               (long if fmt != tarfile.USTAR_FORMAT else "trial/" + "y" * 90 + "/RZ_1_7.png", bytes(range(256)) * 3)]
    _tar(tmp_path / "t.tar.bz2", members, fmt)
    assert list(tar_members(tmp_path / "t.tar.bz2")) == _tarfile_members(tmp_path / "t.tar.bz2")


def test_tar_reader_on_a_synthetic_trial_and_its_damage(tmp_path):
    stem = write_trial(tmp_path, 30)
    tar = stem.with_name(stem.name + ".tar.bz2")
    members = list(tar_members(tar))
    assert members == _tarfile_members(tar) and len(members) == 30
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2])
    with pytest.raises(EOFError):
        list(tar_members(tar))
    tar.write_bytes(b"BZh9" + bytes(100))
    with pytest.raises(OSError):
        list(tar_members(tar))


class _NewestFrame:
    """A method that is not a baseline (so the fixation maps are made in the decoding process), needing no model."""

    name = "newest_frame"

    def attribute(self, policy, observations, **_):
        return np.asarray(observations)[:, -1].astype(np.float32) + 1.0


@pytest.mark.parametrize("protocol", ["default", "paper+kl_skip_zero_near_gaze=True"])
def test_fixation_maps_made_on_either_side_give_the_same_table(trial, protocol):
    """With baselines only, the fixation maps are made in the scoring process; with an agent's method, in the
    decoding process (which then draws the shuffled negatives and seeds): the baselines' rows are the same."""
    baselines = E.resolve_methods([], None)
    here, _ = E.evaluate_trial(trial, None, baselines, protocol=protocol, batch_size=7, progress=False)
    aside, _ = E.evaluate_trial(trial, None, {"newest_frame": _NewestFrame(), **baselines}, protocol=protocol,
                                batch_size=7, progress=False)
    assert set(aside["method"]) == {"newest_frame", *baselines} and len(here) > 50
    same = aside[aside["method"] != "newest_frame"].reset_index(drop=True)
    pd.testing.assert_frame_equal(same, here.reset_index(drop=True))
    assert aside[aside["method"] == "newest_frame"]["nss"].notna().all()


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (an exited child its new parent has not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_killed_evaluator_leaves_no_producer_behind(trial):
    """The evaluator killed outright (no clean-up runs) while its producer waits on a full queue: the producer
    notices that its parent is gone and exits."""
    import subprocess
    import sys

    script = (
        "import sys, time, multiprocessing\n"
        "from rl_saliency.gaze.data import Trial\n"
        "from rl_saliency.gaze.fixations import observation_indices\n"
        "from rl_saliency.gaze.prefetch import replayed_batches\n"
        "trial = Trial.open(sys.argv[1])\n"
        "indices, _ = observation_indices(trial.gaze)\n"
        "batches = replayed_batches(trial.files.tar, trial.gaze.frame_index.tolist(), indices, 2, depth=1)\n"
        "next(batches)\n"
        "print(multiprocessing.active_children()[0].pid, flush=True)\n"
        "time.sleep(60)\n")
    evaluator = subprocess.Popen([sys.executable, "-c", script, str(trial.files.txt)], stdout=subprocess.PIPE,
                                 text=True)
    try:
        producer = int(evaluator.stdout.readline())
        os.kill(producer, 0)  # alive, waiting to put its next batch
        evaluator.kill()
        evaluator.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _running(producer):
            time.sleep(0.1)
        if not _running(producer):
            return
        os.kill(producer, signal.SIGKILL)
        pytest.fail("the producer outlived its evaluator by 10 s")
    finally:
        evaluator.kill()


def test_a_script_without_a_main_guard_can_use_the_producer(trial, tmp_path):
    """The fork server (like spawn) would re-run the caller's __main__ in the producer; a plain script or a
    notebook has no ``if __name__ == "__main__":`` guard, so __main__ is left out when a producer starts."""
    import subprocess
    import sys

    script = tmp_path / "plain.py"
    script.write_text(
        "import sys\n"
        "from rl_saliency.gaze.data import Trial\n"
        "from rl_saliency.gaze.fixations import observation_indices\n"
        "from rl_saliency.gaze.prefetch import replayed_batches\n"
        "trial = Trial.open(sys.argv[1])\n"
        "indices, _ = observation_indices(trial.gaze)\n"
        "batches = replayed_batches(trial.files.tar, trial.gaze.frame_index.tolist(), indices, 16)\n"
        "print('batches', len(list(batches)))\n")
    done = subprocess.run([sys.executable, str(script), str(trial.files.txt)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("batches") == 1  # the script ran once, not again in the producer
