"""Cascading randomisation sanity checks (Adebayo et al.): maps of model-dependent methods change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from saliency_helpers import FakeAtari, make_policy
from stable_baselines3 import PPO

from rl_saliency.cli import main
from rl_saliency.saliency import get_method
from rl_saliency.saliency.sanity import (
    METRICS,
    cascading_randomisation,
    collect_observations,
    layers_top_down,
    randomise,
    spearman,
    ssim,
)


def test_layers_run_from_the_heads_down_to_the_first_conv(observations):
    obs = torch.as_tensor(observations).float()
    groups = layers_top_down(make_policy("ppo"), obs)
    assert sorted(groups[0]) == ["action_net", "value_net"]
    assert groups[-1] == ["features_extractor.cnn.0"]
    assert [g[0] for g in groups[1:]] == ["features_extractor.linear.0", "features_extractor.cnn.4",
                                          "features_extractor.cnn.2", "features_extractor.cnn.0"]
    dqn_groups = [name for g in layers_top_down(make_policy("dqn"), obs) for name in g]
    assert dqn_groups[0] == "q_net.q_net.0" and not any("q_net_target" in n for n in dqn_groups)


def test_randomise_changes_only_the_named_layer():
    policy = make_policy("ppo")
    before = {k: v.detach().clone() for k, v in policy.named_parameters()}  # shared extractor counted once
    randomise(policy, ["features_extractor.cnn.4"], seed=0)
    after = dict(policy.named_parameters())
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"features_extractor.cnn.4.weight", "features_extractor.cnn.4.bias"}


def test_similarity_measures():
    rng = np.random.default_rng(0)
    a = rng.random((84, 84))
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, np.exp(3 * a)) == pytest.approx(1.0)  # rank-based: monotone transforms do not matter
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert np.isnan(spearman(a, np.zeros_like(a)))
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, 5 * a + 2) == pytest.approx(1.0)  # min-max normalised first
    assert abs(ssim(a, rng.random((84, 84)))) < 0.2


def test_gradient_maps_change_when_weights_are_randomised(observations):
    table = cascading_randomisation(make_policy("ppo"), observations, ["gradient", "intensity"], progress=False)
    grad = table[table.method == "gradient"].set_index("step")
    assert (grad.loc[0, list(METRICS)] == 1.0).all()
    for step in grad.index[1:]:
        # signed gradients of a randomised network are unrelated to the trained one's; structure is lost
        assert abs(grad.loc[step, "spearman_signed"]) < 0.3
        assert grad.loc[step, "ssim"] < 0.5
        assert grad.loc[step, "spearman_abs"] < 0.9
    # a model-independent map (the frame's own intensity) is untouched: the check tells them apart
    intensity = table[table.method == "intensity"]
    np.testing.assert_allclose(intensity[list(METRICS)].to_numpy(), 1.0)


def test_fls_policy_cascade(observations):
    table = cascading_randomisation(make_policy("fls"), observations[:2], ["gradcam"], progress=False)
    assert table["step"].max() == 7  # heads, linear, 2 attention convs, 3 trunk convs
    assert table.loc[table.step == 7, "ssim"].item() < 0.5


def test_sanity_cli_writes_table_and_plot_and_resumes(tmp_path, observations, capsys):
    model = tmp_path / "ppo.zip"
    PPO("CnnPolicy", FakeAtari(), n_steps=8, batch_size=8, device="cpu", seed=0).save(model)
    obs_file = tmp_path / "obs.npy"
    np.save(obs_file, observations)
    out = tmp_path / "sanity"
    args = ["sanity", "--model", str(model), "--game", "breakout", "--observations", str(obs_file),
            "--n-obs", "2", "--out", str(out), "--device", "cpu"]
    assert main([*args, "--methods", "gradient"]) == 0
    table = pd.read_csv(out / "sanity.csv")
    assert set(table.columns) >= {"method", "step", "layer", *METRICS}
    assert len(table) == 6 and (out / "sanity.png").stat().st_size > 10_000
    assert np.load(out / "observations.npy").shape == (2, 4, 84, 84)
    # resume: mark the finished method's rows, add a method; the marked rows survive (not recomputed)
    table.loc[table.method == "gradient", "ssim"] = 0.123
    table.to_csv(out / "sanity.csv", index=False)
    assert main([*args, "--methods", "gradient", "perturbation", "--perturbation-stride", "20"]) == 0
    resumed = pd.read_csv(out / "sanity.csv")
    assert (resumed.loc[resumed.method == "gradient", "ssim"] == 0.123).all()
    assert (resumed.method == "perturbation").sum() == 6
    assert "perturbation" in capsys.readouterr().out


def test_sanity_cli_rejects_unknown_method_and_bad_observations(tmp_path, capsys):
    assert main(["sanity", "--model", "m.zip", "--methods", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown saliency method 'nope'" in capsys.readouterr().err
    model = tmp_path / "ppo.zip"
    PPO("CnnPolicy", FakeAtari(), n_steps=8, batch_size=8, device="cpu").save(model)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 84, 84), dtype=np.uint8))
    code = main(["sanity", "--model", str(model), "--game", "breakout", "--observations", str(bad),
                 "--methods", "gradient", "--out", str(tmp_path / "o")])
    assert code == 2  # a DataError, printed as one line


def test_collect_observations_from_the_game():
    from rl_saliency.envs import make_atari_vec_env

    venv = make_atari_vec_env("breakout", n_envs=1)
    model = PPO("CnnPolicy", venv, n_steps=8, batch_size=8, device="cpu", seed=0)
    venv.close()
    obs = collect_observations(model, "breakout", n_obs=3, warmup=5, every=2)
    assert obs.shape == (3, 4, 84, 84) and obs.dtype == np.uint8
    assert len({o.tobytes() for o in obs}) == 3
    assert get_method("gradient").attribute(model.policy, obs).shape == (3, 84, 84)


def test_sanity_cli_bad_counts_files_and_methods_fail_in_one_line_before_writing(tmp_path, capsys):
    model = tmp_path / "ppo.zip"
    PPO("CnnPolicy", FakeAtari(), n_steps=8, batch_size=8, device="cpu").save(model)
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((2, 4, 84, 84), dtype=np.uint8))
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 4, 84, 84), dtype=np.uint8))
    text = tmp_path / "text.npy"
    text.write_text("junk\n")
    cases = [
        (["--observations", str(good), "--n-obs", "0"], "--n-obs must be an integer >= 1, got 0"),  # was a numpy error
        (["--observations", str(good), "--n-obs", "-1"], "--n-obs must be an integer >= 1, got -1"),  # was N-1 silently
        (["--observations", str(empty)], "holds no observations"),  # was a numpy traceback
        (["--observations", str(text)], f"{text} is not a NumPy .npy file"),  # was "pickled (object) data"
        (["--observations", str(tmp_path / "absent.npy")], "observations file"),
        (["--observations", str(good), "--methods", "attention"], "needs a policy with built-in attention"),
        (["--observations", str(good), "--methods", "smoothgrad", "--smoothgrad-samples", "0"], "n_samples >= 1"),
        (["--observations", str(good), "--methods", "perturbation", "--perturbation-stride", "0"], "stride must be"),
    ]
    for args, message in cases:
        out = tmp_path / "out"
        code = main(["sanity", "--model", str(model), "--game", "breakout", "--methods", "gradient", *args,
                     "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, (args, err)
        assert not out.exists(), args
    assert main(["sanity", "--model", str(tmp_path / "nope.zip"), "--methods", "gradient", "--out",
                 str(tmp_path / "o")]) == 2
    assert f"model file {tmp_path / 'nope.zip'} does not exist" in capsys.readouterr().err
