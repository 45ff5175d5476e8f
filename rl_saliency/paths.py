"""Where the project's declarative files live: agent specs and the zoo, the game registry, the Atari-HEAD excerpt.

In the repository they are the top-level folders ``agents/``, ``envs/`` and ``data/``; an installed wheel carries
them as the package data ``rl_saliency._agents``, ``rl_saliency._envs`` and ``rl_saliency._data``
(pyproject.toml maps the folders to those names; an editable install maps them back to the folders).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_ROOT.parent


def _data_dir(package: str, folder: str) -> Path:
    """The folder of package data ``package``, else (a source checkout run without installing) ``folder`` of
    the source tree."""
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else PROJECT_ROOT / folder


AGENTS_DIR = _data_dir("rl_saliency._agents", "agents")
ENVS_DIR = _data_dir("rl_saliency._envs", "envs")
DATA_DIR = _data_dir("rl_saliency._data", "data")
