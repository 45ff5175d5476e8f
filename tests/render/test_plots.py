"""The figures: intervals with known answers, titles that name game and agent, baselines marked, and each command
writing its PNGs (evaluate's histogram, gaze-eval's charts)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rl_saliency.cli import main
from rl_saliency.render import plots

N_FRAMES = 44  # synthetic trial: observations at frames 14..44


@pytest.fixture
def write_trial(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "gaze"))
    from gaze_synthetic import write_trial

    return write_trial


@pytest.fixture
def figure_texts(monkeypatch):
    """Every saved figure's suptitle, axes titles, axis labels and tick labels, by file name."""
    texts: dict[str, list[str]] = {}
    original = plots._save

    def record(fig, path):
        found = [fig._suptitle.get_text()] if fig._suptitle is not None else []
        for ax in fig.axes:
            found += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
            found += [t.get_text() for t in ax.get_xticklabels()]
            legend = ax.get_legend()
            found += [t.get_text() for t in legend.get_texts()] if legend else []
        texts[Path(path).name] = found
        return original(fig, path)

    monkeypatch.setattr(plots, "_save", record)
    return texts


def _png_size(path: Path) -> tuple[int, int]:
    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a readable PNG"
    return image.shape[1], image.shape[0]


def test_t_interval_matches_scipy():
    values = [0.2, 0.5, 0.9, 1.4, 0.1]
    mean, low, high = plots.t_interval(values)
    expected = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values))
    assert (low, high) == pytest.approx(expected)
    assert math.isnan(plots.t_interval([3.0])[1]) and plots.t_interval([3.0])[0] == 3.0


def test_block_interval_is_over_block_means():
    rng = np.random.default_rng(0)
    values = rng.normal(size=230)
    values[7] = np.nan  # dropped, not counted as a value
    mean, low, high, blocks = plots.block_interval(values, block=50)
    kept = values[np.isfinite(values)]
    means = kept[:200].reshape(4, 50).mean(axis=1)
    _, b_low, b_high = plots.t_interval(means)
    assert blocks == 4 and mean == pytest.approx(kept.mean())
    assert high - low == pytest.approx(b_high - b_low)
    # few values: the blocks shrink so that there are at least two
    assert plots.block_size(30, 50) == 15 and plots.block_interval(values[:30], 50)[3] == 2


def test_correlated_observations_get_a_wider_interval_than_iid_ones():
    """Slowly varying values (neighbours alike): blocks see the real spread, a naive per-observation CI would not."""
    x = np.repeat(np.random.default_rng(1).normal(size=20), 50)  # 1000 values, 20 independent levels
    _, low, high, _ = plots.block_interval(x, 50)
    naive = 2 * 1.96 * x.std() / math.sqrt(len(x))
    assert high - low > 3 * naive


def test_methods_first_then_baselines_in_fixed_order():
    assert plots._method_order(["uniform", "gradient", "centre_bias", "attention", "gradient", "intensity"]) == [
        "gradient", "attention", "centre_bias", "uniform", "intensity"]


def test_smooth_is_a_centred_mean_that_skips_nans():
    y = np.array([0.0, 3.0, np.nan, 3.0, 6.0])
    assert plots.smooth(y, 3).tolist() == pytest.approx([1.5, 1.5, 3.0, 4.5, 4.5])


def test_score_histogram_names_game_and_agent(tmp_path, figure_texts):
    path = plots.score_histogram([10, 20, 20, 35], tmp_path / "scores.png", "breakout", "fls_sparse_breakout_s0")
    width, height = _png_size(path)
    assert width > 400 and height > 250
    texts = " | ".join(figure_texts["scores.png"])
    assert "fls_sparse_breakout_s0 on breakout" in texts and "4 whole games" in texts
    assert "whole-game score" in texts and "games" in texts and "mean 21.2" in texts


