"""The one resolver under every command: a model (a zip, or ``zoo:<name>``) -> its run folder and config, the game
it plays, the env backend it was trained on (and so how a replay pools frames), the loaded model, an env factory
fitted to it, and the check that a saliency method can explain it.

Commands and library functions take what :func:`open_agent` returns (or the small functions below) and never
look for config.yaml themselves::

    agent = open_agent("zoo:fls_sparse-ms_pacman")
    agent.game, agent.backend, agent.pool            # 'ms_pacman', 'ale', 'grey'
    venv = agent.make_env(n_envs=4, seed=0)          # evaluation env, wrapped and checked for this model
    agent.check_method(get_method("attention"), "attention")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rl_saliency import io
from rl_saliency.errors import ModelLoadError, OptionError, SpecError

ZOO_PREFIX = "zoo:"
CONFIG_FILE = "config.yaml"
EXPLORER_SUFFIX = ".NoveltyCallback.pt"  # written by the training checkpoints (rl_saliency.train)


def model_path(model: str | Path) -> Path:
    """``zoo:<name>`` -> the zoo agent's zip (an unknown name lists the known ones); any other value as a path."""
    if isinstance(model, str) and model.startswith(ZOO_PREFIX):
        from rl_saliency.agents.zoo import resolve_model

        return Path(resolve_model(model))
    return Path(model)


def run_config(model: str | Path) -> dict[str, Any] | None:
    """The ``config.yaml`` of the run a model belongs to (``model.zip`` or ``checkpoints/ckpt_*.zip``), if any. One
    that is not valid YAML, or not a mapping, is a ModelLoadError naming it and the model."""
    path = model_path(model)
    for folder in (path.parent, path.parent.parent):
        config_path = folder / CONFIG_FILE
        if not config_path.is_file():
            continue
        try:
            config = io.read_yaml(config_path, "run config", ModelLoadError)
        except ModelLoadError as err:
            raise ModelLoadError(f"{err} (read for model {path}: fix or remove it)") from err
        if not isinstance(config, dict):
            raise ModelLoadError(f"run config {config_path} (read for model {path}) is not a mapping of settings; "
                                 f"fix or remove it")
        return config
    return None


def model_game(model: str | Path, game: str | None = None, config: dict[str, Any] | None = None) -> str | None:
    """The game the model was trained on (its run's config.yaml, or ``config`` when already read), else ``game``;
    when both are known they must agree (a model is never silently played on another game). None when neither
    tells."""
    from rl_saliency.envs.registry import resolve_game

    config = (config if config is not None else run_config(model)) or {}
    trained = resolve_game(config["game"]).name if config.get("game") else None
    given = resolve_game(game).name if game else None
    if trained and given and trained != given:
        raise ModelLoadError(f"model {model_path(model)} was trained on {trained} (its run's config.yaml) but "
                             f"--game is {given}")
    return trained or given


def game_for_model(model: str | Path, game: str | None = None, config: dict[str, Any] | None = None) -> str:
    """As :func:`model_game`, but the game must be known. A missing or unreadable model file is reported as such
    first (not as a missing config.yaml)."""
    from rl_saliency.models import read_model_data

    read_model_data(model_path(model))
    found = model_game(model, game, config)
    if found is None:
        raise ModelLoadError(f"cannot tell which game {model_path(model)} plays: no run config.yaml next to it; "
                             f"pass --game")
    return found


def training_backend(model: str | Path | None) -> str:
    """The env backend the model was trained on: its run's ``backend``; ``sb3`` (SB3's AtariWrapper, as rl-zoo
    trains) for a model without a run folder."""
    if model is None or str(model).lower() == "none":
        return "sb3"
    return str((run_config(model) or {}).get("backend", "sb3"))


def replay_pool(model: str | Path | None, pool: str = "auto") -> str:
    """How a replay pools each step's two raw frames: as the model's training backend did (``ale`` -> ``grey``,
    ``sb3`` -> ``rgb``), unless ``pool`` names one."""
    from rl_saliency.envs.replay import POOLS

    if pool != "auto":
        if pool not in POOLS:
            raise SpecError(f"pool must be auto or one of {', '.join(POOLS)}, got {pool!r}")
        return pool
    return "grey" if training_backend(model) == "ale" else "rgb"


