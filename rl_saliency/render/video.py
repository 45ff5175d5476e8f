"""``rl-saliency render``: saliency-overlay videos of an agent playing, or of a human Atari-HEAD trial.

The saliency map (84x84, any method on the contract) is upsampled onto the original 210x160 RGB frame,
coloured with a jet colour map and alpha-blended where it is high; the frame is enlarged for viewing and a
HUD shows step, action, value and score. Maps are scaled by a running (or global) maximum, not per frame, so
the overlay does not flicker. MP4 is H.264 through imageio-ffmpeg's bundled ffmpeg (plays in browsers and
common players); without it OpenCV writes H.264 ('avc1') where its build can, else MPEG-4 ('mp4v').
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from tqdm.auto import tqdm

from rl_saliency import io
from rl_saliency.envs.frames import on_frame
from rl_saliency.errors import OptionError, check_count
from rl_saliency.saliency.base import FRAME_SHAPE, upsample_to_frame
from rl_saliency.saliency.registry import get_method

HUD_ROWS = 12  # HUD height in frame pixels (times the scale)


# ---------------------------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------------------------


class MaxNormaliser:
    """Scale maps into [0, 1] by the largest value seen so far (``running``) or a fixed ``peak`` (global)."""

    def __init__(self, peak: float = 0.0):
        self.peak = float(peak)

    def __call__(self, saliency: np.ndarray) -> np.ndarray:
        self.peak = max(self.peak, float(saliency.max()))
        return np.clip(saliency / self.peak, 0.0, 1.0) if self.peak > 0 else np.zeros_like(saliency)


class NormalisedWriter:
    """The loop body both video commands share: each frame's map scaled by :class:`MaxNormaliser`, ``running``
    (written at once) or ``global`` (kept until :meth:`finish`, then scaled by the whole video's peak), and composed
    into a video frame by ``compose(frame, map01, extra)``."""

    def __init__(self, sink: VideoSink, normalise: str, compose: Callable[[np.ndarray, np.ndarray, Any], np.ndarray]):
        self.sink, self.compose, self.hold = sink, compose, normalise == "global"
        self.norm = MaxNormaliser()
        self.pending: list[tuple[np.ndarray, np.ndarray, Any]] = []

    def add(self, frame: np.ndarray, saliency: np.ndarray, extra: Any) -> None:
        if self.hold:
            self.pending.append((frame, saliency, extra))
        else:
            self.sink.write(self.compose(frame, self.norm(saliency), extra))

    def finish(self) -> None:
        if self.pending:
            norm = MaxNormaliser(max(float(s.max()) for _, s, _ in self.pending))
            for frame, saliency, extra in self.pending:
                self.sink.write(self.compose(frame, norm(saliency), extra))
            self.pending = []


def scale_by_run_max(maps: np.ndarray) -> np.ndarray:
    """The FLS reference's rendering step: a run's maps divided by their maximum over all frames (to [0, 1]), what
    ``--normalise global`` does to a video."""
    maps = np.asarray(maps, dtype=np.float32)
    return MaxNormaliser(float(maps.max()) if maps.size else 0.0)(maps)


def overlay(frame_rgb: np.ndarray, saliency01: np.ndarray, scale: int = 4, alpha: float = 0.6) -> np.ndarray:
    """The RGB frame (210, 160, 3) enlarged ``scale`` times, with a saliency map in [0, 1] at the frame's
    resolution blended on as a jet heat map (opaque where salient). Returns RGB uint8."""
    height, width = frame_rgb.shape[0] * scale, frame_rgb.shape[1] * scale
    big = cv2.resize(frame_rgb, (width, height), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    s = cv2.resize(saliency01.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap((np.clip(s, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB).astype(np.float32)
    weight = (alpha * s)[..., None]
    return (big * (1.0 - weight) + heat * weight).clip(0, 255).astype(np.uint8)


def draw_gaze(panel: np.ndarray, gaze_xy: np.ndarray, scale: int = 4) -> np.ndarray:
    """Human gaze samples (x = column, y = row, in 160x210 frame pixels) as green dots on a panel already
    enlarged ``scale`` times (drawn in place; off-screen samples are left out)."""
    for x, y in np.asarray(gaze_xy, dtype=np.float64).reshape(-1, 2):
        if on_frame(x, y):
            cv2.circle(panel, (int(x * scale), int(y * scale)), max(1, scale // 2), (0, 255, 0), -1, cv2.LINE_AA)
    return panel


def hud(width: int, text: str, scale: int = 4) -> np.ndarray:
    """A black strip ``HUD_ROWS * scale`` high with one line of white text."""
    strip = np.zeros((HUD_ROWS * scale, width, 3), dtype=np.uint8)
    font_scale = 0.12 * scale
    cv2.putText(strip, text, (2 * scale, int(HUD_ROWS * scale * 0.72)), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                (255, 255, 255), max(1, scale // 3), cv2.LINE_AA)
    return strip


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C-level stderr (ffmpeg's messages while OpenCV probes an encoder it does not have)."""
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class GifStream:
    """A GIF written frame by frame to a hidden temporary file (each frame with its own adaptive palette), so
    that memory stays flat however long the video; ``close`` moves it into place."""

    def __init__(self, path: Path, fps: float):
        self.path = path
        self.duration = int(round(1000 / fps))
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.gif", dir=path.parent)
        except OSError as err:
            raise io.named_os_error(err, path) from err
        self.tmp = Path(tmp)
        self._file = os.fdopen(fd, "wb")
        self.n_frames = 0

    def write(self, frame_rgb: np.ndarray) -> None:
        from PIL import GifImagePlugin, Image

        image = Image.fromarray(frame_rgb).convert("P", palette=Image.Palette.ADAPTIVE)
        try:
            if self.n_frames == 0:
                header, _ = GifImagePlugin.getheader(image, info={"loop": 0, "duration": self.duration})
                self._file.writelines(header)
            self._file.writelines(GifImagePlugin.getdata(image, duration=self.duration, include_color_table=True))
        except OSError as err:
            raise io.named_os_error(err, self.path) from err
        self.n_frames += 1

    def close(self) -> Path:
        try:
            self._file.write(b";")  # GIF trailer
            self._file.close()
            io.default_permissions(self.tmp)
            os.replace(self.tmp, self.path)
        except OSError as err:
            raise io.named_os_error(err, self.path) from err
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self.tmp.unlink(missing_ok=True)


class VideoSink:
    """Stream RGB frames into an MP4 (and optionally a GIF), both written to hidden temporary files as they come
    and moved into place on ``close``. A full disk or a failing encoder is an OSError naming the output file."""

    def __init__(self, path: str | Path, fps: float, gif: bool = False, gif_width: int = 320):
        self.path = Path(path)
        self.gif_width = gif_width
        self.fps = fps
        self.gif_path = self.path.with_suffix(".gif") if gif else None
        self.gif: GifStream | None = None
        self.codec = ""
        self.n_frames = 0
        self._writer: Any = None
        self._ffmpeg: Any = None
        self._tmp: Path | None = None
        self._size: tuple[int, int] | None = None

    def _open(self, width: int, height: int) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp.mp4", dir=self.path.parent)
        except OSError as err:
            raise io.named_os_error(err, self.path) from err
        os.close(fd)
        self._tmp, self._size = Path(tmp), (width, height)
        if self.gif_path is not None:
            self.gif = GifStream(self.gif_path, self.fps)
        try:
            import imageio_ffmpeg

            self._writer = imageio_ffmpeg.write_frames(
                tmp, (width, height), fps=self.fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
                macro_block_size=1, quality=7, ffmpeg_log_level="error")
            self._writer.send(None)  # start the generator
            # imageio-ffmpeg does not check ffmpeg's exit status: keep its process to check it on close
            self._ffmpeg = getattr(getattr(self._writer, "gi_frame", None), "f_locals", {}).get("p")
            self.codec = "h264 (imageio-ffmpeg)"
            return
        except ImportError:
            pass
        for fourcc in ("avc1", "mp4v"):
            with _quiet_stderr():
                writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*fourcc), self.fps, (width, height))
            if writer.isOpened():
                self._writer, self.codec = writer, f"{fourcc} (OpenCV)"
                return
            writer.release()
        raise RuntimeError(f"no video encoder available to write {self.path} (tried H.264 and MPEG-4)")

    def _encoder_failed(self, err: Exception) -> OSError:
        """The encoder (ffmpeg, in its own process) died: a full disk if the output's disk is full, else the
        encoder's own error; either way naming the output file, not the temporary one."""
        with contextlib.suppress(OSError):
            stats = os.statvfs(self.path.parent)
            if stats.f_bavail * stats.f_frsize < 1 << 20:
                return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        if isinstance(err, OSError) and err.errno is not None:
            return io.named_os_error(err, self.path)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return OSError(errno.EIO, f"the video encoder failed ({first})", str(self.path))

    def write(self, frame_rgb: np.ndarray) -> None:
        height, width = frame_rgb.shape[:2]
        if self._writer is None:
            self._open(width, height)
        if (width, height) != self._size:
            raise ValueError(f"frame size {(width, height)} differs from the video's {self._size}")
        try:
            if isinstance(self._writer, cv2.VideoWriter):
                self._writer.write(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
            else:
                self._writer.send(np.ascontiguousarray(frame_rgb))
        except (OSError, RuntimeError, StopIteration) as err:
            raise self._encoder_failed(err) from err
        if self.gif is not None:
            # GIFs are uncompressed palettes: keep them small (half the MP4's width at the default scale)
            gif_height = int(round(height * self.gif_width / width))
            self.gif.write(cv2.resize(frame_rgb, (self.gif_width, gif_height), interpolation=cv2.INTER_AREA))
        self.n_frames += 1

    def close(self) -> list[Path]:
        """Finish the files and move them into place; returns the paths written."""
        if self._writer is None:
            raise RuntimeError(f"no frames were written to {self.path}")
        try:
            if isinstance(self._writer, cv2.VideoWriter):
                self._writer.release()
            else:
                self._writer.close()
        except (OSError, RuntimeError) as err:
            raise self._encoder_failed(err) from err
        status = self._ffmpeg.poll() if self._ffmpeg is not None else 0
        if status:  # ffmpeg failed (a full disk while muxing): the file is not a whole video
            raise self._encoder_failed(RuntimeError(f"ffmpeg exited with status {status}"))
        self._writer = None
        try:
            io.default_permissions(self._tmp)
            os.replace(self._tmp, self.path)
        except OSError as err:
            raise io.named_os_error(err, self.path) from err
        written = [self.path]
        if self.gif is not None:
            written.append(self.gif.close())
        return written

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.release() if isinstance(self._writer, cv2.VideoWriter) else self._writer.close()
        if self._tmp is not None and self._tmp.exists():
            self._tmp.unlink()
        if self.gif is not None:
            self.gif.abort()


# ---------------------------------------------------------------------------------------------------------------
# Playing the agent
# ---------------------------------------------------------------------------------------------------------------


MAX_STEPS = 1_000_000  # 9 hours of video at 30 frames/s: more would not finish in any useful time
MAX_SCALE = 16  # a 3360x2560 frame; --scale 100 would be 1 GB per frame
# bytes kept per frame with --normalise global: the RGB frame and its float32 map at 210x160, and the enlarged
# gaze panel of a trial (agent videos need less)
_GLOBAL_BYTES = (FRAME_SHAPE[0] * FRAME_SHAPE[1] * (3 + 4), FRAME_SHAPE[0] * FRAME_SHAPE[1] * 3)


def _available_memory() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_render_options(steps: int, scale: int, fps: float, alpha: float, normalise: str) -> None:
    """Bad video options fail before a model is loaded or a frame is read; so do ones that would never finish
    (``--steps`` past MAX_STEPS) or exhaust memory (``--scale`` past MAX_SCALE, ``--normalise global`` holding
    more frames than half the free memory)."""
    check_count(steps, "--steps", maximum=MAX_STEPS)
    check_count(scale, "--scale", maximum=MAX_SCALE)
    if normalise == "global":
        needed = steps * (_GLOBAL_BYTES[0] + _GLOBAL_BYTES[1] * scale * scale)
        free = _available_memory()
        if free is not None and needed > free // 2:
            raise OptionError(f"--normalise global keeps every frame in memory: --steps {steps} at --scale {scale} "
                              f"needs about {needed / 1e9:.1f} GB, more than half the free memory "
                              f"({free / 1e9:.1f} GB); use --normalise running, or fewer --steps")
    if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
        raise OptionError(f"--fps must be a number > 0, got {fps!r}")
    if not (isinstance(alpha, int | float) and 0 <= alpha <= 1):
        raise OptionError(f"--alpha must be between 0 and 1, got {alpha!r}")
    if normalise not in ("running", "global"):
        raise OptionError(f"--normalise must be 'running' or 'global', got {normalise!r}")


def _action_names(venv: Any) -> list[str] | None:
    try:
        return list(venv.get_attr("unwrapped")[0].get_action_meanings())
    except Exception:  # noqa: BLE001 - names are cosmetic; fall back to numbers
        return None


def _value(policy: Any, obs: np.ndarray) -> float | None:
    from rl_saliency.saliency.methods import policy_outputs

    try:
        with torch.no_grad():
            _, value = policy_outputs(policy, policy.obs_to_tensor(obs)[0].float())
        return float(value[0])
    except TypeError:  # a policy with neither a critic nor Q-values
        return None


def render_agent(model: BaseAlgorithm | str | Path, game: str | None = None, method: str = "gradient",
                 steps: int = 300, out: str | Path = "video.mp4", gif: bool = False, seed: int = 0, scale: int = 4,
                 fps: float = 30.0, alpha: float = 0.6, normalise: str = "running", deterministic: bool = True,
                 method_kwargs: dict[str, Any] | None = None, device: str = "auto",
                 progress: bool = True) -> dict[str, Any]:
    """Play ``steps`` agent steps in one evaluation env (whole games, raw scores) and write the overlay video.

    ``normalise``: ``running`` (max so far) or ``global`` (max over the whole video: frames are kept in memory
    and written at the end). Returns a summary: paths, frames, codec, render fps, episode scores.
    """
    from rl_saliency.envs import make_atari_vec_env
    from rl_saliency.models import check_model_fits, wrap_env_for_model
    from rl_saliency.runs import check_method, open_agent

    check_render_options(steps, scale, fps, alpha, normalise)
    saliency_method = get_method(method, **(method_kwargs or {}))
    if not isinstance(model, BaseAlgorithm):
        agent = open_agent(model, game, device=device)
        model, game = agent.model, agent.game
    elif game is None:
        raise ValueError("pass the game when giving a loaded model")
    check_method(saliency_method, method, model.policy)
    venv = make_atari_vec_env(game, n_envs=1, seed=seed, backend="sb3", training=False, render_mode="rgb_array")
    venv = wrap_env_for_model(model, venv)
    check_model_fits(model, venv.observation_space, venv.action_space, what=f"game {game!r}")
    names = _action_names(venv)
    sink = VideoSink(out, fps, gif=gif)
    writer = NormalisedWriter(sink, normalise, lambda frame, saliency01, text: _compose(frame, saliency01, text,
                                                                                         scale, alpha))
    score, scores = 0.0, []
    start = time.time()
    lock = io.output_lock(Path(out).parent, Path(out).name)  # one writer per video; a dead one's temp files go
    try:
        lock.__enter__()
    except BaseException:
        venv.close()
        raise
    obs = venv.reset()
    try:
        for step in tqdm(range(steps), desc=f"render {game} {method}", unit="frame", disable=not progress):
            frame = venv.get_images()[0]
            saliency = upsample_to_frame(saliency_method.attribute(model.policy, obs)[0], FRAME_SHAPE)
            action, _ = model.predict(obs, deterministic=deterministic)
            value = _value(model.policy, obs)
            a = int(np.asarray(action).reshape(-1)[0])
            text = (f"step {step}  {names[a] if names else a}  "
                    f"{'' if value is None else f'value {value:+.2f}  '}score {score:g}  [{method}]")
            writer.add(frame, saliency, text)
            obs, reward, done, info = venv.step(action)
            score += float(reward[0])
            if done[0]:
                scores.append(float(info[0].get("episode", {}).get("r", score)))
                score = 0.0
        writer.finish()
        paths = sink.close()
    except BaseException:
        sink.abort()
        raise
    finally:
        venv.close()
        lock.__exit__(None, None, None)
    elapsed = time.time() - start
    return {"paths": [str(p) for p in paths], "frames": sink.n_frames, "codec": sink.codec,
            "fps": sink.n_frames / max(elapsed, 1e-9), "seconds": elapsed, "finished_games": scores,
            "score_in_progress": score, "game": game, "method": method}


def _compose(frame: np.ndarray, saliency01: np.ndarray, text: str, scale: int, alpha: float) -> np.ndarray:
    panel = overlay(frame, saliency01, scale=scale, alpha=alpha)
    return np.concatenate([hud(panel.shape[1], text, scale), panel], axis=0)


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------
