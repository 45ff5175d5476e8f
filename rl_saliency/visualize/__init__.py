"""What a network wants to see: action and unit visualisation, the generator prior (DGN-AM) and fooling frames.

One call for every technique, as for the saliency methods::

    from rl_saliency.visualize import get_visualizer
    vis = get_visualizer("action", steps=200).visualize(model.policy)           # one stack per action
    vis = get_visualizer("unit").visualize(model.policy, ["features:7", "conv3:5"])
    vis = get_visualizer("fooling", target="any").visualize(model.policy, observations=obs)
    vis.frames, vis.table                                                         # (K, 4, 84, 84), scores
"""

from rl_saliency.visualize.base import Visualization, Visualizer
from rl_saliency.visualize.registry import available_visualizers, get_visualizer

__all__ = ["Visualization", "Visualizer", "available_visualizers", "get_visualizer"]
