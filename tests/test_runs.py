"""The one resolver (rl_saliency/runs.py): zoo names, run folders and their config, the game rule, the training
backend and replay pooling, open_agent's env factory and method check."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from rl_saliency import runs
from rl_saliency.agents.zoo import ZOO_DIR
from rl_saliency.errors import ModelLoadError, OptionError, UnknownGameError
from rl_saliency.saliency import get_method


def _run_folder(tmp_path, config: dict | str | None, checkpoint: bool = False):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    if config is not None:
        (run / "config.yaml").write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return run / ("checkpoints/ckpt_128_steps.zip" if checkpoint else "model.zip")


def test_zoo_names_and_paths():
    assert runs.model_path("zoo:nature-breakout") == ZOO_DIR / "nature-breakout" / "model.zip"
    assert str(runs.model_path("some/where.zip")) == "some/where.zip"
    with pytest.raises(OptionError, match="nature-breakout"):  # an unknown name lists the known ones
        runs.model_path("zoo:nope")


@pytest.mark.parametrize("checkpoint", [False, True])
def test_run_config_next_to_the_model_or_above_its_checkpoint(tmp_path, checkpoint):
    model = _run_folder(tmp_path, {"game": "pong", "backend": "ale"}, checkpoint)
    assert runs.run_config(model) == {"game": "pong", "backend": "ale"}
    assert runs.training_backend(model) == "ale" and runs.replay_pool(model) == "grey"
    assert runs.replay_pool(model, "rgb") == "rgb"


def test_no_run_folder_means_sb3_and_rgb(tmp_path):
    model = _run_folder(tmp_path, None)
    assert runs.run_config(model) is None and runs.model_game(model) is None
    assert runs.training_backend(model) == "sb3" and runs.replay_pool(model) == "rgb"
    assert runs.training_backend(None) == "sb3"


def test_a_broken_run_config_names_itself_and_the_model(tmp_path):
    model = _run_folder(tmp_path, "game: [unclosed")
    with pytest.raises(ModelLoadError, match=r"config\.yaml.*model\.zip"):
        runs.run_config(model)
    model = _run_folder(tmp_path / "b", "- a list")
    with pytest.raises(ModelLoadError, match="not a mapping"):
        runs.run_config(model)


def test_the_game_rule(tmp_path):
    model = _run_folder(tmp_path, {"game": "ms_pacman"})
    assert runs.model_game(model) == "ms_pacman"
    assert runs.model_game(model, "MsPacman") == "ms_pacman"  # aliases resolve to one name
    with pytest.raises(ModelLoadError, match="trained on ms_pacman .* --game is breakout"):
        runs.model_game(model, "breakout")
    with pytest.raises(UnknownGameError):
        runs.model_game(model, "no_such_game")
    bare = _run_folder(tmp_path / "bare", None)
    assert runs.model_game(bare, "pong") == "pong"


def test_explorer_state_is_the_checkpoints_latest(tmp_path):
    model = _run_folder(tmp_path, {"game": "pong"})
    assert runs.explorer_state(model) is None
    for steps in (64, 128, 1024):
        (model.parent / "checkpoints" / f"ckpt_{steps}_steps.NoveltyCallback.pt").write_bytes(b"")
    assert runs.explorer_state(model).name == "ckpt_1024_steps.NoveltyCallback.pt"
    checkpoint = model.parent / "checkpoints" / "ckpt_64_steps.zip"
    assert runs.explorer_state(checkpoint).name == "ckpt_64_steps.NoveltyCallback.pt"


def test_open_agent_on_a_zoo_agent():
    agent = runs.open_agent("zoo:fls_sparse-breakout", device="cpu")
    assert agent.game == "breakout" and agent.backend == "ale" and agent.pool == "grey"
    assert not agent.policy.training and not hasattr(agent.policy, "explorer")
    venv = agent.make_env(n_envs=2, seed=0)
    try:
        obs = venv.reset()
        assert obs.shape == (2, 4, 84, 84)
    finally:
        venv.close()
    agent.check_method(get_method("attention"), "attention")
    with pytest.raises(ModelLoadError, match="--game is pong"):
        runs.open_agent("zoo:fls_sparse-breakout", "pong", device="cpu")


def test_check_method_is_one_option_error_naming_the_option():
    agent = runs.open_agent("zoo:nature-breakout", device="cpu")
    with pytest.raises(OptionError, match=r"^--methods attention cannot be used with this model: .*no"):
        agent.check_method(get_method("attention"), "attention", option="--methods")
    maps = get_method("gradient").attribute(agent.policy, np.zeros((1, 4, 84, 84), np.uint8))
    assert maps.shape == (1, 84, 84)
