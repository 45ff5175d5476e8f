"""Game registry: friendly names, ALE ids and Atari-HEAD names, read from ``envs/games.yaml``."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache

import yaml

from rl_saliency.errors import UnknownGameError
from rl_saliency.paths import ENVS_DIR

REGISTRY_FILE = ENVS_DIR / "games.yaml"




@dataclass(frozen=True)
class Game:
    name: str  # friendly name, e.g. "ms_pacman"
    ale_rom: str  # ROM id for ale_py.vector_env.AtariVectorEnv
    gym_id: str  # gymnasium id without frame skip or sticky actions, e.g. "MsPacmanNoFrameskip-v4"
    atari_head: str | None  # folder name in the Atari-HEAD dataset, if it has the game


@lru_cache(maxsize=1)
def _load() -> tuple[dict[str, Game], dict[str, str]]:
    if not REGISTRY_FILE.exists():
        raise FileNotFoundError(f"game registry {REGISTRY_FILE} not found "
                                f"(is rl-saliency installed from its repository?)")
    raw = yaml.safe_load(REGISTRY_FILE.read_text())
    games = {
        name: Game(name=name, ale_rom=entry["ale_rom"], gym_id=entry["gym_id"], atari_head=entry.get("atari_head"))
        for name, entry in raw["games"].items()
    }
    return games, dict(raw.get("aliases") or {})


def all_games() -> list[Game]:
    return list(_load()[0].values())


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def resolve_game(name: str) -> Game:
    """Find a game by friendly name (``breakout``), gymnasium id (``BreakoutNoFrameskip-v4``,
    ``ALE/Breakout-v5``), ROM id or Atari-HEAD name. Unknown names raise with close matches."""
    games, aliases = _load()
    key = _normalise(name)
    if key in games:
        return games[key]
    if key in aliases:
        return games[aliases[key]]
    by_id = {g.gym_id.lower(): g for g in games.values()}
    if key.replace("_", "-") in by_id or name.lower() in by_id:
        return by_id.get(name.lower()) or by_id[key.replace("_", "-")]
    # ALE/Breakout-v5 or Breakout-v4 style ids
    stem = name.split("/")[-1].split("-")[0].replace("NoFrameskip", "")
    camel_to_snake = "".join("_" + c.lower() if c.isupper() else c for c in stem).lstrip("_")
    for candidate in (camel_to_snake, stem.lower()):
        if candidate in games:
            return games[candidate]
        if candidate in aliases:
            return games[aliases[candidate]]
    close = difflib.get_close_matches(key, list(games) + list(aliases), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownGameError(f"unknown game {name!r}.{hint} Known games are listed in {REGISTRY_FILE}.")


def game_from_atari_head(name: str) -> Game:
    """The registry game for an Atari-HEAD folder name (e.g. ``ms_pacman``)."""
    for game in all_games():
        if game.atari_head == _normalise(name):
            return game
    raise UnknownGameError(f"{name!r} is not an Atari-HEAD game in {REGISTRY_FILE}")
