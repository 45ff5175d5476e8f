"""Atari-HEAD reader: trial discovery, the gaze/action txt, and frames streamed from the tar.bz2.

Layout (Zhang et al., 2020; Zenodo record 3451402): ``<root>/<game>/<trial>.{txt,tar.bz2}`` and
``<root>/<game>/highscore/<trial>.{txt,tar.bz2}``, optionally ``meta_data.csv``. A trial's txt has the header
``frame_id,episode_id,score,duration(ms),unclipped_reward,action,gaze_positions`` and one row per emulator
frame; the gaze tail is a flat ``x0,y0,x1,y1,...`` list in 160x210 frame pixels; any missing field is ``null``.
The tar.bz2 holds ``<trial>/<frame_id>.png`` (RGB, 210x160).

Frames are streamed from the compressed tar in member order and handed out in frame-index order through a
reorder buffer of still-encoded PNG bytes (about 1.4 KB a frame), so a trial is never unpacked to disk nor
held decoded in memory. Problems that leave the rest of a trial usable (missing frames, extra frames, a
truncated tar, an undecodable PNG) are reported in ``issues``; a malformed txt row raises ``DataError`` with
the file and line, or, with ``strict=False``, is reported and dropped.
"""

from __future__ import annotations

import bz2
import heapq
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from rl_saliency.envs.frames import FRAME_SHAPE, on_frame
from rl_saliency.errors import DataError

HEADER = ("frame_id", "episode_id", "score", "duration(ms)", "unclipped_reward", "action", "gaze_positions")
FRAME_ID = re.compile(r"^(?P<prefix>[A-Za-z0-9]+_[A-Za-z0-9]+)_(?P<index>\d+)$")
MEMBER = re.compile(r"(?:^|/)(?P<frame_id>[^/]+_(?P<index>\d+))\.png$")
TXT_SUFFIX, TAR_SUFFIX = ".txt", ".tar.bz2"
DEFAULT_REORDER_BYTES = 256 * 2**20  # encoded PNG bytes held for out-of-order members (~180k frames)


# ------------------------------------------------------------------------------------------------ discovery

@dataclass(frozen=True)
class TrialFiles:
    """One trial: its txt and tar.bz2 (either may be missing), and the Atari-HEAD game it belongs to."""

    name: str  # e.g. "593_RZ_5037271_Aug-05-15-35-12"
    txt: Path | None
    tar: Path | None
    game: str | None  # Atari-HEAD game folder name, e.g. "ms_pacman"
    highscore: bool = False
    meta: dict | None = field(default=None, compare=False, hash=False)  # the trial's meta_data.csv row, if any

    @property
    def trial_number(self) -> int | None:
        head = self.name.split("_", 1)[0]
        return int(head) if head.isdigit() else None


def _trial_stem(path: Path) -> str | None:
    if path.name.endswith(TAR_SUFFIX):
        return path.name[: -len(TAR_SUFFIX)]
    if path.suffix == TXT_SUFFIX:
        return path.stem
    return None


def _is_trial_txt(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().startswith("frame_id")
    except OSError:
        return False


def _game_of_dir(directory: Path) -> str | None:
    """``<game>/`` or ``<game>/highscore/`` -> the Atari-HEAD game name, if the folder is one."""
    from rl_saliency.envs.registry import UnknownGameError, game_from_atari_head

    name = directory.parent.name if directory.name == "highscore" else directory.name
    try:
        return game_from_atari_head(name).atari_head
    except UnknownGameError:
        return None


def read_meta_data(root: Path) -> pd.DataFrame | None:
    """``meta_data.csv`` from ``root`` or its parents, if present and readable; never required."""
    root = Path(root)
    for directory in [root, *root.parents][:3]:
        path = directory / "meta_data.csv"
        if path.is_file():
            try:
                meta = pd.read_csv(path)
            except (OSError, ValueError, pd.errors.ParserError):
                return None
            return meta if {"GameName", "trial_id"} <= set(meta.columns) else None
    return None


def _meta_row(meta: pd.DataFrame | None, trial_number: int | None) -> dict | None:
    if meta is None or trial_number is None:
        return None
    rows = meta[pd.to_numeric(meta["trial_id"], errors="coerce") == trial_number]
    if rows.empty:
        return None
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in rows.iloc[0].items() if not pd.isna(v)}


