"""``rl-saliency trust``: one table per agent, resumable, with one-line errors for bad input."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from saliency_helpers import FakeAtari
from stable_baselines3 import PPO

from rl_saliency.cli import main
from rl_saliency.trust import agent_label, markdown_table

FAST = ["--perturbation-stride", "20", "--steps", "5", "--randomisation-obs", "2", "--no-progress"]


@pytest.fixture(scope="module")
def model_and_obs(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("trust")
    model = folder / "tiny.zip"
    PPO("CnnPolicy", FakeAtari(), n_steps=8, batch_size=8, device="cpu", seed=0).save(model)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 40, size=(4, 4, 84, 84), dtype=np.uint8)
    obs[:, :, 30:40, 20:60] = 220
    np.save(folder / "obs.npy", obs)
    return model, folder / "obs.npy"


def run(model: Path, obs: Path, out: Path, *extra: str) -> int:
    return main(["trust", "--model", str(model), "--game", "breakout", "--observations", str(obs), "--n-obs", "3",
                 "--out", str(out), *FAST, *extra])


def test_table_curves_and_files(model_and_obs, tmp_path, capsys):
    model, obs = model_and_obs
    assert run(model, obs, tmp_path, "--methods", "gradient", "perturbation", "sarfa") == 0
    table = pd.read_csv(tmp_path / "trust.csv")
    assert list(table["method"]) == ["gradient", "perturbation", "sarfa"]
    for column in ("deletion_auc", "deletion_auc_random", "insertion_auc", "insertion_auc_random"):
        assert table[column].between(0, 1).all()
    assert table["deletion_auc_random"].nunique() == 1  # one random baseline per agent
    assert table["randomisation_top"].between(-1, 1).all() and table["robustness"].between(-1, 1).all()
    assert (table["maps_per_s"] > 0).all() and table["gaze_nss"].isna().all()
    assert (table["n_obs"] == 3).all() and (table["agent"] == "tiny").all()
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    markdown = (tmp_path / "trust.md").read_text()
    assert "| sarfa |" in markdown and "deletion AUC" in markdown
    assert "| perturbation |" in capsys.readouterr().out
    record = json.loads((tmp_path / "methods" / "perturbation.json").read_text())
    assert set(record["parts"]) == {"speed", "faithfulness", "robustness", "randomisation"}
    assert len(record["parts"]["faithfulness"]["deletion_curve"]) == 6


def test_rerun_skips_finished_parts_and_adds_new_methods(model_and_obs, tmp_path):
    model, obs = model_and_obs
    assert run(model, obs, tmp_path, "--methods", "gradient") == 0
    finished = tmp_path / "methods" / "gradient.json"
    record = json.loads(finished.read_text())
    done = {part: record["parts"][part]["seconds"] for part in ("speed", "faithfulness", "randomisation")}
    del record["parts"]["robustness"]  # as if interrupted during that part
    finished.write_text(json.dumps(record))
    assert run(model, obs, tmp_path, "--methods", "gradient", "gradcam") == 0
    resumed = json.loads(finished.read_text())["parts"]
    assert "robustness" in resumed
    assert {part: resumed[part]["seconds"] for part in done} == done  # finished parts were not recomputed
    assert list(pd.read_csv(tmp_path / "trust.csv")["method"]) == ["gradient", "gradcam"]


def test_other_settings_are_refused_unless_overwrite(model_and_obs, tmp_path, capsys):
    model, obs = model_and_obs
    assert run(model, obs, tmp_path, "--methods", "gradient") == 0
    capsys.readouterr()
    assert run(model, obs, tmp_path, "--methods", "gradient", "--fill", "mean") == 2
    assert "other settings (fill)" in capsys.readouterr().err
    assert run(model, obs, tmp_path, "--methods", "gradient", "--fill", "mean", "--overwrite") == 0
    assert json.loads((tmp_path / "trust.json").read_text())["fill"] == "mean"


@pytest.mark.parametrize("args, message", [
    (["--methods", "gradient", "nonsense"], "unknown saliency method 'nonsense'"),
    (["--steps", "1"], "--steps must be an integer >= 2"),
    (["--steps", "9000"], "--steps must be at most 7056"),
    (["--max-fraction", "0"], "--max-fraction must be a fraction in (0, 1]"),
    (["--max-fraction", "1.2"], "--max-fraction must be a fraction in (0, 1]"),
    (["--noise", "0.8"], "--noise must be a fraction in (0, 0.5]"),
    (["--n-obs", "0"], "--n-obs must be an integer >= 1"),
    (["--perturbation-stride", "0"], "stride must be an integer >= 1"),
    (["--methods", "attention"], "cannot explain"),
])
def test_bad_input_is_one_line(model_and_obs, tmp_path, capsys, args, message):
    model, obs = model_and_obs
    assert run(model, obs, tmp_path / "out", *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rl-saliency trust: error:") and message in err and "\n" not in err
    assert not (tmp_path / "out" / "trust.csv").exists()


def test_wrong_observation_shape_is_one_line(model_and_obs, tmp_path, capsys):
    model, _ = model_and_obs
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 84, 84, 4), np.uint8))
    assert run(model, bad, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert "expected (N, 4, 84, 84)" in err and "\n" not in err


def test_agent_labels_and_empty_table():
    assert agent_label("runs/fls_s0/model.zip") == "fls_s0"
    assert agent_label("runs/fls_s0/checkpoints/ckpt_50000_steps.zip") == "fls_s0_ckpt_50000_steps"
    assert agent_label("ppo-Breakout.zip") == "ppo-Breakout"
    assert markdown_table(pd.DataFrame()).startswith("(no methods)")


@pytest.fixture(scope="module")
def small_trial(tmp_path_factory, real_trial) -> Path:
    """The first 40 frames of the real Ms. Pac-Man trial, in the dataset's format, in a game folder."""
    folder = tmp_path_factory.mktemp("atari_head") / "ms_pacman"
    folder.mkdir()
    name = real_trial.name
    lines = real_trial.with_suffix(".txt").read_text().splitlines()[:41]
    (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")
    keep = {f"{row.split(',', 1)[0]}.png" for row in lines[1:]}
    with tarfile.open(real_trial.with_suffix(".tar.bz2"), "r|bz2") as src, \
            tarfile.open(folder / f"{name}.tar.bz2", "w:bz2") as dst:
        found = 0
        for member in src:
            if Path(member.name).name in keep:
                dst.addfile(member, io.BytesIO(src.extractfile(member).read()))
                found += 1
                if found == len(keep):
                    break
    return folder.parent


@pytest.mark.slow  # reads the real trial's 12 MB gaze txt and builds a Ms. Pac-Man env
def test_gaze_column_with_atari_head(small_trial, tmp_path):
    from rl_saliency.envs import make_atari_vec_env

    venv = make_atari_vec_env("ms_pacman", n_envs=1, backend="sb3")
    model = tmp_path / "pacman.zip"
    PPO("CnnPolicy", venv, n_steps=8, batch_size=8, device="cpu", seed=0).save(model)
    venv.close()
    obs = np.random.default_rng(0).integers(0, 255, size=(2, 4, 84, 84), dtype=np.uint8)
    np.save(tmp_path / "obs.npy", obs)
    assert main(["trust", "--model", str(model), "--game", "ms_pacman", "--observations", str(tmp_path / "obs.npy"),
                 "--methods", "gradient", "--atari-head", str(small_trial), "--gaze-max-frames", "40",
                 "--out", str(tmp_path / "out"), *FAST]) == 0
    table = pd.read_csv(tmp_path / "out" / "trust.csv")
    assert np.isfinite(table["gaze_nss"]).all() and np.isfinite(table["gaze_nss_centre_bias"]).all()
    assert "Centre-bias NSS" in (tmp_path / "out" / "trust.md").read_text()


def test_default_methods_add_attention_when_the_policy_has_it():
    from rl_saliency.agents import SparseFLS
    from rl_saliency.trust import DEFAULT_METHODS, default_methods

    plain = PPO("CnnPolicy", FakeAtari(), n_steps=8, device="cpu").policy
    fls = PPO("CnnPolicy", FakeAtari(), n_steps=8, device="cpu",
              policy_kwargs={"features_extractor_class": SparseFLS}).policy
    assert default_methods(plain) == list(DEFAULT_METHODS)
    assert default_methods(fls) == ["attention", *DEFAULT_METHODS]
