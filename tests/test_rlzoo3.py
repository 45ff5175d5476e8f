"""rl-zoo3 interop: train with this package's Sparse FLS extractor from rl-zoo3's own hyperparameter YAML (the
extractor named by import path in ``policy_kwargs``) through rl-zoo3's train entry point, then use its zip in
``evaluate``, ``render`` and ``gaze-eval``. Skips without rl_zoo3 (``pip install -e ".[zoo]"``; CI installs it,
so it runs there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from rl_saliency.cli import main

pytest.importorskip("rl_zoo3")

# rl-zoo3's Atari PPO recipe (its hyperparams/ppo.yml "atari" entry), shrunk to a few hundred steps, with the extractor
ZOO_YAML = """\
atari:
  env_wrapper:
    - stable_baselines3.common.atari_wrappers.AtariWrapper
  frame_stack: 4
  policy: 'CnnPolicy'
  n_envs: 2
  n_steps: 64
  n_epochs: 1
  batch_size: 64
  n_timesteps: !!float 256
  learning_rate: lin_2.5e-4
  clip_range: lin_0.1
  vf_coef: 0.5
  ent_coef: 0.01
  policy_kwargs: "dict(features_extractor_class=importlib.import_module('rl_saliency.agents').SparseFLS, net_arch=[])"
"""


@pytest.fixture(scope="module")
def zoo_zip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rlzoo3")
    (folder / "fls_zoo.yml").write_text(ZOO_YAML)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", "MsPacmanNoFrameskip-v4",
                             "--conf-file", "fls_zoo.yml", "-f", "logs", "--seed", "0", "--eval-freq", "-1",
                             "--device", "cpu", "--verbose", "0"], cwd=folder, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    path = folder / "logs" / "ppo" / "MsPacmanNoFrameskip-v4_1" / "MsPacmanNoFrameskip-v4.zip"
    assert path.exists(), sorted(p.name for p in folder.rglob("*"))
    return path


@pytest.mark.slow  # rl-zoo3 trains 256 steps in a subprocess
def test_rlzoo3_trains_with_the_fls_extractor(zoo_zip):
    from stable_baselines3 import PPO

    from rl_saliency.agents import SparseFLS

    model = PPO.load(zoo_zip, device="cpu")
    assert isinstance(model.policy.features_extractor, SparseFLS)
    assert model.num_timesteps == 256


@pytest.mark.slow
def test_rlzoo3_zip_in_evaluate_and_render(zoo_zip, tmp_path):
    assert main(["evaluate", "--model", str(zoo_zip), "--game", "ms_pacman", "--episodes", "1", "--n-envs", "1",
                 "--max-frames", "300", "--out", str(tmp_path / "eval")]) == 0
    summary = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert summary["episodes"] == 1 and (tmp_path / "eval" / "scores.png").exists()
    assert main(["render", "--model", str(zoo_zip), "--game", "ms_pacman", "--method", "attention", "--steps", "5",
                 "--scale", "1", "--out", str(tmp_path / "attention.mp4")]) == 0
    assert (tmp_path / "attention.mp4").stat().st_size > 0


@pytest.mark.slow
def test_rlzoo3_zip_in_gaze_eval(zoo_zip, atari_head_dir, tmp_path):
    out = tmp_path / "gaze"
    assert main(["gaze-eval", "--model", str(zoo_zip), "--game", "ms_pacman", "--method", "attention",
                 "--atari-head", str(atari_head_dir), "--max-frames", "30", "--out", str(out)]) == 0
    per_game = pd.read_csv(out / "per_game.csv")
    assert set(per_game["method"]) == {"attention", "centre_bias", "uniform", "intensity"}
    attention = per_game[per_game["method"] == "attention"].iloc[0]
    assert attention["observations"] == 17 and pd.notna(attention["nss_mean"])
    # no run folder: the replay pools frames on RGB, as rl-zoo3's AtariWrapper did in training
    assert json.loads((out / "run.json").read_text())["pool"] == "rgb"
    assert (out / "plots" / "metrics_ms_pacman.png").exists()
