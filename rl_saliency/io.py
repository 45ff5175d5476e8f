"""Writing results safely: atomic file writes (a result is either fully written or not there, never half a
file) and the lock on an output folder (one writer at a time; a dead writer's lock and temporary files are
cleaned up by the next one)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shlex
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from rl_saliency.errors import OutputLockedError

_UMASK = os.umask(0)
os.umask(_UMASK)


def default_permissions(path: str | Path) -> None:
    """mkstemp makes files private (0600); give a result the usual umask-based mode."""
    os.chmod(path, 0o666 & ~_UMASK)


def named_os_error(err: OSError, path: str | Path) -> OSError:
    """``err`` naming ``path`` (the result being written) instead of a hidden temporary file or nothing."""
    if err.errno is None:
        return err
    return type(err)(err.errno, err.strerror or os.strerror(err.errno), str(path))


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only if the block succeeds. A full disk or a
    read-only folder is raised as an OSError naming ``path``, not the temporary file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise named_os_error(err, path) from err
    try:
        yield Path(tmp)
        default_permissions(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise named_os_error(err, path) from err
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_yaml(path: str | Path, data: Any) -> Path:
    return write_text(path, yaml.safe_dump(data, sort_keys=False))


def write_csv(path: str | Path, frame: pd.DataFrame, **kwargs: Any) -> Path:
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False, **kwargs))


def read_yaml(path: str | Path, what: str, error: type[Exception]) -> Any:
    """Parse a YAML file; a syntax error becomes one ``error`` naming ``what``, the file, line and column."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise error(f"{what} {path} is not valid YAML{where}: {getattr(err, 'problem', None) or err}") from err


# ------------------------------------------------------------------------------------------- output lock

LOCK_NAME = ".rl-saliency.lock"
# a temporary file of atomic_path or the video writer: .<target>.<8 random chars>.tmp<suffix>
TEMP_RE = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_held: dict[str, list[int]] = {}  # lock file -> [fd, depth]: a process may re-enter its own lock




def _holder_record() -> dict[str, Any]:
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else []
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": shlex.join(argv),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def _read_record(fd: int) -> dict[str, Any]:
    try:
        record = json.loads(os.pread(fd, 65536, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError, OverflowError):
        return isinstance(pid, int)  # PermissionError: it exists under another user
    return True


def _describe(record: dict[str, Any]) -> str:
    if not record.get("pid"):
        return "another process"
    host = f" on {record['host']}" if record.get("host") and record["host"] != socket.gethostname() else ""
    return f"pid {record['pid']}{host} ({record.get('command') or 'unknown command'}, since {record.get('started')})"


def _locked_by_live_process(fd: int) -> dict[str, Any] | None:
    """The holder's record if a live process holds the lock in ``fd``'s file, else None (we hold it now)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        record = _read_record(fd)
        if not record:  # the holder has just created the file: give it a moment to write its name
            time.sleep(0.1)
            record = _read_record(fd)
        return record
    except OSError as err:  # a file system without flock: fall back on the recorded pid (same host only)
        if err.errno not in _NO_FLOCK:
            raise
        record = _read_record(fd)
        same_host = record.get("host") in (None, socket.gethostname())
        mine = record.get("pid") == os.getpid()
        return record if record.get("pid") and not mine and (not same_host or _alive(record["pid"])) else None


def _acquire(lock: Path, what: str) -> tuple[int, dict[str, Any]]:
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            holder = _locked_by_live_process(fd)
            if holder is not None:
                raise OutputLockedError(f"{what} is in use by {_describe(holder)}; wait for it to finish or write "
                                        f"to another --out")
            try:  # a holder that was releasing may have removed the file we opened: lock the current one
                current = os.stat(lock).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                previous = _read_record(fd)
                data = json.dumps(_holder_record()).encode()
                os.ftruncate(fd, 0)
                os.pwrite(fd, data, 0)
                return fd, previous
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def remove_stale_temps(folder: Path, stem: str | None = None) -> tuple[int, int]:
    """Delete temporary files left by a writer that died (kill -9, power loss) under ``folder`` and return
    (count, bytes). Called with the folder's lock held, so no live writer owns them; sub-folders with a lock of
    their own and files with a lock of their own (another command's) are left to that owner. ``stem``: only the
    temporary files of the output file(s) with this stem, in ``folder`` itself."""
    count = size = 0
    for root, dirs, files in os.walk(folder):
        if stem is not None:
            dirs[:] = []
        elif Path(root) != folder and LOCK_NAME in files:
            dirs[:] = []
            continue
        locked = {name[1:-len(".lock")] for name in files if name.startswith(".") and name.endswith(".lock")}
        for name in files:
            match = TEMP_RE.match(name)
            if not match:
                continue
            target_stem = Path(match["target"]).stem
            if (stem is not None and target_stem != stem) or (stem is None and (
                    match["target"] in locked or any(Path(lk).stem == target_stem for lk in locked))):
                continue
            path = Path(root) / name
            try:
                size += path.stat().st_size
                path.unlink()
                count += 1
            except FileNotFoundError:
                pass
    return count, size


@contextmanager
def output_lock(folder: str | Path, name: str | None = None) -> Iterator[Path]:
    """Hold the lock of the output ``folder`` (or, with ``name``, of the one output file ``folder/name``) while
    the block writes there.

    A second writer gets an OutputLockedError naming the holder (pid, command, start). The lock is an flock on
    ``.rl-saliency.lock`` (``.<name>.lock``) holding the holder's pid, host and command: the kernel releases it
    when the holder dies, however it dies, so a killed run's lock is taken over (with a note) and its leftover
    temporary files removed. A process may re-enter a lock it holds.
    """
    folder = Path(folder)
    what = f"{folder / name}" if name else f"output folder {folder}"
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise named_os_error(err, folder) from err
    lock = folder / (f".{name}.lock" if name else LOCK_NAME)
    key = str(lock.resolve())
    if key in _held:
        _held[key][1] += 1
    else:
        try:
            fd, previous = _acquire(lock, what)
        except OSError as err:
            raise named_os_error(err, folder) from err
        _held[key] = [fd, 1]
        if previous.get("pid") and previous.get("pid") != os.getpid():
            print(f"note: {what} was held by {_describe(previous)}, which is no longer running; taking it over",
                  file=sys.stderr)
        count, size = remove_stale_temps(folder, Path(name).stem if name else None)
        if count:
            print(f"note: removed {count} temporary file(s) ({size / 1e6:.1f} MB) left in {folder} by an interrupted "
                  f"run", file=sys.stderr)
    try:
        yield lock
    finally:
        entry = _held[key]
        entry[1] -= 1
        if entry[1] == 0:
            del _held[key]
            try:
                os.unlink(lock)
            except FileNotFoundError:
                pass
            finally:
                os.close(entry[0])
            if created:  # a command that failed before writing anything leaves no empty folder behind
                with contextlib.suppress(OSError):
                    folder.rmdir()
