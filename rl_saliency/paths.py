"""Where the project's declarative files live (agent specs, game registry)."""

from __future__ import annotations

from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_ROOT.parent
AGENTS_DIR = PROJECT_ROOT / "agents"
ENVS_DIR = PROJECT_ROOT / "envs"
