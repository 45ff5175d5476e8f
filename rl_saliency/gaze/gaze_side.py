"""The gaze side of each scored batch (fixation counts, their blur, the shuffled-AUC negatives, the AUC-Borji seed,
the metrics' ``GazeBatch``), in its own light module: the decoding process, started from a fork server that
preloads this module (``gaze/prefetch.py``), computes it beside the replay when an agent's map is scored."""

from __future__ import annotations

from typing import Any

import numpy as np

from rl_saliency.gaze.fixations import gaze_density, observation_counts, shuffled_negatives
from rl_saliency.gaze.protocol import Protocol
from rl_saliency.gaze.scoring import GazeBatch


class GazeMaps:
    """The gaze side of each batch, in batch order: fixation counts, their blur, the shuffled-AUC negatives (drawn
    from ``rng``), the batch's AUC-Borji seed (drawn next) and the metrics' ``GazeBatch``. Called in the scoring
    process, or in the decoding process (``prefetch.replayed_batches``' ``per_batch``), which then owns ``rng``:
    the same draws in the same order either way."""

    def __init__(self, gaze: Any, indices: list[int], protocol: Protocol, rng: np.random.Generator,
                 keep_density: bool = False):
        self.gaze, self.indices, self.protocol, self.rng = gaze, indices, protocol, rng
        self.position = {index: k for k, index in enumerate(indices)}
        self.keep_density = keep_density

    def __call__(self, at: list[int]) -> dict[str, Any]:
        protocol, shape = self.protocol, self.protocol.shape
        options = {"rounding": protocol.rounding, "gaze_offset": protocol.gaze_offset}
        counts, n_fix, n_off = observation_counts(self.gaze, at, shape, **options)
        density = gaze_density(counts, border=protocol.blur_border)
        others = shuffled_negatives(self.gaze, self.indices, [self.position[i] for i in at], self.rng, shape,
                                    replace=protocol.negatives_with_replacement, **options)
        # the gaze side of every metric (fixated pixels, densities, their sums) is the same for every method
        return {"gaze": GazeBatch(counts, density, others), "n_fix": n_fix, "n_off": n_off,
                "n_negatives": others.sum(axis=(1, 2)).astype(np.int64), "seed": int(self.rng.integers(2**63)),
                "density": density if self.keep_density else None}
