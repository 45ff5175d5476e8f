"""Shared fixtures. Tests run on 2 CPU cores: keep torch to one thread and budgets small."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ATARI_HEAD_DIR = PROJECT_ROOT.parent / "shared" / "atari_head"
REAL_TRIAL = ATARI_HEAD_DIR / "ms_pacman" / "593_RZ_5037271_Aug-05-15-35-12"


@pytest.fixture(scope="session")
def atari_head_dir() -> Path:
    if not (REAL_TRIAL.with_suffix(".txt")).exists():
        pytest.skip(f"real Atari-HEAD trial not found at {ATARI_HEAD_DIR}")
    return ATARI_HEAD_DIR


@pytest.fixture(scope="session")
def real_trial() -> Path:
    """Path stem of the real trial (add .txt / .tar.bz2)."""
    if not (REAL_TRIAL.with_suffix(".txt")).exists():
        pytest.skip(f"real Atari-HEAD trial not found at {ATARI_HEAD_DIR}")
    return REAL_TRIAL
