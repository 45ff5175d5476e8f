"""Errors shown to users as one clear line (the CLI prints them without a traceback)."""

from __future__ import annotations

from rl_saliency.envs.registry import UnknownGameError
from rl_saliency.models import ModelLoadError


class SpecError(ValueError):
    """An agent spec that is missing or malformed."""


class DataError(ValueError):
    """Input data (an Atari-HEAD trial, a frame, a file) that is missing or corrupt; names the file."""


class OptionError(ValueError):
    """An option or argument with a bad value (a count that must be positive, an unknown saliency method or
    target, a method that cannot explain the model); the message names the option."""


class ClusterError(RuntimeError):
    """A Ray cluster that cannot be reached (wrong address, token authentication, version mismatch)."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    UnknownGameError, ModelLoadError, SpecError, DataError, OptionError, FileNotFoundError, FileExistsError,
    ClusterError)


def check_count(value: object, option: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``; anything else (0, negative, NaN, 2.5, text) is an OptionError naming
    ``option``."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not number.is_integer() or number < minimum:
        raise OptionError(f"{option} must be an integer >= {minimum}, got {value!r}")
    return int(number)
