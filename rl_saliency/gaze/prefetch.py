"""Run the decoding of a trial's frames ahead of their scoring: in a background thread (``prefetched``) or, as the
evaluator does, in a separate process (``replayed_batches``), which shares no GIL with the scoring.

A thread overlaps only the parts of both sides that release the GIL (bz2, OpenCV, much of numpy); the process
overlaps all of them, at the cost of sending each batch of observations (28 KiB an observation) through a queue.
Either way, items come out in the producer's order; an exception raised by the producer is raised by the
consumer at the same point of the sequence; closing the consumer early stops the producer. A producer process
that dies without a word is noticed (``ProducerError``) rather than waited for.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import queue
import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def prefetched(items: Iterable[T], depth: int = 128) -> Iterator[T]:
    """``items``, produced up to ``depth`` ahead in a daemon thread."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(item):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            put(_Failed(error))
            return
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:  # a generator stopped early runs its cleanup here, in its own thread
                close()
        put(_DONE)

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


# ------------------------------------------------------------------------------------------------ a process

class ProducerError(RuntimeError):
    """The frame-decoding process stopped without finishing (killed, or crashed outside Python)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        return True
    return True


def _replay_worker(out, stop, tar: str, expected: list[int], max_index: int | None, reorder_bytes: int,
                   indices: list[int], pool: str, batch_size: int, per_batch, evaluator: int) -> None:
    """The producer process: decode the trial's frames, replay them into observations and put them on ``out`` in
    batches of ``batch_size`` (the last one shorter): ``("batch", indices int64 (n,), obs uint8 (n, 4, 84, 84),
    per_batch(indices) or None)``, then ``("done", frame report, replay report, private MiB)``, or
    ``("error", exception, traceback text)``."""
    import traceback

    import cv2

    from rl_saliency.envs.replay import ReplayReport, replay_observations
    from rl_saliency.gaze.data import FrameStreamReport, iter_frames

    def put(item: object) -> bool:
        # an evaluator killed outright leaves no orphan (the fork server, not the evaluator, is this one's parent)
        while not stop.is_set() and _alive(evaluator):
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    cv2.setNumThreads(1)  # one core for the decoding; the other is the scoring's
    frame_report, replay_report = FrameStreamReport(Path(tar)), ReplayReport()
    try:
        frames = iter_frames(tar, expected=expected, max_index=max_index, report=frame_report,
                             reorder_bytes=reorder_bytes)
        at: list[int] = []
        obs: list = []
        for index, observation in replay_observations(frames, indices=indices, report=replay_report, pool=pool):
            at.append(index)
            obs.append(observation)
            if len(at) == batch_size:
                if not put(("batch", np.asarray(at, np.int64), np.stack(obs), per_batch and per_batch(at))):
                    return
                at, obs = [], []
        if at and not put(("batch", np.asarray(at, np.int64), np.stack(obs), per_batch and per_batch(at))):
            return
        put(("done", frame_report, replay_report, _private_mib()))
    except BaseException as error:  # noqa: BLE001 - every error is handed to the evaluator, raised there
        text = traceback.format_exc()
        try:
            pickle.dumps(error)
        except Exception:  # noqa: BLE001 - an exception that cannot cross processes goes as its text
            error = ProducerError(f"{type(error).__name__}: {error}")
        put(("error", error, text))


def _private_mib() -> float | None:
    """This process's private (unshared) memory in MiB, from /proc (None where there is none)."""
    try:
        text = Path("/proc/self/smaps_rollup").read_text()
    except OSError:
        return None
    return sum(int(line.split()[1]) for line in text.splitlines() if line.startswith("Private_")) / 1024


LAST_PRODUCER_PRIVATE_MIB: list[float | None] = [None]  # the last producer's private memory at its end (benchmarks)


