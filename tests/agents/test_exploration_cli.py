"""A short Atari run with the novelty explorer through the CLI, interrupted and resumed with its ensemble."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from rl_saliency import train as train_module
from rl_saliency.agents.exploration import NoveltyCallback
from rl_saliency.cli import main


@pytest.mark.slow
def test_explorer_cli_run_checkpoints_and_resumes_the_ensemble(tmp_path, monkeypatch):
    run = tmp_path / "explorer"
    original_save = train_module.CheckpointAndProgress.save
    saves = {"n": 0}

    def save_then_interrupt(self):
        path = original_save(self)
        saves["n"] += 1
        if saves["n"] == 1:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(train_module.CheckpointAndProgress, "save", save_then_interrupt)
    assert main(["train", "--agent", "agents/ppo_explorer.yaml", "--game", "breakout", "--timesteps", "128",
                 "--checkpoint-freq", "64", "--n-envs", "2", "--set", "n_steps=32", "--set", "batch_size=32",
                 "--set", "n_epochs=1", "--no-progress", "--device", "cpu", "--out", str(run)]) == 130
    state = run / "checkpoints" / "ckpt_64_steps.NoveltyCallback.pt"
    assert state.exists()
    saved = torch.load(state, weights_only=False)

    loaded = {}
    original_load = NoveltyCallback.load_state

    def spy_load(self, path):
        loaded["path"] = path
        original_load(self, path)
        loaded["state"] = self.explorer.state_dict()

    monkeypatch.setattr(NoveltyCallback, "load_state", spy_load)
    assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0
    assert loaded["path"].name == state.name
    # the resumed run started from the saved ensemble, not a fresh one
    first_key = next(k for k in saved["ensemble"] if torch.is_tensor(saved["ensemble"][k]))
    assert torch.equal(loaded["state"]["ensemble"][first_key], saved["ensemble"][first_key])
    assert (run / "model.zip").exists()
    assert (run / "checkpoints" / "ckpt_128_steps.NoveltyCallback.pt").exists()
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["time/total_timesteps"].iloc[-1] == 128
    assert metrics["explorer/intrinsic_mean"].notna().any()

    # the trained run gives a loaded policy its explorer back, so the novelty method works from every command
    from rl_saliency.runs import explorer_state, open_agent

    assert explorer_state(run / "model.zip") == run / "checkpoints" / "ckpt_128_steps.NoveltyCallback.pt"
    agent = open_agent(run / "model.zip", device="cpu")
    final = torch.load(explorer_state(run / "model.zip"), weights_only=False)
    key = next(k for k in final["ensemble"] if torch.is_tensor(final["ensemble"][k]))
    assert torch.equal(agent.policy.explorer.state_dict()["ensemble"][key], final["ensemble"][key])
    assert main(["sanity", "--model", str(run / "model.zip"), "--methods", "novelty", "--n-obs", "2",
                 "--out", str(tmp_path / "sanity"), "--no-progress", "--device", "cpu"]) == 0
    assert main(["render", "--model", str(run / "model.zip"), "--method", "novelty", "--steps", "4",
                 "--out", str(tmp_path / "novelty.mp4"), "--no-progress", "--device", "cpu"]) == 0
    assert (tmp_path / "novelty.mp4").stat().st_size > 0
