"""``rl-saliency report``: the page for real command outputs, checked in headless Chromium (every image loads, no
script error), its sections, sweeps, and the one-line error for a folder with nothing it knows."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rl_saliency.cli import main
from rl_saliency.render import plots
from rl_saliency.render.report import build_report

N_FRAMES = 44
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def open_in_chromium(page: Path, tmp_path: Path) -> tuple[dict[str, str], str]:
    """Load ``page`` in headless Chromium; return the attributes the page's script set on <html> and stderr."""
    binary = chromium()
    if binary is None:
        pytest.skip("chromium not found (Debian: apt-get install chromium)")
    result = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}",
                             "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom",
                             page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    tag = re.search(r"<html[^>]*>", result.stdout)
    assert tag, result.stdout[:500]
    return dict(re.findall(r'([\w-]+)="([^"]*)"', tag.group(0))), result.stderr


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder as the commands leave it: config.yaml and metrics.csv of a (short) training, model.zip (an
    untrained Sparse FLS PPO on Ms. Pac-Man), gaze-eval and sanity outputs made by the commands, an evaluation, a
    trust folder, a video and a GIF."""
    from stable_baselines3 import PPO

    from rl_saliency.agents import SparseFLS
    from rl_saliency.agents.spec import load_spec
    from rl_saliency.envs import make_atari_vec_env
    from rl_saliency.render.video import VideoSink

    tmp = tmp_path_factory.mktemp("report")
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(Path(__file__).resolve().parents[1] / "gaze"))
    from gaze_synthetic import write_trial

    mp.undo()
    data = tmp / "atari_head"
    write_trial(data / "ms_pacman", N_FRAMES, name="100_XX_1234_Jan-01-00-00-00")
    run = tmp / "fls_sparse_ms_pacman_s0"
    run.mkdir()
    venv = make_atari_vec_env("ms_pacman", n_envs=1, backend="sb3")
    PPO("CnnPolicy", venv, n_steps=8, batch_size=8, device="cpu",
        policy_kwargs={"features_extractor_class": SparseFLS, "net_arch": []}).save(run / "model.zip")
    venv.close()
    spec = load_spec("fls_sparse")
    (run / "config.yaml").write_text(yaml.safe_dump({
        "game": "ms_pacman", "gym_id": "MsPacmanNoFrameskip-v4", "seed": 0, "timesteps": 2048, "n_envs": 8,
        "backend": "sb3", "device": "cpu", "checkpoint_freq": 1024, "algo": "ppo", "spec_path": spec.path,
        "spec": spec.to_dict()}))
    pd.DataFrame({"time/total_timesteps": [1024, 2048], "rollout/ep_rew_mean": [110.0, 170.0],
                  "time/iterations": [1, 2]}).to_csv(run / "metrics.csv", index=False)
    assert main(["gaze-eval", "--model", str(run / "model.zip"), "--method", "attention", "gradient",
                 "--atari-head", str(data), "--out", str(run / "gaze")]) == 0
    observations = np.random.default_rng(0).integers(0, 255, size=(2, 4, 84, 84), dtype=np.uint8)
    np.save(tmp / "obs.npy", observations)
    assert main(["sanity", "--model", str(run / "model.zip"), "--methods", "gradient", "--observations",
                 str(tmp / "obs.npy"), "--out", str(run / "sanity")]) == 0
    (run / "eval").mkdir()
    pd.DataFrame({"env": [0, 1, 0], "score": [210.0, 450.0, 380.0], "length": [900, 1500, 1200]}).to_csv(
        run / "eval" / "episodes.csv", index=False)
    (run / "eval" / "evaluation.json").write_text(json.dumps({
        "game": "ms_pacman", "episodes": 3, "deterministic": False, "model": str(run / "model.zip"),
        "score_mean": 346.7, "score_std": 99.1, "score_min": 210.0, "score_max": 450.0, "length_mean": 1200.0,
        "length_std": 245.0, "length_min": 900.0, "length_max": 1500.0}))
    trust = run / "trust"
    trust.mkdir()
    pd.DataFrame({"agent": ["fls"], "game": ["ms_pacman"], "method": ["gradient"], "deletion_auc": [0.3]}).to_csv(
        trust / "trust.csv", index=False)
    (trust / "trust.md").write_text("**fls** on ms_pacman, 4 observations\n\n| method | deletion AUC ↓ |\n"
                                    "|---|---:|\n| gradient | 0.300 |\n\nDeletion: the chosen action's probability.\n")
    plots.score_histogram([1, 2, 3], trust / "curves.png", "ms_pacman", "fls")
    sink = VideoSink(run / "attention.mp4", fps=10, gif=True, gif_width=80)
    for k in range(6):
        sink.write(np.full((64, 96, 3), 40 * k, np.uint8))
    sink.close()
    return run


@pytest.fixture(scope="module")
def page(run_folder):
    return build_report(run_folder)


def test_report_loads_in_headless_chromium_with_every_image(page, tmp_path):
    attributes, stderr = open_in_chromium(page, tmp_path)
    images, ok = int(attributes["data-images"]), int(attributes["data-images-ok"])
    # learning curve, score histogram, 2 gaze charts, 2 example strips, sanity plot, trust curves, the GIF
    assert images >= 9 and ok == images
    assert "data-errors" not in attributes and "Uncaught" not in stderr


def test_the_browser_check_catches_a_broken_image(page, tmp_path):
    """The same check fails a page with an image that does not decode (so the test above could fail)."""
    broken = tmp_path / "broken.html"
    text = page.read_text().replace("<main>", '<main><img src="missing.png" alt="gone">'
                                    '<img src="data:image/png;base64,AAAA" alt="garbage">', 1)
    broken.write_text(text.replace("</main>", "<script>undefinedFunction();</script></main>", 1))
    attributes, _ = open_in_chromium(broken, tmp_path)
    assert int(attributes["data-images"]) - int(attributes["data-images-ok"]) == 2
    assert "undefinedFunction" in attributes.get("data-errors", "")


def test_report_sections_say_what_was_run(page, run_folder):
    text = page.read_text()
    for title in ("Training run: fls_sparse on ms_pacman", "Scores: fls_sparse_ms_pacman_s0 on ms_pacman",
                  "Saliency vs human gaze: fls_sparse_ms_pacman_s0 on ms_pacman", "Sanity checks", "Trust: fls",
                  "Videos"):
        assert title in text, title
    assert "rl-saliency train --agent" in text and "--timesteps 2048" in text and "2,048 agent steps" in text
    assert "rl-saliency gaze-eval --model" in text and "--method attention gradient" in text
    assert text.count('<tr class="baseline">') == 3 and "centre_bias (baseline)" in text
    assert "Example frames" in text and "attention: trial 100_XX_1234_Jan-01-00-00-00" in text
    assert '<video controls muted preload="metadata" src="attention.mp4">' in text
    # self-contained: no stylesheet or script from elsewhere, every image embedded (or a file beside the page)
    assert "http://" not in text and "https://" not in text
    for src in re.findall(r'<img src="([^"]+)"', text):
        assert src.startswith("data:image/") or (page.parent / src).is_file()
    assert not (run_folder / "gaze" / "plots").joinpath("report.html").exists()


def test_report_of_a_gaze_folder_alone_and_out_elsewhere(run_folder, tmp_path):
    out = tmp_path / "pages" / "gaze.html"
    assert main(["report", str(run_folder / "gaze"), "--out", str(out), "--examples", "0"]) == 0
    text = out.read_text()
    assert "Saliency vs human gaze" in text and "Training run" not in text and "Example frames" not in text
    assert "mean ± std over observations (one trial per game)" in text


def test_report_of_a_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "tasks" / "breakout-nature-s0").mkdir(parents=True)
    (sweep / "tasks" / "breakout-nature-s0" / "result.json").write_text("{}")
    (sweep / "grid.yaml").write_text(yaml.safe_dump({"name": "tiny", "source": "docs/grids/tiny.yaml",
                                                     "games": ["breakout"], "agents": ["nature", "fls_sparse"],
                                                     "seeds": [0]}))
    (sweep / "table.md").write_text("## score\n\n| game | nature | fls_sparse |\n|---|---|---|\n"
                                    "| breakout | 1.5 ± 0.5 (n=1) | - |\n")
    plots.score_histogram([1.5], sweep / "score.png", "breakout", "nature")
    page = build_report(sweep)
    text = page.read_text()
    assert "Sweep: tiny" in text and "1 of 2" in text and "<td>1.5 ± 0.5 (n=1)</td>" in text
    assert "rl-saliency sweep --grid docs/grids/tiny.yaml" in text and text.count("<img ") == 1


def test_report_on_a_folder_with_nothing_it_knows(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing to report in" in err
    for looked_for in ("config.yaml", "evaluation.json", "run.json + per_game.csv", "sanity.csv", "trust.csv",
                       "grid.yaml", "*.mp4"):
        assert looked_for in err
    assert not (tmp_path / "report.html").exists()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
