"""Errors shown to users as one clear line (the CLI prints them without a traceback).

A leaf: every module may import it, it imports nothing of the package (tests/test_imports.py checks).
"""

from __future__ import annotations

import errno
import os


class UnknownGameError(ValueError):
    """A game name that is not in the registry."""


class ModelLoadError(RuntimeError):
    """A model zip that cannot be used: corrupt, missing classes, or not fitting the game."""


class OutputLockedError(RuntimeError):
    """Another running process writes the same output folder (or file); the message names it."""


class SpecError(ValueError):
    """An agent spec that is missing or malformed."""


class DataError(ValueError):
    """Input data (an Atari-HEAD trial, a frame, a file) that is missing or corrupt; names the file."""


class OptionError(ValueError):
    """An option or argument with a bad value (a count that must be positive, an unknown saliency method or
    target, a method that cannot explain the model); the message names the option."""


class ClusterError(RuntimeError):
    """A Ray cluster that cannot be reached (wrong address, token authentication, version mismatch)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is (a checkpoint saved, temporary files removed); the CLI exits with 143."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    UnknownGameError, ModelLoadError, SpecError, DataError, OptionError, FileNotFoundError, FileExistsError,
    ClusterError, OutputLockedError)

# errors of the disk or the folder, not of the program: one line naming the path, the cause and what to do
_STORAGE_ERRNOS: dict[int, str] = {
    errno.ENOSPC: "free some space or write to another --out",
    errno.EDQUOT: "free some space or write to another --out",
    errno.EROFS: "write to another --out",
    errno.EACCES: "check its permissions or use another path",
    errno.EPERM: "check its permissions or use another path",
}


def storage_error_message(err: BaseException) -> str | None:
    """One line for a full disk, a read-only folder or a permission error anywhere in ``err``'s chain (a library
    may wrap the OSError), naming the path and the cause; None for any other error."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _STORAGE_ERRNOS:
            verb = "cannot write" if current.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) else "cannot access"
            where = f" {current.filename}" if current.filename else ""
            cause = current.strerror or os.strerror(current.errno)
            return f"{verb}{where}: {cause} ({_STORAGE_ERRNOS[current.errno]})"
        current = current.__cause__ or current.__context__
    return None


def check_count(value: object, option: str, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int >= ``minimum`` (and <= ``maximum`` when given); anything else (0, negative, NaN, 2.5,
    text, 1e30) is an OptionError naming ``option``."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not number.is_integer() or number < minimum:
        raise OptionError(f"{option} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and number > maximum:
        raise OptionError(f"{option} must be at most {maximum:,}, got {value!r}")
    return int(number)
