"""A trained cue policy's action visualisations show each action's own cue pattern (the cue env of the Saccader
work: action i earns 1 when the cue shows pattern i)."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from rl_saliency.envs.cue import CueEnv, evaluate_on_cue, make_cue_vec_env
from rl_saliency.visualize import get_visualizer

CUE = dict(n_distractors=0)  # the cue alone, anywhere on the 7x7 grid: a policy learns it in a few thousand steps
FRAME = 84


class TinyCNN(BaseFeaturesExtractor):
    """One conv layer (8 filters 8x8, stride 4) and the flattened map: small enough to train in the test."""

    def __init__(self, observation_space, features_dim: int = 8 * 20 * 20):
        super().__init__(observation_space, features_dim)
        self.cnn = nn.Sequential(nn.Conv2d(4, 8, 8, stride=4), nn.ReLU(), nn.Flatten())

    def forward(self, observations):
        return self.cnn(observations)


def pattern_correlations(frames: np.ndarray, env: CueEnv) -> np.ndarray:
    """(actions, patterns): correlation of each visualisation with each cue's class pattern (the inner 6x6 of the
    framed 8x8 cue) over the places a cue can be, i.e. every grid cell at the env's patch offset."""
    size, cell = env.patch_size, env.cell_size
    offset = (cell - size) // 2 + 1  # the inner pattern, without the frame every cue shares
    inner = env.cue_patterns[:, 1:-1, 1:-1].astype(float)
    image = frames.mean(axis=1)  # the 4 stacked frames show the same image in this env
    grid = FRAME // cell
    result = np.zeros((len(frames), len(inner)))
    for a, picture in enumerate(image):
        cells = np.stack([picture[r * cell + offset:r * cell + offset + size - 2,
                                  c * cell + offset:c * cell + offset + size - 2]
                          for r in range(grid) for c in range(grid)])
        for p, pattern in enumerate(inner):
            result[a, p] = np.corrcoef(cells.ravel(), np.tile(pattern, (len(cells), 1, 1)).ravel())[0, 1]
    return result



def visualise(model: PPO) -> np.ndarray:
    # the cue patterns are 1-pixel binary patterns: no blur and no jitter (priors for larger structures)
    vis = get_visualizer("action", steps=100, blur_every=0, jitter=0, seed=0).visualize(model.policy)
    assert (vis.table["score_after"] > vis.table["score_before"]).all()
    return vis.frames


@pytest.mark.slow
def test_each_action_visualisation_shows_its_own_cue_pattern() -> None:
    env = CueEnv(**CUE)
    model = PPO("CnnPolicy", make_cue_vec_env(16, seed=0, **CUE), n_steps=32, batch_size=128, n_epochs=4,
                learning_rate=2e-3, ent_coef=0.01, gamma=0.0, gae_lambda=1.0, seed=0, device="cpu",
                policy_kwargs=dict(features_extractor_class=TinyCNN, net_arch=[]))
    untrained = pattern_correlations(visualise(model), env)
    model.learn(2048)
    assert evaluate_on_cue(model, episodes=200, **CUE)["fraction_of_optimal"] >= 0.6  # chance: 0.25
    trained = pattern_correlations(visualise(model), env)
    # each action's visualisation correlates more with its own pattern than with any other
    assert (trained.argmax(axis=1) == np.arange(env.n_actions)).all(), trained.round(2)
    assert np.diag(trained).min() > 0.3, trained.round(2)
    # and that comes from training: the untrained policy's visualisations do not show the patterns
    assert np.diag(trained).mean() > np.diag(untrained).mean() + 0.3, (trained.round(2), untrained.round(2))
