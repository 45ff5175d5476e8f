"""Faults and bad inputs (issue 14), in this process: locks, a full disk, a read-only folder, interrupted and
resumed training, truncated checkpoints, models of the wrong kind, bounds. Real concurrent and signalled
processes are in test_reliability_processes.py; docs/reliability.md lists what each test covers."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rl_saliency import io
from rl_saliency import train as train_module
from rl_saliency.cli import main
from rl_saliency.errors import Terminated
from rl_saliency.models import ModelLoadError, load_model
from rl_saliency.paths import PROJECT_ROOT

EXCERPT = PROJECT_ROOT / "data" / "atari_head_excerpt"
# two envs x 32 steps: rollouts of 64 agent steps
TINY = ["--n-envs", "2", "--set", "n_steps=32", "--set", "batch_size=64", "--set", "n_epochs=1", "--no-progress"]


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line a failed command printed (progress bars aside); fails on a traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("rl-saliency ")]
    assert len(lines) == 1, err
    return lines[0]


def hidden_temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if io.TEMP_RE.match(p.name)]


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def atari_zip(tmp_path_factory) -> Path:
    """An untrained PPO CnnPolicy for Breakout, with no run folder (commands need --game)."""
    from stable_baselines3 import PPO

    from rl_saliency.envs import make_atari_vec_env

    venv = make_atari_vec_env("breakout", n_envs=1, backend="sb3")
    path = tmp_path_factory.mktemp("atari") / "ppo_breakout.zip"
    PPO("CnnPolicy", venv, n_steps=8, batch_size=8, seed=0, device="cpu").save(path)
    venv.close()
    return path


@pytest.fixture(scope="module")
def other_zips(tmp_path_factory) -> dict[str, Path]:
    """Zips of the wrong kind (SAC and TD3 on Pendulum, PPO on CartPole) and a right one (DQN on Breakout)."""
    import gymnasium as gym
    from stable_baselines3 import DQN, PPO, SAC, TD3

    from rl_saliency.envs import make_atari_vec_env

    folder = tmp_path_factory.mktemp("zips")
    SAC("MlpPolicy", gym.make("Pendulum-v1"), buffer_size=10, device="cpu").save(folder / "sac.zip")
    TD3("MlpPolicy", gym.make("Pendulum-v1"), buffer_size=10, device="cpu").save(folder / "td3.zip")
    PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=8, batch_size=8, device="cpu").save(folder / "cartpole.zip")
    venv = make_atari_vec_env("breakout", n_envs=1, backend="sb3")
    DQN("CnnPolicy", venv, buffer_size=100, learning_starts=0, device="cpu").save(folder / "dqn.zip")
    venv.close()
    return {p.stem: p for p in folder.glob("*.zip")}


@pytest.fixture(scope="module")
def observations(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("obs") / "obs.npy"
    np.save(path, np.random.default_rng(0).integers(0, 255, (2, 4, 84, 84), dtype=np.uint8))
    return path


def grid_file(folder: Path) -> Path:
    grid = {"name": "tiny", "games": ["breakout"],
            "agents": [{"name": "nature_tiny", "spec": "nature", "n_envs": 2,
                        "hyperparams": {"n_steps": 32, "batch_size": 64, "n_epochs": 1}}],
            "seeds": 1, "train": {"timesteps": 64}, "evaluate": {"episodes": 1, "max_frames": 400}}
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def command(name: str, out: Path, model: Path, obs: Path, scratch: Path) -> list[str]:
    """Each writing command, as small as it can be, writing into ``out`` (inputs it needs go to ``scratch``)."""
    if name == "train":
        return ["train", "--game", "breakout", "--timesteps", "128", "--checkpoint-freq", "64", "--out", str(out),
                *TINY]
    if name == "evaluate":
        return ["evaluate", "--model", str(model), "--game", "breakout", "--episodes", "1", "--max-frames", "400",
                "--n-envs", "1", "--out", str(out)]
    if name == "render":
        return ["render", "--model", str(model), "--game", "breakout", "--steps", "4", "--scale", "1", "--gif",
                "--out", str(out / "video.mp4")]
    if name == "sanity":
        return ["sanity", "--model", str(model), "--game", "breakout", "--observations", str(obs), "--n-obs", "2",
                "--methods", "gradient", "--out", str(out)]
    if name == "gaze-eval":
        return ["gaze-eval", "--model", "none", "--atari-head", str(EXCERPT), "--max-frames", "40", "--out",
                str(out)]
    return ["sweep", "--grid", str(grid_file(scratch)), "--local", "--out", str(out)]


COMMANDS = ["train", "evaluate", "render", "sanity", "gaze-eval", "sweep"]


# ------------------------------------------------------------------------------------------------ item 1: locks


HOLD = textwrap.dedent("""
    import sys, time
    from rl_saliency import io
    folder, name = sys.argv[1], (sys.argv[2] or None)
    with io.output_lock(folder, name):
        print("held", flush=True)
        time.sleep(120)
