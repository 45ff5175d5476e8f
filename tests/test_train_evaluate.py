"""Training through the CLI, interruption and resume, evaluation, and the errors users see."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap

import pandas as pd
import pytest
import yaml

from rl_saliency import train as train_module
from rl_saliency.cli import main
from rl_saliency.models import ModelLoadError, load_model

TINY = ["--n-envs", "2", "--set", "n_steps=32", "--set", "batch_size=32", "--set", "n_epochs=1", "--no-progress",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A PPO run interrupted after its first checkpoint, then resumed to the full budget."""
    run = tmp_path_factory.mktemp("runs") / "nature_breakout"
    original = train_module.CheckpointAndProgress.save
    calls = {"n": 0}

    def save_then_interrupt(self):
        path = original(self)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return path

    mp = pytest.MonkeyPatch()
    mp.setattr(train_module.CheckpointAndProgress, "save", save_then_interrupt)
    code = main(["train", "--game", "breakout", "--timesteps", "256", "--checkpoint-freq", "64", "--out", str(run),
                 *TINY])
    assert code == 130
    mp.undo()
    interrupted = sorted(p.name for p in (run / "checkpoints").glob("*.zip"))
    assert not (run / "model.zip").exists()
    assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0
    return run, interrupted


def test_train_writes_run_folder_and_resumes(trained_run):
    run, interrupted = trained_run
    assert interrupted == ["ckpt_64_steps.zip"]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["game"] == "breakout" and config["timesteps"] == 256
    assert config["spec"]["hyperparams"]["n_steps"] == 32
    model = load_model(run / "model.zip")
    assert model.num_timesteps == 256
    # the learning rate kept decaying linearly across the resume (not restarted at 2.5e-4)
    assert model.learning_rate(0.5) == pytest.approx(1.25e-4)
    metrics = pd.read_csv(run / "metrics.csv")
    steps = metrics["time/total_timesteps"].tolist()
    assert steps == sorted(steps) and steps[-1] == 256 and len(steps) == len(set(steps))


def test_resume_of_finished_run_trains_nothing(trained_run, capsys):
    run, _ = trained_run
    assert main(["train", "--resume", "--out", str(run), "--timesteps", "512"]) == 2
    assert "budget of 256 steps" in capsys.readouterr().err
    before = (run / "model.zip").stat().st_mtime_ns
    assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0
    assert (run / "model.zip").stat().st_mtime_ns == before


def test_evaluate_trained_model(trained_run, capsys):
    run, _ = trained_run
    assert main(["evaluate", "--model", str(run / "model.zip"), "--episodes", "2", "--max-frames", "3000"]) == 0
    summary = json.loads((run / "eval" / "evaluation.json").read_text())
    assert summary["game"] == "breakout" and summary["episodes"] == 2
    assert summary["score_min"] <= summary["score_mean"] <= summary["score_max"]
    episodes = pd.read_csv(run / "eval" / "episodes.csv")
    assert len(episodes) == 2 and (episodes["length"] > 0).all()
    assert "score  mean" in capsys.readouterr().out


