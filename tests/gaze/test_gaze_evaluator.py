"""gaze-eval end to end on synthetic trials: tables, the saliency contract, game checks, resume, damage."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from gaze_synthetic import SUBJECT, write_trial

from rl_saliency.cli import main
from rl_saliency.errors import DataError, ModelLoadError
from rl_saliency.gaze import evaluator as E
from rl_saliency.gaze.metrics import METRICS
from rl_saliency.saliency import register

N = 44  # frames per synthetic trial: observations at 14..44


@pytest.fixture(scope="module")
def model_zip(tmp_path_factory):
    """An untrained PPO with a Sparse FLS extractor on Ms. Pac-Man, in a run folder whose config names the game."""
    from stable_baselines3 import PPO

    from rl_saliency.agents import SparseFLS
    from rl_saliency.envs import make_atari_vec_env

    run = tmp_path_factory.mktemp("run")
    venv = make_atari_vec_env("ms_pacman", n_envs=1, backend="sb3")
    model = PPO("CnnPolicy", venv, n_steps=8, batch_size=8, device="cpu",
                policy_kwargs={"features_extractor_class": SparseFLS})
    model.save(run / "model.zip")
    venv.close()
    (run / "config.yaml").write_text(yaml.safe_dump({"game": "ms_pacman"}))
    return run / "model.zip"


@pytest.fixture(scope="module")
def breakout_zip(tmp_path_factory):
    """A plain CnnPolicy PPO on Breakout (4 actions) with no run folder."""
    from stable_baselines3 import PPO

    from rl_saliency.envs import make_atari_vec_env

    folder = tmp_path_factory.mktemp("breakout")
    venv = make_atari_vec_env("breakout", n_envs=1, backend="sb3")
    PPO("CnnPolicy", venv, n_steps=8, batch_size=8, device="cpu").save(folder / "model.zip")
    venv.close()
    return folder / "model.zip"


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "atari_head"
    write_trial(root / "ms_pacman", N, name="100_XX_1234_Jan-01-00-00-00")
    write_trial(root / "ms_pacman" / "highscore", N, name="101_XX_1234_Jan-02-00-00-00",
                members=[k for k in range(1, N + 1) if k != 30], rows={40: f"{SUBJECT}_40,0,1,2"})
    write_trial(root / "breakout", N, name="102_XX_1234_Jan-03-00-00-00")
    return root


calls: list[int] = []


class Recorder:
    """A method on the contract that records batch sizes and returns the newest frame + 1."""

    name = "test_recorder"

    def attribute(self, policy, observations, **_):
        assert policy is not None and observations.shape[1:] == (4, 84, 84)
        calls.append(len(observations))
        return observations[:, -1].astype(np.float32) + 1.0


def test_baselines_only_tables_and_damage_reports(dataset, tmp_path):
    out = tmp_path / "out"
    result = E.gaze_eval(None, dataset, out, methods=["uniform"], games=["ms_pacman"], progress=False,
                         keep_observations=True)
    obs = result["per_observation"]
    assert set(obs["method"]) == {"centre_bias", "uniform", "intensity"}
    assert set(obs["trial"]) == {"100_XX_1234_Jan-01-00-00-00", "101_XX_1234_Jan-02-00-00-00"}
    first = obs[(obs["trial"] == "100_XX_1234_Jan-01-00-00-00") & (obs["method"] == "uniform")]
    assert first["frame_index"].tolist() == list(range(14, N + 1))
    assert (first["nss"] == 0).all() and (first["auc_judd"] == 0.5).all() and (first["cc"] == 0).all()
    # damaged trial: frame 30 missing from the tar, row 40 corrupt: only the observations covering them go
    damaged = obs[(obs["trial"] == "101_XX_1234_Jan-02-00-00-00") & (obs["method"] == "uniform")]
    covers = {i for i in range(14, N + 1) if {30, 40} & {i - k for k in (0, 1, 4, 5, 8, 9, 12, 13)}}
    assert damaged["frame_index"].tolist() == sorted(set(range(14, N + 1)) - covers)
    summary = json.loads((out / "trials" / "ms_pacman" / "101_XX_1234_Jan-02-00-00-00.json").read_text())
    assert summary["observations_skipped"]["frames_missing_from_txt"] > 0
    assert summary["observations_skipped"]["frames_missing_from_tar"] > 0
    assert any("line 41" in s for s in summary["issues"]) and any("missing from the tar: 30" in s
                                                                  for s in summary["issues"])
    per_trial, per_game = pd.read_csv(out / "per_trial.csv"), pd.read_csv(out / "per_game.csv")
    assert len(per_trial) == 6 and len(per_game) == 3
    row = per_trial[(per_trial["trial"] == "100_XX_1234_Jan-01-00-00-00") & (per_trial["method"] == "intensity")]
    assert row["nss_mean"].item() == pytest.approx(
        obs[(obs["trial"] == "100_XX_1234_Jan-01-00-00-00") & (obs["method"] == "intensity")]["nss"].mean())
    game_row = per_game[per_game["method"] == "intensity"]
    assert game_row["nss_mean"].item() == pytest.approx(
        per_trial[per_trial["method"] == "intensity"]["nss_mean"].mean())
    assert all(f"{m}_mean" in per_game and f"{m}_std" in per_game for m in METRICS)
    # the gaze follows a bright block moving all over the frame: intensity must beat the centre bias
    means = per_game.set_index("method")["nss_mean"]
    assert means["intensity"] > means["centre_bias"] + 0.3 and means["intensity"] > 0.5


@pytest.fixture()
def recorder():
    """Registered for one test only, so that tests iterating over all methods never meet it."""
    from rl_saliency.saliency import base

    register("test_recorder")(Recorder)
    calls.clear()
    yield
    base._REGISTRY.pop("test_recorder", None)


def test_model_methods_use_the_contract_in_batches(dataset, tmp_path, model_zip, recorder):
    result = E.gaze_eval(model_zip, dataset / "ms_pacman", tmp_path / "out", methods=["attention", "test_recorder"],
                         trials=["100"], batch_size=8, progress=False, keep_observations=True)
    obs = result["per_observation"]
    assert set(obs["method"]) == {"attention", "test_recorder", "centre_bias", "uniform", "intensity"}
    assert calls[1:] == [8, 8, 8, 7]  # calls[0] is the up-front check; 31 observations in batches of 8
    # newest frame + 1 and the intensity baseline order pixels identically: same rank metrics
    rec, inten = (obs[obs["method"] == m].reset_index(drop=True) for m in ("test_recorder", "intensity"))
    np.testing.assert_allclose(rec["auc_judd"], inten["auc_judd"])
    att = obs[obs["method"] == "attention"]
    assert len(att) == 31 and att[list(METRICS)].notna().all().all()


def test_game_checks(dataset, tmp_path, model_zip, breakout_zip):
    with pytest.raises(ModelLoadError, match=r"plays ms_pacman but .*102_XX_1234_Jan-03-00-00-00 \(breakout\)"):
        E.gaze_eval(model_zip, dataset, tmp_path / "a", methods=["attention"], progress=False)
    with pytest.raises(ModelLoadError, match="trained on ms_pacman .* --game is breakout"):
        E.gaze_eval(model_zip, dataset, tmp_path / "b", game="breakout", progress=False)
    with pytest.raises(ModelLoadError, match="pass --game"):
        E.gaze_eval(breakout_zip, dataset, tmp_path / "c", methods=["gradient"], progress=False)
    with pytest.raises(ModelLoadError, match="action space"):
        E.gaze_eval(breakout_zip, dataset, tmp_path / "d", methods=["gradient"], game="ms_pacman", progress=False)
    with pytest.raises(ModelLoadError, match="needs a model"):
        E.gaze_eval(None, dataset, tmp_path / "e", methods=["attention"], progress=False)


def test_cli_resumes_finished_trials_and_refuses_other_configs(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["gaze-eval", "--model", "none", "--method", "intensity", "--atari-head", str(dataset), "--games",
            "ms_pacman", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "intensity" in printed and "centre_bias" in printed and "nss" in printed
    finished = out / "trials" / "ms_pacman" / "100_XX_1234_Jan-01-00-00-00.parquet"
    stamp = finished.stat().st_mtime_ns
    (out / "trials" / "ms_pacman" / "101_XX_1234_Jan-02-00-00-00.json").unlink()  # as if interrupted there
    before = pd.read_csv(out / "per_trial.csv")
    assert main(args) == 0
    assert finished.stat().st_mtime_ns == stamp  # not recomputed
    pd.testing.assert_frame_equal(pd.read_csv(out / "per_trial.csv"), before)  # same seeds, same numbers
    assert main([*args[:-2], "--stride", "4", "--out", str(out)]) == 2  # another configuration: one-line error
    assert "another configuration (differs in stride)" in capsys.readouterr().err
    with pytest.raises(DataError, match="another configuration"):
        E.gaze_eval(None, dataset, out, methods=["uniform"], games=["ms_pacman"], progress=False)
    result = E.gaze_eval(None, dataset, out, methods=["intensity"], games=["ms_pacman"], progress=False)
    assert "per_observation" not in result  # the tables come from the trials' summaries
    pd.testing.assert_frame_equal(result["per_trial"], before, check_dtype=False)


def test_resolution_210_and_stride(dataset, tmp_path):
    result = E.gaze_eval(None, dataset, tmp_path / "out", methods=[], games=["breakout"], stride=4, resolution=210,
                         progress=False, keep_observations=True)
    obs = result["per_observation"]
    assert sorted(set(obs["frame_index"])) == list(range(14, N + 1, 4))
    assert (obs[obs["method"] == "uniform"]["auc_judd"] == 0.5).all()
    printed = E.format_table(result["per_game"], result["per_trial"]).splitlines()
    assert len(printed) == 2 + 3 + 1 and "over observations (one trial per game)" in printed[-1]
    assert "over trials" in E.format_table(result["per_game"])


def test_replay_pool_follows_the_training_backend(tmp_path):
    from rl_saliency.errors import SpecError

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"game": "ms_pacman", "backend": "ale"}))
    assert E.replay_pool(run / "model.zip") == "grey"
    assert E.replay_pool(run / "checkpoints" / "ckpt_1000.zip") == "grey"
    (run / "config.yaml").write_text(yaml.safe_dump({"game": "ms_pacman", "backend": "sb3"}))
    assert E.replay_pool(run / "model.zip") == "rgb"
    assert E.replay_pool(tmp_path / "plain.zip") == "rgb" and E.replay_pool(None) == "rgb"
    assert E.replay_pool(run / "model.zip", "grey") == "grey"
    with pytest.raises(SpecError, match="pool"):
        E.replay_pool(None, "max")


def test_cli_defaults_and_one_line_errors(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["gaze-eval", "--model", "none", "--atari-head", str(dataset / "breakout"), "--out", str(out)]) == 0
    assert set(pd.read_csv(out / "per_trial.csv")["method"]) == set(E.BASELINES)  # --model none: baselines only
    capsys.readouterr()
    assert main(["gaze-eval", "--model", "none", "--method", "nosuch", "--atari-head", str(dataset),
                 "--out", str(tmp_path / "x")]) == 2
    assert "unknown saliency method 'nosuch'" in capsys.readouterr().err
    assert main(["gaze-eval", "--model", "none", "--atari-head", str(tmp_path / "absent"), "--out", str(out)]) == 2
    assert "no Atari-HEAD trial at" in capsys.readouterr().err


def test_cli_names_unusable_trials_missing_models_and_bad_options(dataset, tmp_path, capsys):
    # a txt that is not a gaze file: the reason, not "frames without a gaze file" and "match games=None"
    trial = write_trial(tmp_path / "empty" / "breakout", n_frames=20)
    trial.with_name(trial.name + ".txt").write_text("")
    assert main(["gaze-eval", "--model", "none", "--atari-head", str(tmp_path / "empty"), "--out",
                 str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err
    assert f"{trial}.txt: not an Atari-HEAD gaze file" in err and "frames without a gaze file" not in err
    assert "no usable Atari-HEAD trial under" in err and "match games=None" not in err
    # a missing model zip is named as missing, not as a model without a run config.yaml
    assert main(["gaze-eval", "--model", str(tmp_path / "nope.zip"), "--atari-head", str(dataset), "--out",
                 str(tmp_path / "o2")]) == 2
    assert f"model file {tmp_path / 'nope.zip'} does not exist" in capsys.readouterr().err
    assert main(["gaze-eval", "--model", "none", "--atari-head", str(dataset), "--batch-size", "0", "--out",
                 str(tmp_path / "o3")]) == 2
    assert "got --batch-size 0" in capsys.readouterr().err