""")


@contextlib.contextmanager
def holder(folder: Path, name: str = "") -> Iterator[subprocess.Popen]:
    """Another process holding the lock of ``folder`` (or of the file ``folder/name``)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), name], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_refuses_a_second_writer_naming_the_first(name, tmp_path, atari_zip, observations, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("kept\n")
    with holder(out, "video.mp4" if name == "render" else "") as other:
        assert main(command(name, out, atari_zip, observations, tmp_path)) == 2
        line = error_line(capsys)
    assert f"is in use by pid {other.pid}" in line and "-c" in line  # the holder's pid and command
    # nothing written beside the holder (whose lock file its kill -9 left behind)
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".lock")) == ["earlier.txt"]


def test_a_dead_writers_lock_and_temporary_files_are_taken_over(tmp_path, capsys):
    out = tmp_path / "out"
    killed = subprocess.Popen([sys.executable, "-c", HOLD, str(out), ""], stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline().strip() == "held"
    (out / "checkpoints").mkdir()
    stale = [out / "checkpoints" / ".ckpt_64_steps.zip.k2j4x9q1.tmp.zip", out / ".metrics.csv.ab_cd123.tmp.csv"]
    for path in stale:
        path.write_bytes(b"\0" * 4096)
    other = out / "eval"  # a folder with a lock of its own is left to its owner
    other.mkdir()
    (other / io.LOCK_NAME).write_text("{}")
    (other / ".episodes.csv.zzzzzzzz.tmp.csv").write_text("x")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert (out / io.LOCK_NAME).exists()  # kill -9 leaves the lock file behind
    with io.output_lock(out):
        pass
    err = capsys.readouterr().err
    assert f"held by pid {killed.pid}" in err and "no longer running" in err
    assert "removed 2 temporary file(s)" in err
    assert not any(p.exists() for p in stale)
    assert (other / ".episodes.csv.zzzzzzzz.tmp.csv").exists()
    assert not (out / io.LOCK_NAME).exists()  # released


def test_render_removes_a_dead_renders_temporary_video(tmp_path, atari_zip, capsys):
    stale = tmp_path / ".video.mp4.q8w7e6r5.tmp.mp4"
    stale.write_bytes(b"\0" * 1000)
    assert main(["render", "--model", str(atari_zip), "--game", "breakout", "--steps", "2", "--scale", "1",
                 "--out", str(tmp_path / "video.mp4")]) == 0
    assert not stale.exists() and (tmp_path / "video.mp4").stat().st_size > 0
    assert not hidden_temps(tmp_path)


# ------------------------------------------------------------------------------------------------ item 5: disk


def _fill(folder: Path, free: int) -> None:
    """Fill the file system of ``folder`` leaving ``free`` bytes."""
    fd = os.open(folder / ".filler", os.O_WRONLY | os.O_CREAT)
    size = 0
    with contextlib.suppress(OSError):
        while True:
            size += os.write(fd, b"\0" * 65536)
    os.ftruncate(fd, max(size - free, 0))
    os.close(fd)


@contextlib.contextmanager
def small_disk(root: Path, monkeypatch: pytest.MonkeyPatch, fault: int, prepare=None,
               free: int = 4096) -> Iterator[Path]:
    """A folder whose file system is full (``fault`` ENOSPC, ``free`` bytes left) or read-only (EROFS): a 2 MB
    tmpfs where this process may mount one (root), else the fault injected into every file creation there.
    ``prepare(folder)`` writes the earlier results first."""
    disk = root / "disk"
    disk.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                                 capture_output=True).returncode == 0
    except OSError:  # no mount command
        mounted = False
    try:
        if prepare is not None:
            prepare(disk)
        if mounted and fault == errno.ENOSPC:
            _fill(disk, free)
        elif mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        else:
            _inject(monkeypatch, disk, fault)
        yield disk
    finally:
        monkeypatch.undo()
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], check=False)