def explorer_state(model: str | Path) -> Path | None:
    """The novelty explorer's state saved beside a model trained with one: ``ckpt_<n>_steps.NoveltyCallback.pt``
    next to a checkpoint, the last checkpoint's for a run's ``model.zip`` (the run ends with a checkpoint at the
    same step); None when there is none."""
    path = model_path(model)
    sibling = path.with_suffix(EXPLORER_SUFFIX)
    if sibling.is_file():
        return sibling
    found = []
    for state in (path.parent / "checkpoints").glob(f"ckpt_*_steps{EXPLORER_SUFFIX}"):
        steps = state.name[len("ckpt_"):-len(f"_steps{EXPLORER_SUFFIX}")]
        if steps.isdigit():
            found.append((int(steps), state))
    return max(found)[1] if found else None


def check_method(method: Any, name: str, policy: Any, option: str = "--method") -> None:
    """Run a saliency method once on a blank observation, so that one that cannot explain this policy (attention
    without built-in attention, an action target out of range, ``novelty`` without its explorer) fails now, as an
    OptionError with the reason, not after minutes of work."""
    try:
        method.attribute(policy, np.zeros((1, 4, 84, 84), np.uint8))
    except ValueError as err:  # OptionError included: the message gains the option and the method
        raise OptionError(f"{option} {name} cannot be used with this model: {err} (the method cannot explain "
                          f"this policy)") from err


@dataclass
class Agent:
    """A loaded model with everything a consumer needs about it (see :func:`open_agent`)."""

    path: Path
    model: Any  # stable_baselines3 BaseAlgorithm
    game: str
    config: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def policy(self) -> Any:
        return self.model.policy

    @property
    def backend(self) -> str:
        """The env backend it was trained on."""
        return str((self.config or {}).get("backend", "sb3"))

    @property
    def pool(self) -> str:
        """How a replay of human play pools frames for it (as its training backend did)."""
        return "grey" if self.backend == "ale" else "rgb"

    def make_env(self, n_envs: int = 1, seed: int = 0, backend: str | None = None, training: bool = False,
                 **kwargs: Any) -> Any:
        """An Atari VecEnv of its game (evaluation settings unless ``training``), wrapped as the model needs and
        checked to fit its spaces. ``backend``: default the training backend."""
        from rl_saliency.envs import make_atari_vec_env
        from rl_saliency.models import check_model_fits, wrap_env_for_model

        venv = make_atari_vec_env(self.game, n_envs, seed=seed, backend=backend or self.backend, training=training,
                                  **kwargs)
        venv = wrap_env_for_model(self.model, venv)
        try:
            check_model_fits(self.model, venv.observation_space, venv.action_space, what=f"game {self.game!r}")
        except BaseException:
            venv.close()
            raise
        return venv

    def check_method(self, method: Any, name: str, option: str = "--method") -> None:
        check_method(method, name, self.policy, option)


def open_agent(model: str | Path, game: str | None = None, device: str = "auto") -> Agent:
    """Open a model zip or zoo agent: the run config, the game (``game`` must agree with the run's), the loaded
    model in evaluation mode, checked to fit the game's observation and action spaces. A model trained with the
    novelty explorer gets it back as ``policy.explorer`` (so the ``novelty`` saliency method works on it)."""
    from rl_saliency.models import load_model

    path = model_path(model)
    config = run_config(path)  # read once for everything below
    found = game_for_model(path, game, config)
    agent = Agent(path=path, model=load_model(path, device=device), game=found, config=config)
    agent.policy.set_training_mode(False)
    state = explorer_state(path) if ((agent.config or {}).get("spec") or {}).get("explorer") else None
    if state is not None:
        from rl_saliency.agents.exploration import NoveltyExplorer

        agent.policy.explorer = NoveltyExplorer.load(state, agent.policy)
    agent.make_env(n_envs=1, backend="sb3").close()  # the spaces fit (one cheap env, closed again)
    return agent