def test_evaluate_plain_sb3_zip(tmp_path):
    """A model trained by plain SB3 (make_atari_env + VecFrameStack, CnnPolicy) evaluates with --game."""
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=1, seed=0), n_stack=4)
    A2C("CnnPolicy", env, n_steps=5, device="cpu").save(tmp_path / "a2c_pong.zip")
    env.close()
    assert main(["evaluate", "--model", str(tmp_path / "a2c_pong.zip"), "--game", "pong", "--episodes", "1",
                 "--max-frames", "800", "--out", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval" / "evaluation.json").read_text())["episodes"] == 1


def test_evaluate_model_from_other_game_fails_clearly(trained_run, tmp_path, capsys):
    run, _ = trained_run
    # in its run folder: the run's game and --game disagree, said before the model is loaded (issue 12: one rule)
    assert main(["evaluate", "--model", str(run / "model.zip"), "--game", "pong", "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "trained on breakout" in err and "--game is pong" in err
    # a bare zip (no run folder): the spaces do not fit
    shutil.copy(run / "model.zip", tmp_path / "bare.zip")
    assert main(["evaluate", "--model", str(tmp_path / "bare.zip"), "--game", "pong", "--episodes", "1"]) == 2
    assert "action space" in capsys.readouterr().err


def test_unknown_game_missing_spec_corrupt_zip(tmp_path, capsys):
    assert main(["train", "--game", "breakot", "--out", str(tmp_path / "r")]) == 2
    assert "Did you mean: breakout" in capsys.readouterr().err
    assert main(["train", "--agent", "agents/missing.yaml"]) == 2
    assert "agents/missing.yaml does not exist" in capsys.readouterr().err
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 truncated")
    assert main(["evaluate", "--model", str(tmp_path / "broken.zip"), "--game", "breakout"]) == 2
    assert "broken.zip is not a Stable-Baselines3 model zip" in capsys.readouterr().err


def test_model_with_unimportable_extractor(tmp_path, monkeypatch):
    module_dir = tmp_path / "mods"
    module_dir.mkdir()
    (module_dir / "vanishing_extractor.py").write_text(textwrap.dedent("""
        import torch
        from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

        class Tiny(BaseFeaturesExtractor):
            def __init__(self, observation_space):
                super().__init__(observation_space, 8)
                self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 7 * 7, 8))

            def forward(self, x):
                return self.net(x[:, :, ::12, ::12])
    """))
    monkeypatch.syspath_prepend(str(module_dir))
    import vanishing_extractor
    from stable_baselines3 import PPO

    from rl_saliency.envs import make_atari_vec_env

    venv = make_atari_vec_env("breakout", 1)
    PPO("CnnPolicy", venv, n_steps=8, batch_size=8,
        policy_kwargs={"features_extractor_class": vanishing_extractor.Tiny}).save(tmp_path / "custom.zip")
    venv.close()
    monkeypatch.delitem(sys.modules, "vanishing_extractor")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(module_dir)])
    with pytest.raises(ModelLoadError, match="vanishing_extractor"):
        load_model(tmp_path / "custom.zip")


def test_wrong_observation_shape_fails_clearly(tmp_path, capsys):
    import gymnasium as gym
    from stable_baselines3 import PPO

    PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=8, batch_size=8).save(tmp_path / "cartpole.zip")
    assert main(["evaluate", "--model", str(tmp_path / "cartpole.zip"), "--game", "breakout"]) == 2
    assert "observations of shape (4,)" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--timesteps", "0"], "--timesteps must be an integer >= 1, got 0"),
    (["--timesteps", "-5"], "--timesteps must be an integer >= 1"),
    (["--timesteps", "nan"], "--timesteps must be an integer >= 1, got nan"),
    (["--timesteps", "256", "--n-envs", "0"], "--n-envs must be an integer >= 1, got 0"),
    (["--timesteps", "256", "--n-envs", "-1"], "--n-envs must be an integer >= 1, got -1"),
    (["--timesteps", "256", "--checkpoint-freq", "-3"], "--checkpoint-freq must be an integer >= 1"),
    (["--timesteps", "256", "--seed", "-1"], "--seed must be between 0 and 2**32 - 1"),
    (["--timesteps", "256", "--set", "foo=1"], "PPO has no hyperparameters ['foo']"),
    (["--timesteps", "256", "--set", "learning_rate=lin_abc"], "hyperparameter learning_rate: 'lin_abc' is not"),
])
def test_train_rejects_bad_option_values_before_writing(tmp_path, capsys, args, message):
    run = tmp_path / "r"
    assert main(["train", "--out", str(run), "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (run / "config.yaml").exists()


def test_train_rejects_invalid_spec_yaml_and_broken_run_config_in_one_line(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: [x\n  bad: : :\n")
    assert main(["train", "--agent", str(spec), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"agent spec {spec} is not valid YAML (line 2" in err and len(err.strip().splitlines()) == 1
    for name, text, message in [("yaml", "game: [\n", "is not valid YAML"), ("keys", "game: breakout\n", "lacks seed")]:
        run = tmp_path / name
        run.mkdir()
        (run / "config.yaml").write_text(text)
        assert main(["train", "--resume", "--out", str(run)]) == 2
        err = capsys.readouterr().err
        assert f"run config {run / 'config.yaml'}" in err and message in err
        assert len(err.strip().splitlines()) == 1


def test_evaluate_rejects_missing_model_folder_and_bad_counts(trained_run, tmp_path, capsys):
    run, _ = trained_run
    # a missing zip is named as missing, not as a model without a run config.yaml
    assert main(["evaluate", "--model", str(tmp_path / "nope.zip"), "--episodes", "1"]) == 2
    assert f"model file {tmp_path / 'nope.zip'} does not exist" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(run), "--episodes", "1"]) == 2
    assert f"did you mean {run / 'model.zip'}?" in capsys.readouterr().err
    for args, message in [(["--episodes", "0"], "--episodes must be an integer >= 1, got 0"),  # was a segfault
                          (["--episodes", "-2"], "--episodes must be"),
                          (["--episodes", "1", "--n-envs", "0"], "--n-envs must be an integer >= 1, got 0"),
                          (["--episodes", "1", "--max-frames", "-1"], "--max-frames must be")]:
        assert main(["evaluate", "--model", str(run / "model.zip"), *args]) == 2
        assert message in capsys.readouterr().err


def test_output_piped_into_a_closed_reader_is_not_a_traceback(monkeypatch, capsys):
    class ClosedPipe:  # what `rl-saliency games | head -1` gives once head has exited
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["games"]) == 0


def test_a2c_spec_trains_through_the_cli(tmp_path):
    run = tmp_path / "a2c"
    assert main(["train", "--agent", "a2c", "--game", "breakout", "--timesteps", "64", "--n-envs", "2",
                 "--set", "n_steps=8", "--no-progress", "--device", "cpu", "--out", str(run)]) == 0
    model = load_model(run / "model.zip")
    assert type(model).__name__ == "A2C" and model.num_timesteps == 64
