"""Atomic writes: all or nothing, and files as readable as any other."""

from __future__ import annotations

import os
import stat

import pytest

from rl_saliency import io


def test_atomic_write_replaces_whole_file_and_keeps_normal_permissions(tmp_path):
    path = io.write_text(tmp_path / "a" / "result.txt", "done\n")
    assert path.read_text() == "done\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ["result.txt"]


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path):
    path = io.write_text(tmp_path / "result.txt", "old\n")

    def explode(tmp):
        tmp.write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        io.atomic_write(path, explode)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]