# How the decoding process starts. Not "fork": the evaluator has threads (torch's OpenMP pool, the ale backend's
# env threads, tqdm's monitor), and a child forked from a threaded process can wait forever on a lock one of them
# held (seen: the suite hung in the zoo's gaze test). The fork server is a clean single-threaded process, started
# once, with the decoder's modules preloaded, that forks each producer.
START_METHOD = "forkserver"
PRELOAD = ["rl_saliency.gaze.prefetch", "rl_saliency.envs.replay", "rl_saliency.gaze.data",
           "rl_saliency.gaze.gaze_side"]


@contextlib.contextmanager
def _main_left_out() -> Iterator[None]:
    """While a producer starts: the fork server (like spawn) would re-run the caller's ``__main__`` in the child,
    which a script without an ``if __name__ == "__main__":`` guard (or a notebook) cannot bear; the producer needs
    nothing from it, so it is not sent."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _context():
    methods = multiprocessing.get_all_start_methods()
    method = START_METHOD if START_METHOD in methods else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(PRELOAD)
    return context


def replayed_batches(tar: str | Path, expected: list[int], indices: list[int], batch_size: int, pool: str = "rgb",
                     max_index: int | None = None, reorder_bytes: int | None = None, depth: int = 4,
                     reports: dict | None = None, poll_s: float = 0.5,
                     per_batch: Callable[[list[int]], Any] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray,
                                                                                            Any]]:
    """The observations at ``indices`` of a trial's tar.bz2 (``envs.replay``, ``pool``), decoded and replayed in a
    separate process, up to ``depth`` batches ahead of the caller (decoding shares no GIL with the scoring), in
    batches ``(indices (n,), obs (n, 4, 84, 84) uint8, extra)`` of ``batch_size`` consecutive observations (the
    last one shorter): the batches the single-process loop would build. ``extra`` is ``per_batch(indices)``
    computed in the producer, in batch order (work moved to the decoding side: it must be picklable, and is
    called in the producer's copy of it), or None. When the stream ends, ``reports`` (if given) receives
    ``frames`` (the ``FrameStreamReport``) and ``replay`` (the ``ReplayReport``).

    An exception in the producer is raised here, after the batches before it, with the producer's traceback as
    a note; a producer that dies without a word (killed) raises ``ProducerError`` within ``poll_s`` seconds or
    so; closing this generator early stops the producer."""
    from rl_saliency.gaze.data import DEFAULT_REORDER_BYTES

    if batch_size < 1 or depth < 1:
        raise ValueError(f"batch_size and depth must be >= 1, got {batch_size}, {depth}")
    context = _context()
    out, stop = context.Queue(maxsize=depth), context.Event()
    process = context.Process(target=_replay_worker, name="gaze-replay", daemon=True, args=(
        out, stop, str(tar), list(expected), max_index,
        DEFAULT_REORDER_BYTES if reorder_bytes is None else reorder_bytes, list(indices), pool, batch_size,
        per_batch, os.getpid()))
    with _main_left_out():
        process.start()
    try:
        while True:
            try:
                item = out.get(timeout=poll_s)
            except queue.Empty:
                if process.is_alive():
                    continue
                try:  # it may have exited just after its last put: what it sent is in the pipe
                    item = out.get(timeout=poll_s)
                except queue.Empty:
                    raise ProducerError(f"the process decoding {tar} stopped (exit code {process.exitcode}) "
                                        f"before the end of the stream") from None
            kind = item[0]
            if kind == "batch":
                yield item[1], item[2], item[3]
            elif kind == "done":
                if reports is not None:
                    reports["frames"], reports["replay"] = item[1], item[2]
                LAST_PRODUCER_PRIVATE_MIB[0] = item[3]
                return
            else:
                error = item[1]
                error.add_note(f"raised in the process decoding {tar}:\n{item[2]}")
                raise error
    finally:
        stop.set()
        try:  # unblock a producer waiting on a full queue
            while True:
                out.get_nowait()
        except (queue.Empty, OSError, ValueError):
            pass
        process.join(timeout=5)
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)
        out.close()
        out.cancel_join_thread()