def _meta_game(row: dict | None) -> str | None:
    from rl_saliency.envs.registry import UnknownGameError, resolve_game

    if not row or "GameName" not in row:
        return None
    try:
        return resolve_game(str(row["GameName"])).atari_head
    except UnknownGameError:
        return None


def find_trials(path: str | Path, games: Iterable[str] | None = None,
                trials: Iterable[str] | None = None) -> tuple[list[TrialFiles], list[str]]:
    """Trials under ``path``: a dataset root (``<game>/``, ``<game>/highscore/``), one game folder, or one
    trial (its txt, its tar.bz2 or their common stem). Returns the trials (sorted by game, name) and a list
    of problems found (unpaired files), which are not fatal. ``games`` and ``trials`` filter the result
    (game names as the registry knows them; trial names or trial numbers)."""
    path = Path(path)
    issues: list[str] = []
    candidates: list[Path]
    if path.is_dir():
        candidates = [p for pattern in ("*", "*/*", "*/highscore/*", "highscore/*") for p in path.glob(pattern)
                      if p.is_file()]
    else:
        stem_path = path.parent / (_trial_stem(path) or path.name)
        candidates = [p for p in (stem_path.with_name(stem_path.name + TXT_SUFFIX),
                                  stem_path.with_name(stem_path.name + TAR_SUFFIX)) if p.is_file()]
        if not candidates:
            raise FileNotFoundError(f"no Atari-HEAD trial at {path} (expected {stem_path.name}{TXT_SUFFIX} and "
                                    f"{stem_path.name}{TAR_SUFFIX}, or a directory of games)")
    pairs: dict[tuple[Path, str], dict[str, Path]] = {}
    not_gaze: dict[tuple[Path, str], Path] = {}  # txt files that are not gaze files (a README, an empty file)
    for p in candidates:
        stem = _trial_stem(p)
        if stem is None:
            continue
        if p.suffix == TXT_SUFFIX and not _is_trial_txt(p):
            not_gaze[(p.parent, stem)] = p
            continue
        pairs.setdefault((p.parent, stem), {})["txt" if p.suffix == TXT_SUFFIX else "tar"] = p
    meta = read_meta_data(path if path.is_dir() else path.parent)
    found = []
    for (directory, stem), files in pairs.items():
        txt, tar = files.get("txt"), files.get("tar")
        if txt is None and (directory, stem) in not_gaze:
            issues.append(f"{not_gaze[directory, stem]}: not an Atari-HEAD gaze file (empty, or its first line is "
                          f"not the header frame_id,episode_id,...); trial skipped")
            continue
        if txt is None:
            issues.append(f"{tar}: frames without a gaze file ({stem}{TXT_SUFFIX}); trial skipped")
            continue
        if tar is None:
            issues.append(f"{txt}: gaze file without frames ({stem}{TAR_SUFFIX}); trial skipped")
            continue
        trial = TrialFiles(name=stem, txt=txt, tar=tar, game=_game_of_dir(directory),
                           highscore=directory.name == "highscore")
        row = _meta_row(meta, trial.trial_number)
        found.append(TrialFiles(stem, txt, tar, trial.game or _meta_game(row), trial.highscore, row))
    if games:
        from rl_saliency.envs.registry import resolve_game

        wanted_games = {resolve_game(g).atari_head for g in games}
        found = [t for t in found if t.game in wanted_games]
    if trials:
        wanted = {str(t) for t in trials}
        found = [t for t in found if t.name in wanted or str(t.trial_number) in wanted]
    if path.is_dir() and not found and not issues:
        raise FileNotFoundError(f"no Atari-HEAD trials (<trial>.txt + <trial>.tar.bz2) under {path}"
                                + (" matching the filters" if games or trials else ""))
    return sorted(found, key=lambda t: (t.game or "", t.name)), issues