def _per_observation(trials: int = 1, n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for t in range(trials):
        for method, level in (("attention", 1.0), ("centre_bias", 0.5), ("uniform", 0.0)):
            values = level + rng.normal(scale=0.3, size=n) if method != "uniform" else np.zeros(n)
            rows.append(pd.DataFrame({"game": "ms_pacman", "trial": f"trial{t}", "method": method,
                                      "frame_index": np.arange(14, 14 + n), "nss": values,
                                      "auc_judd": 0.5 + values / 10, "kl_div": 3 - values}))
    return pd.concat(rows, ignore_index=True)


def test_metric_intervals_over_observations_for_one_trial():
    table, what = plots.metric_intervals(_per_observation(), None, ["nss"], block=20)
    row = table[table["method"] == "attention"].iloc[0]
    assert row["n"] == 6 and row["low"] < row["mean"] < row["high"]
    assert "blocks of 20 consecutive observations" in what and "trial0" in what
    uniform = table[table["method"] == "uniform"].iloc[0]
    assert uniform["mean"] == 0 and uniform["low"] == uniform["high"] == 0


def test_metric_intervals_over_trials_when_several():
    per_trial = pd.DataFrame({"trial": ["a", "b", "c", "a", "b", "c"], "method": ["attention"] * 3 + ["uniform"] * 3,
                              "nss_mean": [0.8, 1.0, 1.3, 0.0, 0.0, 0.0]})
    table, what = plots.metric_intervals(_per_observation(trials=3), per_trial, ["nss"])
    row = table[table["method"] == "attention"].iloc[0]
    assert (row["mean"], row["low"], row["high"]) == pytest.approx(plots.t_interval([0.8, 1.0, 1.3]))
    assert row["n"] == 3 and "over 3 trials" in what


def test_gaze_bars_mark_baselines_and_name_game_agent_protocol(tmp_path, figure_texts):
    plots.gaze_metric_bars(_per_observation(), tmp_path / "bars.png", "ms_pacman", "fls_run", protocol="default")
    texts = " | ".join(figure_texts["bars.png"])
    assert "fls_run on ms_pacman" in texts and "protocol default" in texts
    assert "centre_bias (baseline)" in texts and "uniform (baseline)" in texts and "attention" in texts
    assert "NSS (higher is better)" in texts and "KL divergence (lower is better)" in texts
    assert "95 % CI" in texts and "grey hatched: baselines" in texts
    width, height = _png_size(tmp_path / "bars.png")
    assert width > 600 and height > 300


def test_nss_over_trial_one_panel_per_trial_up_to_the_cap(tmp_path, figure_texts):
    plots.nss_over_trial(_per_observation(trials=3), tmp_path / "nss.png", "ms_pacman", "fls_run", max_trials=2)
    texts = " | ".join(figure_texts["nss.png"])
    assert "first 2 of 3 trials" in texts and "trial trial0" in texts and "trial trial2" not in texts
    assert "centre_bias (baseline): mean" in texts and "attention: mean" in texts and "NSS" in texts


def test_evaluate_writes_the_score_histogram(tmp_path):
    from stable_baselines3 import PPO

    from rl_saliency.envs import make_atari_vec_env

    venv = make_atari_vec_env("pong", n_envs=1, backend="sb3")
    PPO("CnnPolicy", venv, n_steps=8, batch_size=8, device="cpu").save(tmp_path / "pong.zip")
    venv.close()
    out = tmp_path / "eval"
    code = main(["evaluate", "--model", str(tmp_path / "pong.zip"), "--game", "pong", "--episodes", "2",
                 "--n-envs", "2", "--max-frames", "400", "--out", str(out)])
    assert code == 0
    assert _png_size(out / "scores.png")[0] > 400
    assert json.loads((out / "evaluation.json").read_text())["episodes"] == 2


def test_gaze_eval_writes_its_charts(tmp_path, write_trial, figure_texts):
    root = tmp_path / "atari_head"
    write_trial(root / "ms_pacman", N_FRAMES, name="100_XX_1234_Jan-01-00-00-00")
    out = tmp_path / "gaze"
    assert main(["gaze-eval", "--model", "none", "--atari-head", str(root), "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["metrics_ms_pacman.png", "nss_ms_pacman.png"]
    for name in ("metrics_ms_pacman.png", "nss_ms_pacman.png"):
        assert _png_size(out / "plots" / name)[0] > 600
    assert "baselines only on ms_pacman" in figure_texts["metrics_ms_pacman.png"][0]