def _inject(monkeypatch: pytest.MonkeyPatch, folder: Path, fault: int) -> None:
    real_open, real_mkstemp, real_mkdir = os.open, tempfile.mkstemp, os.mkdir
    inside = str(folder)

    def fail(path: object) -> OSError:
        return OSError(fault, os.strerror(fault), str(path))

    def fake_open(path, flags, *args, **kwargs):
        if str(path).startswith(inside) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise fail(path)
        return real_open(path, flags, *args, **kwargs)

    def fake_mkstemp(*args, dir=None, **kwargs):  # noqa: A002 - tempfile's own name
        if dir is not None and str(dir).startswith(inside):
            raise fail(Path(dir) / ".x.abcdefgh.tmp")
        return real_mkstemp(*args, dir=dir, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if str(path).startswith(inside) and fault == errno.EROFS and not os.path.exists(path):
            raise fail(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(tempfile, "mkstemp", fake_mkstemp)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


def _earlier(folder: Path) -> None:
    (folder / "out").mkdir()
    (folder / "out" / "earlier.txt").write_text("earlier result\n")


@pytest.mark.parametrize("fault", [errno.ENOSPC, errno.EROFS], ids=["disk-full", "read-only"])
@pytest.mark.parametrize("name", COMMANDS)
def test_full_disk_and_read_only_folder_are_one_line_and_lose_nothing(name, fault, tmp_path, monkeypatch,
                                                                       atari_zip, observations, capsys):
    free = 65536 if name == "train" else 4096  # train: room for config.yaml and metrics, not a checkpoint
    with small_disk(tmp_path, monkeypatch, fault, prepare=_earlier, free=free) as disk:
        out = disk / "out"
        assert main(command(name, out, atari_zip, observations, tmp_path)) == 2
        line = error_line(capsys)
        assert os.strerror(fault) in line
        named = line.split(": ")[2].split(" ", 2)[-1]  # "rl-saliency <cmd>: error: cannot write <path>: <cause>"
        assert named.startswith(str(out)) and not io.TEMP_RE.match(Path(named).name), line
        assert (out / "earlier.txt").read_text() == "earlier result\n"
        assert not hidden_temps(disk)
        if name == "train" and (out / "config.yaml").exists():  # what was written before the disk filled
            assert yaml.safe_load((out / "config.yaml").read_text())["timesteps"] == 128


def test_render_names_its_output_when_the_encoder_dies_of_a_full_disk(tmp_path, monkeypatch, atari_zip, capsys):
    with small_disk(tmp_path, monkeypatch, errno.ENOSPC, free=4096 * 3) as disk:
        assert main(["render", "--model", str(atari_zip), "--game", "breakout", "--steps", "40", "--out",
                     str(disk / "video.mp4")]) == 2
        line = error_line(capsys)
        assert f"cannot write {disk / 'video.mp4'}: No space left on device" in line
        assert ".tmp" not in line and not hidden_temps(disk) and not (disk / "video.mp4").exists()


# ------------------------------------------------------------------------------- items 3, 4, 7: stop and resume


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> Path:
    """A run (512 steps, rollouts of 64, a checkpoint every 50 steps) stopped by Ctrl-C at step 500: mid-rollout.
    Device left to auto."""
    run = tmp_path_factory.mktemp("stopped") / "run"
    original = train_module.CheckpointAndProgress._on_step

    def stop_at_500(self):
        if self.model.num_timesteps == 500:
            raise KeyboardInterrupt
        return original(self)

    mp = pytest.MonkeyPatch()
    mp.setattr(train_module.CheckpointAndProgress, "_on_step", stop_at_500)
    try:
        assert main(["train", "--game", "breakout", "--timesteps", "512", "--checkpoint-freq", "50", "--out",
                     str(run), *TINY]) == 130
    finally:
        mp.undo()
    return run


def copy_run(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def check_series(run: Path, budget: int = 512, per_rollout: int = 64) -> pd.DataFrame:
    """metrics.csv is the series an unstopped run writes: one row per rollout, counted on, train losses in every
    row after the first."""
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["time/total_timesteps"].tolist() == list(range(per_rollout, budget + 1, per_rollout))
    assert metrics["time/iterations"].tolist() == list(range(1, budget // per_rollout + 1))
    assert metrics["train/n_updates"].iloc[1:].notna().all()
    assert metrics["train/n_updates"].iloc[1:].tolist() == list(range(1, budget // per_rollout))
    return metrics


def test_an_interrupt_mid_rollout_checkpoints_its_start_and_resume_ends_exactly_at_the_budget(stopped_run,
                                                                                              tmp_path, capsys):
    run = copy_run(stopped_run, tmp_path)
    checkpoints = [p.name for p in train_module.list_checkpoints(run / "checkpoints")]
    assert checkpoints == ["ckpt_384_steps.zip", "ckpt_448_steps.zip"]  # rollout starts, not step 500
    assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0
    assert load_model(run / "model.zip").num_timesteps == 512  # was 564: 500 + a whole rollout
    check_series(run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    import torch

    assert config["device_requested"] == "auto"  # auto records what it chose
    assert config["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


def test_a_truncated_latest_checkpoint_falls_back_to_the_one_before(stopped_run, tmp_path, capsys):
    run = copy_run(stopped_run, tmp_path)
    latest = run / "checkpoints" / "ckpt_448_steps.zip"
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2])
    assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"checkpoint {latest} is unreadable" in err and "resuming" in err and "ckpt_384_steps.zip" in err
    assert (run / "checkpoints" / "unreadable-ckpt_448_steps.zip").read_bytes() == data[: len(data) // 2]
    assert load_model(run / "model.zip").num_timesteps == 512
    check_series(run)


def test_a_garbage_metrics_file_is_kept_aside_and_the_run_resumes(stopped_run, tmp_path, capsys):
    run = copy_run(stopped_run, tmp_path)
    garbage = b"\x00\xff\x13garbage,,,\n\x00\x00\n"
    (run / "metrics.csv").write_bytes(garbage)
    assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0
    assert "metrics.csv cannot be read" in capsys.readouterr().err
    assert (run / "unreadable-metrics.csv").read_bytes() == garbage
    metrics = pd.read_csv(run / "metrics.csv")  # the rows from the resume on, counted on
    assert metrics["time/total_timesteps"].tolist() == [512]
    assert metrics["time/iterations"].tolist() == [8] and metrics["train/n_updates"].notna().all()


def test_sigterm_is_handled_like_ctrl_c(tmp_path, atari_zip, monkeypatch, capsys):
    """main turns SIGTERM into Terminated (a KeyboardInterrupt): render removes its temporary files, exit 143."""
    guard = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(AssertionError("SIGTERM not handled")))
    from rl_saliency.render import video

    calls = {"n": 0}
    real_write = video._compose  # composes each video frame (render_agent's loop body)

    def write_then_term(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(video, "_compose", write_then_term)
    try:
        assert main(["render", "--model", str(atari_zip), "--game", "breakout", "--steps", "20", "--scale", "1",
                     "--gif", "--out", str(tmp_path / "video.mp4")]) == 143
    finally:
        signal.signal(signal.SIGTERM, guard)
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no video, no temporary file, no lock
    assert issubclass(Terminated, KeyboardInterrupt)


# ------------------------------------------------------------------------------------------------ item 6: models


@pytest.mark.parametrize("kind, says", [("sac", "is a SAC model (SACPolicy)"), ("td3", "is a TD3 model"),
                                        ("cartpole", "taking observations of shape (4,)")])
@pytest.mark.parametrize("name", ["evaluate", "render", "sanity", "gaze-eval"])
def test_a_model_of_another_kind_is_one_line_naming_the_file(name, kind, says, other_zips, tmp_path,
                                                              observations, capsys):
    args = {"evaluate": ["evaluate", "--game", "breakout"], "render": ["render", "--game", "breakout", "--out",
                                                                       str(tmp_path / "v.mp4")],
            "sanity": ["sanity", "--game", "breakout", "--observations", str(observations), "--out",
                       str(tmp_path / "s")],
            "gaze-eval": ["gaze-eval", "--game", "ms_pacman", "--atari-head", str(EXCERPT), "--out",
                          str(tmp_path / "g")]}[name]
    assert main([*args, "--model", str(other_zips[kind])]) == 2
    line = error_line(capsys)
    assert str(other_zips[kind]) in line and says in line
    assert not any(tmp_path.iterdir())


def test_a_dqn_zip_is_accepted_and_played(other_zips, tmp_path, capsys):
    from stable_baselines3 import DQN

    assert isinstance(load_model(other_zips["dqn"], device="cpu"), DQN)
    with pytest.raises(ModelLoadError, match=r"is a DQN model .*, not PPO"):
        load_model(other_zips["dqn"], algo="ppo")
    assert main(["evaluate", "--model", str(other_zips["dqn"]), "--game", "breakout", "--episodes", "1",
                 "--n-envs", "1", "--max-frames", "300", "--out", str(tmp_path / "e")]) == 0
    assert (tmp_path / "e" / "evaluation.json").exists()


@pytest.mark.parametrize("name", ["evaluate", "gaze-eval", "render", "sanity"])
def test_an_invalid_config_next_to_a_zip_is_one_line(name, atari_zip, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(atari_zip, run / "model.zip")
    (run / "config.yaml").write_text("game: breakout\nspec: [unclosed\n")
    args = {"evaluate": ["evaluate", "--out", str(tmp_path / "o")],
            "gaze-eval": ["gaze-eval", "--atari-head", str(EXCERPT), "--out", str(tmp_path / "o")],
            "render": ["render", "--out", str(tmp_path / "o" / "v.mp4")],
            "sanity": ["sanity", "--out", str(tmp_path / "o")]}[name]
    assert main([*args, "--model", str(run / "model.zip")]) == 2
    line = error_line(capsys)
    assert f"run config {run / 'config.yaml'} is not valid YAML (line" in line and str(run / "model.zip") in line
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------ item 7: bad inputs


@pytest.mark.parametrize("spec, says", [
    ("", "is empty"),
    ("n_timesteps: [1, 2]\n", "n_timesteps must be a whole number >= 1 (e.g. 1e7), got [1, 2]"),
    ("n_timesteps: abc\n", "n_timesteps must be a whole number >= 1 (e.g. 1e7), got 'abc'"),
    ("n_envs: 0\n", "n_envs must be a whole number >= 1"),
    ("hyperparams: [1]\n", "hyperparams must be a mapping"),
])
def test_bad_agent_specs_are_one_line(spec, says, tmp_path, capsys):
    path = tmp_path / "agent.yaml"
    path.write_text(spec)
    assert main(["train", "--agent", str(path), "--game", "breakout", "--out", str(tmp_path / "run")]) == 2
    assert says in error_line(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, says", [
    (["train", "--timesteps", "1e30"], "--timesteps must be at most 1,000,000,000"),
    (["train", "--device", "cuda"], "--device cuda: CUDA is not available on this machine"),
    (["evaluate", "--device", "cuda"], "--device cuda: CUDA is not available on this machine"),
    (["render", "--scale", "100"], "--scale must be at most 16"),
    (["render", "--steps", "1000000000", "--gif"], "--steps must be at most 1,000,000"),
    (["render", "--steps", "1000000", "--normalise", "global"], "--normalise global keeps every frame in memory"),
    (["render", "--method", "novelty"], "--method novelty cannot be used with this model: the 'novelty' method "
                                        "needs a novelty explorer"),
    (["sanity", "--methods", "novelty"], "--methods novelty cannot be used with this model"),
])
def test_options_that_would_never_finish_or_cannot_work_are_one_line(args, says, atari_zip, observations, tmp_path,
                                                                     capsys):
    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda is valid here")
    extra = {"train": ["--game", "breakout", "--out", str(tmp_path / "o")],
             "evaluate": ["--model", str(atari_zip), "--game", "breakout"],
             "render": ["--model", str(atari_zip), "--game", "breakout", "--out", str(tmp_path / "o" / "v.mp4")],
             "sanity": ["--model", str(atari_zip), "--game", "breakout", "--observations", str(observations),
                        "--out", str(tmp_path / "o")]}[args[0]]
    assert main([*args, *extra]) == 2
    assert says in error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_gif_frames_are_streamed_to_disk_not_held(tmp_path):
    from PIL import Image

    from rl_saliency.render.video import VideoSink

    sink = VideoSink(tmp_path / "v.mp4", fps=10, gif=True, gif_width=64)
    rng = np.random.default_rng(0)
    sizes = []
    for _ in range(6):
        sink.write(rng.integers(0, 255, (90, 64, 3), dtype=np.uint8))
        (tmp_gif,) = tmp_path.glob(".v.gif.*.tmp.gif")
        sizes.append(tmp_gif.stat().st_size)
    assert sizes == sorted(sizes) and sizes[0] > 0 and sizes[-1] > sizes[0]  # on disk as they come
    assert not [v for v in vars(sink).values() if isinstance(v, list)]  # no frame list in memory
    assert sink.close() == [tmp_path / "v.mp4", tmp_path / "v.gif"]
    with Image.open(tmp_path / "v.gif") as gif:
        assert gif.n_frames == 6 and gif.size == (64, 90) and gif.info["loop"] == 0
    assert not hidden_temps(tmp_path)


def test_load_model_checks_every_zip_in_one_place(other_zips, tmp_path):
    """read_model_data (which every command calls first) already names the kind of zip, before any unpickling."""
    from rl_saliency.models import read_model_data

    with pytest.raises(ModelLoadError, match="is a SAC model"):
        read_model_data(other_zips["sac"])
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("data", "[1, 2]")
    with pytest.raises(ModelLoadError, match="data entry is not a mapping"):
        read_model_data(broken)