# ------------------------------------------------------------------------------------------------ the txt

@dataclass
class GazeTable:
    """A trial's txt, sorted by frame index. Gaze is stored flat: the samples of row ``k`` are
    ``xy[offsets[k]:offsets[k + 1]]`` (x = column, y = row, 160x210 frame pixels, off-screen ones included)."""

    path: Path
    frame_index: np.ndarray  # (K,) int64, ascending
    frame_id: list[str]
    episode_id: np.ndarray  # (K,) float64, NaN where null
    score: np.ndarray
    duration: np.ndarray
    unclipped_reward: np.ndarray
    action: np.ndarray  # (K,) int64, -1 where null
    offsets: np.ndarray  # (K + 1,) int64
    xy: np.ndarray  # (M, 2) float32
    null_gaze_frames: int = 0  # rows whose gaze is null (frames without gaze)
    null_samples: int = 0  # x,y pairs with a null coordinate, dropped
    issues: list[str] = field(default_factory=list)
    pixel_cache: dict = field(default_factory=dict, repr=False, compare=False)  # fixations: sample -> pixel

    def __post_init__(self) -> None:
        self._row = {int(i): k for k, i in enumerate(self.frame_index)}

    def __len__(self) -> int:
        return len(self.frame_index)

    def has(self, index: int) -> bool:
        return index in self._row

    def samples(self, index: int) -> np.ndarray:
        """All gaze samples of raw frame ``index`` ((m, 2) x, y; empty when none or the row is unknown)."""
        k = self._row.get(index)
        if k is None:
            return self.xy[:0]
        return self.xy[self.offsets[k]: self.offsets[k + 1]]

    @property
    def n_samples(self) -> int:
        return len(self.xy)

    @property
    def onscreen(self) -> np.ndarray:
        return on_frame(self.xy[:, 0], self.xy[:, 1])

    @property
    def n_offscreen(self) -> int:
        return int((~self.onscreen).sum())


def _number(token: str) -> float:
    return float("nan") if token == "null" else float(token)


