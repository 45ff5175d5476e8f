"""Atari-HEAD gaze evaluation: the dataset reader, fixation maps, saliency metrics and the evaluator.

The reader and maps are imported here; the evaluator (``rl_saliency.gaze.evaluator``: ``gaze_eval``,
``rl-saliency gaze-eval``) is imported on use, as it loads models.
"""

from rl_saliency.gaze.data import (
           FrameStreamReport,
           GazeTable,
           Trial,
           TrialFiles,
           find_trials,
           iter_frames,
           read_gaze_table,
)
from rl_saliency.gaze.fixations import fixation_counts, gaze_density, observation_counts, observation_indices

__all__ = ["FrameStreamReport", "GazeTable", "Trial", "TrialFiles", "find_trials", "fixation_counts", "gaze_density",
           "iter_frames", "observation_counts", "observation_indices", "read_gaze_table"]
