"""``gaze-eval`` runs with every post-hoc method on the real Atari-HEAD trial."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3 import PPO

from rl_saliency.saliency.methods import POST_HOC_METHODS


@pytest.mark.slow  # parses the full trial's 12 MB gaze txt
def test_gaze_eval_with_every_post_hoc_method(real_trial, tmp_path):
    from rl_saliency.envs import make_atari_vec_env
    from rl_saliency.gaze.evaluator import gaze_eval

    venv = make_atari_vec_env("ms_pacman", n_envs=1, backend="sb3")
    model = tmp_path / "ppo_pacman.zip"
    PPO("CnnPolicy", venv, n_steps=8, batch_size=8, device="cpu", seed=0).save(model)
    venv.close()
    tables = gaze_eval(model, real_trial, tmp_path / "eval", methods=list(POST_HOC_METHODS), game="ms_pacman",
                       max_frames=30, stride=8, progress=False)
    per_trial = tables["per_trial"]
    assert set(POST_HOC_METHODS) <= set(per_trial["method"])
    scored = per_trial[per_trial["method"].isin(POST_HOC_METHODS)]
    assert (scored["observations"] > 0).all()
    assert np.isfinite(scored["nss_mean"]).all() and scored["auc_judd_mean"].between(0, 1).all()