def read_gaze_table(path: str | Path, strict: bool = True) -> GazeTable:
    """Parse a trial's txt. A malformed row raises ``DataError`` naming the file and line; with
    ``strict=False`` it is dropped and reported in ``issues`` instead (the rest of the trial is kept)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"gaze file {path} does not exist")
    issues: list[str] = []
    rows: list[tuple] = []
    gaze: list[np.ndarray] = []
    null_gaze = null_samples = 0
    seen: dict[int, int] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline().rstrip("\r\n").split(",")
        if tuple(header[: len(HEADER)]) != HEADER:
            raise DataError(f"{path}, line 1: not an Atari-HEAD gaze file; expected the header "
                            f"{','.join(HEADER)}, got {','.join(header)[:120]!r}")
        for line_no, line in enumerate(f, start=2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            try:
                parts = line.split(",")
                if len(parts) < 7:
                    raise ValueError(f"{len(parts)} fields, expected at least 7")
                match = FRAME_ID.match(parts[0])
                if match is None:
                    raise ValueError(f"frame_id {parts[0]!r} is not <subject>_<session>_<index>")
                index = int(match["index"])
                if index in seen:
                    raise ValueError(f"frame {parts[0]} already given on line {seen[index]}")
                numbers = [_number(t) for t in parts[1:6]]
                action = numbers[4]
                if not np.isnan(action) and (action != int(action) or not 0 <= action < 18):
                    raise ValueError(f"action {parts[5]!r} is not one of the 18 ALE actions")
                tail = parts[6:]
                if tail == ["null"]:
                    samples = np.empty((0, 2), np.float32)
                    null_gaze += 1
                else:
                    if len(tail) % 2:
                        raise ValueError(f"gaze tail has an odd number of values ({len(tail)}), not x,y pairs")
                    if "null" in tail:
                        values = np.array([_number(t) for t in tail], dtype=np.float64).reshape(-1, 2)
                        keep = ~np.isnan(values).any(axis=1)
                        null_samples += int((~keep).sum())
                        values = values[keep]
                    else:
                        values = np.array(tail, dtype=np.float64).reshape(-1, 2)
                    if not np.isfinite(values).all():
                        raise ValueError("gaze value is not a finite number")
                    samples = values.astype(np.float32)
            except ValueError as err:
                message = f"{path}, line {line_no}: corrupt row ({err})"
                if strict:
                    raise DataError(f"{message}; with strict=False (gaze-eval without --strict) such rows are "
                                    f"skipped") from None
                issues.append(message + "; row skipped")
                continue
            seen[index] = line_no
            rows.append((index, parts[0], *numbers))
            gaze.append(samples)
    if not rows:
        raise DataError(f"{path}: no frame rows after the header")
    order = np.argsort([r[0] for r in rows], kind="stable")
    rows = [rows[k] for k in order]
    gaze = [gaze[k] for k in order]
    columns = list(zip(*rows, strict=True))
    lengths = np.array([len(g) for g in gaze], dtype=np.int64)
    action = np.array(columns[6], dtype=np.float64)
    return GazeTable(
        path=path, frame_index=np.array(columns[0], dtype=np.int64), frame_id=list(columns[1]),
        episode_id=np.array(columns[2], dtype=np.float64), score=np.array(columns[3], dtype=np.float64),
        duration=np.array(columns[4], dtype=np.float64), unclipped_reward=np.array(columns[5], dtype=np.float64),
        action=np.where(np.isnan(action), -1, action).astype(np.int64),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        xy=np.concatenate(gaze) if gaze else np.empty((0, 2), np.float32),
        null_gaze_frames=null_gaze, null_samples=null_samples, issues=issues)


# ------------------------------------------------------------------------------------------------ frames

@dataclass
class FrameStreamReport:
    """What one pass over a trial's tar found, beside the frames it handed out."""

    path: Path
    members: int = 0  # frame members read completely
    emitted: int = 0
    extra: list[int] = field(default_factory=list)  # frames in the tar but not expected (not in the txt)
    missing: list[int] = field(default_factory=list)  # expected frames the tar did not give
    undecodable: list[int] = field(default_factory=list)
    late: list[int] = field(default_factory=list)  # arrived after later frames had been handed out; dropped
    duplicates: list[int] = field(default_factory=list)  # a second member for the same frame; dropped
    truncated: str | None = None  # the error that ended the stream early
    peak_buffer_frames: int = 0
    peak_buffer_bytes: int = 0
    out_of_order: int = 0  # members that arrived before a smaller index

    def issues(self) -> list[str]:
        out = []
        if self.truncated:
            out.append(f"{self.path}: tar ends early after {self.members} frames ({self.truncated}); "
                       f"later frames are missing")
        for what, items in (("missing from the tar", self.missing), ("in the tar but not in the gaze file",
                            self.extra), ("not decodable as a 210x160 RGB PNG", self.undecodable),
                            ("too far out of order in the tar, dropped", self.late),
                            ("given twice in the tar, second copy dropped", self.duplicates)):
            if items:
                shown = ", ".join(map(str, items[:10])) + (" ..." if len(items) > 10 else "")
                out.append(f"{self.path}: {len(items)} frames {what}: {shown}")
        return out


