"""Errors shown to users as one clear line (the CLI prints them without a traceback)."""

from __future__ import annotations

from rl_saliency.envs.registry import UnknownGameError
from rl_saliency.models import ModelLoadError


class SpecError(ValueError):
    """An agent spec that is missing or malformed."""


class DataError(ValueError):
    """Input data (an Atari-HEAD trial, a frame, a file) that is missing or corrupt; names the file."""


class ClusterError(RuntimeError):
    """A Ray cluster that cannot be reached (wrong address, token authentication, version mismatch)."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    UnknownGameError, ModelLoadError, SpecError, DataError, FileNotFoundError, FileExistsError, ClusterError)
