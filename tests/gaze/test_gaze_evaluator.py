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
    assert (first["nss"] == 0).all() and (first["auc_borji"] == 0.5).all() and (first["cc"] == 0).all()
    assert first["auc_judd"].between(0.5, 0.6, inclusive="neither").all()  # its chance level, 0.5 + 1/(2(Nfix+1))
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
    assert "another configuration (differs in protocol stride)" in capsys.readouterr().err
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
    assert (obs[obs["method"] == "uniform"]["shuffled_auc"] == 0.5).all()
    printed = E.format_table(result["per_game"], result["per_trial"]).splitlines()
    assert printed[0].startswith("protocol default+resolution=210+stride=4: 210x160")
    assert len(printed) == 1 + 2 + 3 + 1 and "over observations (one trial per game)" in printed[-1]
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
    assert "--batch-size must be an integer >= 1, got 0" in capsys.readouterr().err  # the one count check


def test_paper_protocol_preset_and_its_record_everywhere(dataset, tmp_path, capsys):
    """--protocol paper: 210x160, an observation every 4 raw frames at the decision points from the trial's
    first frame (1-based 1 + 4k), the protocol named in run.json, every trial json, every table and printout."""
    out = tmp_path / "paper"
    assert main(["gaze-eval", "--model", "none", "--atari-head", str(dataset / "breakout"), "--protocol", "paper",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "protocol paper: 210x160 (maps resized bilinearly), stride 4 from the trial's first frame" in printed
    run = json.loads((out / "run.json").read_text())
    assert run["protocol"]["resolution"] == 210 and run["protocol"]["stride"] == 4 and run["protocol_label"] == "paper"
    summary = json.loads((out / "trials" / "breakout" / "102_XX_1234_Jan-03-00-00-00.json").read_text())
    assert summary["protocol"] == run["protocol"] and summary["fingerprint"]["protocol"] == run["protocol"]
    for table in ("per_trial.csv", "per_game.csv"):
        assert set(pd.read_csv(out / table)["protocol"]) == {"paper"}
    obs = pd.read_parquet(out / "trials" / "breakout" / "102_XX_1234_Jan-03-00-00-00.parquet")
    assert sorted(set(obs["frame_index"])) == [17, 21, 25, 29, 33, 37, 41] and set(obs["protocol"]) == {"paper"}
    # counts at frame pixels: the 8 covered frames' 6 on-screen samples each (the synthetic gaze is on screen)
    assert (obs["n_fixations"] == 48).all()
    # an explicit --stride changes the label: no table claims the preset it did not follow
    result = E.gaze_eval(None, dataset / "breakout", tmp_path / "p1", methods=[], protocol="paper", stride=1,
                         progress=False)
    assert set(result["per_game"]["protocol"]) == {"paper+stride=1"}
    assert E.format_table(result["per_game"]).startswith("protocol paper+stride=1: 210x160")


POWER = {"value": 1.0}


class Powered:
    """A method on the contract with an option that lives on the instance (part of the fingerprint)."""

    name = "test_powered"

    def __init__(self):
        self.power = POWER["value"]

    def attribute(self, policy, observations, **_):
        return (observations[:, -1].astype(np.float32) + 1.0) ** self.power


@pytest.fixture()
def powered():
    from rl_saliency.saliency import base

    register("test_powered")(Powered)
    POWER["value"] = 1.0
    yield
    base._REGISTRY.pop("test_powered", None)


def _other_model(path, seed):
    """A second untrained Sparse FLS Ms. Pac-Man PPO (other weights), saved at ``path``."""
    from stable_baselines3 import PPO

    from rl_saliency.agents import SparseFLS
    from rl_saliency.envs import make_atari_vec_env

    venv = make_atari_vec_env("ms_pacman", n_envs=1, backend="sb3")
    PPO("CnnPolicy", venv, n_steps=8, batch_size=8, device="cpu", seed=seed,
        policy_kwargs={"features_extractor_class": SparseFLS}).save(path)
    venv.close()


def _said(capsys) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_resume_keys_on_content_model_methods_version(dataset, tmp_path, model_zip, powered, monkeypatch, capsys):
    """Issue 14 item 2: the same --out, the same options, but another model file at the same path, another
    method option or another package version: the trial is recomputed (was: the old numbers, without a word)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(model_zip.parent, run)
    model, out = run / "model.zip", tmp_path / "out"
    kwargs = {"methods": ["attention", "test_powered"], "trials": ["100"], "stride": 3, "progress": False}
    first = E.gaze_eval(model, dataset / "ms_pacman", out, **kwargs)["per_trial"].set_index("method")
    parquet = out / "trials" / "ms_pacman" / "100_XX_1234_Jan-01-00-00-00.parquet"
    stamp = parquet.stat().st_mtime_ns
    E.gaze_eval(model, dataset / "ms_pacman", out, **kwargs)
    assert parquet.stat().st_mtime_ns == stamp  # nothing changed: reused
    _other_model(tmp_path / "other.zip", seed=3)
    shutil.copy(tmp_path / "other.zip", model)  # same path, other weights
    swapped = E.gaze_eval(model, dataset / "ms_pacman", out, **kwargs)["per_trial"].set_index("method")
    assert "recomputing trial 100_XX_1234_Jan-01-00-00-00: model changed" in _said(capsys)
    fresh = E.gaze_eval(model, dataset / "ms_pacman", tmp_path / "fresh", **kwargs)["per_trial"].set_index("method")
    assert swapped.loc["attention", "nss_mean"] == pytest.approx(fresh.loc["attention", "nss_mean"], abs=1e-12)
    assert swapped.loc["attention", "nss_mean"] != pytest.approx(first.loc["attention", "nss_mean"], abs=1e-6)
    POWER["value"] = 3.0  # another option of a method: its maps change
    powered3 = E.gaze_eval(model, dataset / "ms_pacman", out, **kwargs)["per_trial"].set_index("method")
    assert "methods changed" in _said(capsys)
    assert powered3.loc["test_powered", "nss_mean"] != pytest.approx(swapped.loc["test_powered", "nss_mean"])
    monkeypatch.setattr(E, "__version__", "999.0")
    E.gaze_eval(model, dataset / "ms_pacman", out, **kwargs)
    assert "version changed" in _said(capsys)


def test_repaired_tar_is_recomputed_and_an_empty_trial_is_never_finished(tmp_path, capsys):
    """A truncated tar scored, then repaired: the rerun scores every observation (was: the truncated count). A
    trial without one usable frame is not finished and never leaves a 0-byte table."""
    root = tmp_path / "atari_head"
    write_trial(root / "breakout", N, name="102_XX_1234_Jan-03-00-00-00", members=list(range(1, 30)))
    out = tmp_path / "out"
    assert main(["gaze-eval", "--model", "none", "--atari-head", str(root), "--out", str(out)]) == 0
    assert pd.read_csv(out / "per_trial.csv")["observations"].max() == 16  # observations 14..29
    write_trial(root / "breakout", N, name="102_XX_1234_Jan-03-00-00-00")  # repaired
    capsys.readouterr()
    assert main(["gaze-eval", "--model", "none", "--atari-head", str(root), "--out", str(out)]) == 0
    assert "files changed" in _said(capsys)
    assert (pd.read_csv(out / "per_trial.csv")["observations"] == N - 13).all()

    empty = tmp_path / "empty"
    write_trial(empty / "breakout", N, name="103_XX_1234_Jan-04-00-00-00", members=[])  # a tar without frames
    assert main(["gaze-eval", "--model", "none", "--atari-head", str(empty), "--out", str(tmp_path / "e")]) == 2
    err = _said(capsys)
    assert "no usable observation in any trial (103_XX_1234_Jan-04-00-00-00: 31 planned" in err
    assert not (tmp_path / "e" / "per_trial.csv").exists() and not (tmp_path / "e" / "per_game.csv").exists()
    summary = json.loads((tmp_path / "e" / "trials" / "breakout" / "103_XX_1234_Jan-04-00-00-00.json").read_text())
    assert summary["finished"] is False
    # beside a usable trial: the tables hold the usable one; the empty one is tried again on the next run
    write_trial(empty / "breakout", N, name="104_XX_1234_Jan-05-00-00-00")
    assert main(["gaze-eval", "--model", "none", "--atari-head", str(empty), "--out", str(tmp_path / "e")]) == 0
    per_trial = pd.read_csv(tmp_path / "e" / "per_trial.csv")
    assert set(per_trial["trial"]) == {"104_XX_1234_Jan-05-00-00-00"}
    assert len(pd.read_csv(tmp_path / "e" / "per_game.csv")) == 3
    assert "103_XX_1234_Jan-04-00-00-00: no usable observation" in _said(capsys)
    main(["gaze-eval", "--model", "none", "--atari-head", str(empty), "--out", str(tmp_path / "e")])
    assert "recomputing trial 103_XX_1234_Jan-04-00-00-00: it had no usable observation" in _said(capsys)


def test_counts_name_only_observations_each_metric_was_defined_for(tmp_path, capsys):
    """Issue 14 item 8: frames whose gaze is all off-screen leave the metrics undefined there; per_trial counts,
    per metric, the observations it was defined for, and says how many were not and why."""
    root = tmp_path / "atari_head"
    offscreen = {k: f"{SUBJECT}_{k},0,0,50,0,3,-5.00,250.00,170.00,-3.00" for k in range(1, 26)}
    write_trial(root / "breakout", N, name="102_XX_1234_Jan-03-00-00-00", rows=offscreen)
    out = tmp_path / "out"
    assert main(["gaze-eval", "--model", "none", "--atari-head", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    per_trial = pd.read_csv(out / "per_trial.csv").set_index("method")
    undefined = 25 - 13  # observations 14..25 cover off-screen gaze only
    row = per_trial.loc["intensity"]
    assert row["observations"] == N - 13 and row["nss_n"] == N - 13 - undefined
    assert row["auc_judd_n"] == row["kl_div_n"] == N - 13 - undefined
    assert f"nss {undefined} (gaze off-screen {undefined})" in row["undefined"]
    assert f"undefined: breakout 102_XX_1234_Jan-03-00-00-00 intensity: nss {undefined}" in printed
    summary = json.loads((out / "trials" / "breakout" / "102_XX_1234_Jan-03-00-00-00.json").read_text())
    assert summary["undefined"]["intensity"]["cc"] == {"gaze off-screen": undefined}
    per_game = pd.read_csv(out / "per_game.csv").set_index("method")
    assert per_game.loc["intensity", "nss_n"] == N - 13 - undefined
    # the reference's KL skip, kept as a measuring option: its frames are named as such
    from dataclasses import replace

    from rl_saliency.gaze.protocol import DEFAULT

    quirk = replace(DEFAULT, kl_skip_zero_near_gaze=True)
    result = E.gaze_eval(None, root, tmp_path / "q", methods=[], protocol=quirk, progress=False)
    cb = result["per_trial"].set_index("method")
    assert "map ~0 near gaze" not in cb.loc["centre_bias", "undefined"]  # a Gaussian is > 0 everywhere
    assert "map ~0 near gaze" in cb.loc["intensity", "undefined"]  # black pixels near the gaze
    assert cb.loc["intensity", "kl_div_n"] < cb.loc["intensity", "nss_n"] == N - 13 - undefined