def decode_frame(data: bytes) -> np.ndarray | None:
    """PNG bytes -> RGB (210, 160, 3) uint8, or None when the bytes are not such an image."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.shape != (*FRAME_SHAPE, 3):
        return None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)


def _tar_number(field: bytes) -> int:
    """A tar header's number: octal text, or base-256 (GNU) when the first byte's high bit is set."""
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        return value - (1 << (8 * (len(field) - 1))) if field[:1] == b"\xff" else value
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError as err:
        raise tarfile.ReadError(f"invalid number {text!r} in a tar header") from err


def _pax_records(data: bytes) -> dict[str, str]:
    """A pax extended header's ``length key=value\\n`` records."""
    out, position = {}, 0
    while position < len(data) and data[position:position + 1] != b"\0":
        space = data.index(b" ", position)
        length = int(data[position:space])
        if length <= 0:
            raise tarfile.ReadError("invalid pax header")
        key, _, value = data[space + 1:position + length - 1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        position += length
    return out


def tar_members(tar_path: str | Path) -> Iterator[tuple[str, bool, bytes]]:
    """``(name, is_file, data)`` of each member of a tar.bz2, in archive order, streamed: a small reader of the
    ustar, pax and GNU headers (``tarfile``'s stream mode spends more time parsing than the PNGs take to decode).
    A truncated or corrupt archive raises ``EOFError``, ``OSError`` or ``tarfile.ReadError`` at that point."""
    with bz2.open(tar_path, "rb") as archive:
        read = archive.read
        pax: dict[str, str] = {}
        long_name: str | None = None
        first = True
        while True:
            header = read(_BLOCK)
            if not header or header == _ZERO_BLOCK:
                return  # the end-of-archive blocks (or an archive without them)
            if len(header) < _BLOCK:
                raise EOFError("the tar ends inside a member's header")
            stored = _tar_number(header[148:156])
            unsigned = sum(header) - sum(header[148:156]) + 8 * 32
            if stored != unsigned and stored != unsigned - 256 * sum(b > 127 for b in header[:148] + header[156:]):
                raise tarfile.ReadError("bad checksum" + (" (not a tar archive?)" if first else ""))
            first = False
            kind, size = header[156:157], _tar_number(header[124:136])
            data_size = size if kind not in (b"1", b"2", b"3", b"4", b"5", b"6") else 0
            blocks = -(-data_size // _BLOCK) * _BLOCK
            data = read(blocks) if blocks else b""
            if len(data) < blocks and (len(data) < data_size or kind in (b"x", b"g", b"L")):
                raise EOFError(f"the tar ends inside member {header[:100].rstrip(bytes(1))!r}")
            data = data[:data_size]
            if kind == b"x":
                pax = _pax_records(data)
                continue
            if kind == b"g":
                continue
            if kind == b"L":
                long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                continue
            if kind == b"K":
                continue
            name = header[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            if header[257:263] == b"ustar\0" and header[345:346] != b"\0":
                name = header[345:500].split(b"\0", 1)[0].decode("utf-8", "surrogateescape") + "/" + name
            name = pax.get("path", long_name or name)
            if kind == b"5":
                name = name.rstrip("/")  # as tarfile names directories
            if "size" in pax and int(pax["size"]) != size:
                raise tarfile.ReadError(f"member {name}: pax size {pax['size']} differs from the header's {size}")
            pax, long_name = {}, None
            yield name, kind in (b"0", b"\0", b"7"), data


def iter_frames(tar_path: str | Path, expected: Iterable[int] | None = None, max_index: int | None = None,
                report: FrameStreamReport | None = None,
                reorder_bytes: int = DEFAULT_REORDER_BYTES) -> Iterator[tuple[int, np.ndarray]]:
    """Stream ``(frame_index, rgb)`` from a trial's tar.bz2 in ascending frame index, decoding one PNG at a
    time. ``expected`` (the txt's indices) lets frames that come early in the tar wait, still encoded, for
    the ones before them; if that buffer would exceed ``reorder_bytes``, the frame waited for is reported
    missing. ``max_index`` stops the stream once every frame up to it has been handed out. Problems go into
    ``report`` (create one to read them) and never stop the stream."""
    tar_path = Path(tar_path)
    if not tar_path.is_file():
        raise FileNotFoundError(f"frames file {tar_path} does not exist")
    report = report if report is not None else FrameStreamReport(tar_path)
    limit = max_index if max_index is not None else float("inf")
    pending = sorted(i for i in set(expected or ()) if i <= limit)  # expected, not seen yet (a sorted heap)
    pending_set = set(pending)
    buffer: list[tuple[int, bytes]] = []  # heap of (index, png bytes) waiting for smaller frames
    state = {"bytes": 0, "last": -1}
    seen: set[int] = set()

    def next_pending() -> int | None:
        while pending and pending[0] not in pending_set:
            heapq.heappop(pending)
        return pending[0] if pending else None

    def release(final: bool) -> Iterator[tuple[int, np.ndarray]]:
        # hand out buffered frames (up to max_index) while no smaller expected frame is still to come
        while buffer and buffer[0][0] <= limit:
            waiting = next_pending()
            if not final and waiting is not None and waiting < buffer[0][0]:
                if state["bytes"] <= reorder_bytes:
                    return
                pending_set.discard(waiting)  # waited too long for it: report it missing
                report.missing.append(waiting)
                continue
            index, data = heapq.heappop(buffer)
            state["bytes"] -= len(data)
            state["last"] = index
            frame = decode_frame(data)
            if frame is None:
                report.undecodable.append(index)
                continue
            report.emitted += 1
            yield index, frame

    try:
        for name, is_file, data in tar_members(tar_path):
            match = MEMBER.search(name)
            if not is_file or match is None:
                continue
            index = int(match["index"])
            report.members += 1
            if index in seen:
                report.duplicates.append(index)
                continue
            seen.add(index)
            if index <= state["last"]:
                report.late.append(index)
                continue
            waiting = next_pending()
            report.out_of_order += int(waiting is not None and index > waiting)
            if index in pending_set:
                pending_set.discard(index)
            elif expected is not None and index <= limit:
                report.extra.append(index)
            heapq.heappush(buffer, (index, data))
            state["bytes"] += len(data)
            report.peak_buffer_frames = max(report.peak_buffer_frames, len(buffer))
            report.peak_buffer_bytes = max(report.peak_buffer_bytes, state["bytes"])
            yield from release(final=False)
            if max_index is not None and next_pending() is None and (not buffer or buffer[0][0] > limit):
                return  # everything up to max_index handed out
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:  # truncated or corrupt archive
        report.truncated = f"{type(err).__name__}: {err}"
    # the stream ended: what is still expected is missing; hand out the rest in order
    report.missing.extend(sorted(pending_set))
    report.missing.sort()
    pending_set.clear()
    yield from release(final=True)


# ------------------------------------------------------------------------------------------------ a trial

class Trial:
    """A trial's gaze table and frame stream, with everything found wrong collected in ``issues``."""

    def __init__(self, files: TrialFiles, strict: bool = True):
        if files.txt is None or files.tar is None:
            raise DataError(f"trial {files.name} needs both {files.name}{TXT_SUFFIX} and {files.name}{TAR_SUFFIX}")
        self.files = files
        self.name = files.name
        self.game = files.game
        self.gaze = read_gaze_table(files.txt, strict=strict)
        self.last_report: FrameStreamReport | None = None

    @classmethod
    def open(cls, path: str | Path, strict: bool = True) -> Trial:
        """One trial from its txt, tar.bz2 or stem path."""
        trials, issues = find_trials(path)
        if not trials and issues:  # the reason the one trial is unusable, not just "0 trials"
            raise DataError(f"no usable Atari-HEAD trial at {path}: {'; '.join(issues)}")
        if len(trials) != 1:
            names = ", ".join(t.name for t in trials[:5]) + (", ..." if len(trials) > 5 else "")
            raise FileNotFoundError(f"{path} holds {len(trials)} complete trials ({names}), expected one; "
                                    f"give one trial's .txt, .tar.bz2 or stem")
        return cls(trials[0], strict=strict)

    def frames(self, max_index: int | None = None,
               reorder_bytes: int = DEFAULT_REORDER_BYTES) -> Iterator[tuple[int, np.ndarray]]:
        """``(frame_index, rgb)`` in ascending index; what went wrong is in ``last_report`` afterwards."""
        self.last_report = FrameStreamReport(self.files.tar)
        yield from iter_frames(self.files.tar, expected=self.gaze.frame_index.tolist(), max_index=max_index,
                               report=self.last_report, reorder_bytes=reorder_bytes)

    @property
    def issues(self) -> list[str]:
        return list(self.gaze.issues) + (self.last_report.issues() if self.last_report else [])
