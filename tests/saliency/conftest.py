"""Fixtures for the saliency tests (policies come from ``saliency_helpers``)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def observations() -> np.ndarray:
    """Three frames with structure (a bright paddle-like bar and a ball) on noise, uint8 like the env's."""
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 60, size=(3, 4, 84, 84), dtype=np.uint8)
    for i in range(3):
        obs[i, :, 70:74, 20 + 10 * i:36 + 10 * i] = 200
        obs[i, :, 30 + 5 * i:33 + 5 * i, 40:43] = 255
    return obs
