"""Run an iterator ahead in a background thread: decoding a trial's frames overlapped with scoring them.

Reading the tar.bz2, decoding the PNGs and the replay's resizing spend most of their time in C code that
releases the GIL (bz2, OpenCV), as does most of numpy's work on the scoring side, so one thread is enough to
overlap the two on a second core. Items come out in the producer's order; an exception raised by the producer
is raised by the consumer at the same point of the sequence; closing the consumer early stops the producer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

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
