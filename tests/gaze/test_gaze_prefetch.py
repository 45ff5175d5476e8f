"""The background-thread prefetch used to overlap decoding with scoring: same items, same order, the producer's
errors raised at the same point, an early stop ends the producer."""

from __future__ import annotations

import threading

import pytest

from rl_saliency.gaze.prefetch import prefetched


def test_same_items_in_order():
    assert list(prefetched(range(1000), depth=7)) == list(range(1000))
    assert list(prefetched([])) == []


def test_producer_error_is_raised_after_the_items_before_it():
    def items():
        yield from range(5)
        raise ValueError("corrupt frame")

    seen = []
    with pytest.raises(ValueError, match="corrupt frame"):
        for item in prefetched(items(), depth=2):
            seen.append(item)
    assert seen == list(range(5))


def test_early_stop_ends_and_cleans_up_the_producer():
    closed = threading.Event()

    def items():
        try:
            yield from range(10**9)
        finally:
            closed.set()

    consumer = prefetched(items(), depth=4)
    assert [next(consumer) for _ in range(3)] == [0, 1, 2]
    consumer.close()
    assert closed.wait(5)
    assert not any(t.name == "prefetch" and t.is_alive() for t in threading.enumerate())


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth"):
        list(prefetched(range(3), depth=0))
