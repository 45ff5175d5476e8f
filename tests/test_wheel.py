"""A wheel built from the repository works on its own: installed (not editable) into a fresh environment and run
from a folder outside the source tree, it finds its agent specs, game registry and zoo as package data."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what a source distribution would not carry: environments, caches, runs, the full Atari-HEAD data
IGNORED = shutil.ignore_patterns(".git", ".venv", ".whl", ".carry", "runs", "sweeps", "build", "dist", "*.egg-info",
                                 "__pycache__", ".pytest_cache", ".ruff_cache", "atari_head", "tests")


def _run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(map(str, args))}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the fresh environment's python, a working folder outside the source tree)."""
    base = tmp_path_factory.mktemp("wheel")
    source, dist, env, work = base / "source", base / "dist", base / "env", base / "elsewhere"
    shutil.copytree(ROOT, source, ignore=IGNORED)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
          str(source)], cwd=base)
    wheel = next(dist.glob("rl_saliency-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "rl_saliency/_agents/nature.yaml" in names and "rl_saliency/_envs/games.yaml" in names
    assert any(n.startswith("rl_saliency/_agents/zoo/") and n.endswith("model.zip") for n in names)
    _run([sys.executable, "-m", "venv", str(env)], cwd=base)
    python = env / "bin" / "python"
    # the dependencies (torch, SB3, ...) come from this environment's site-packages, put on the path by a .pth
    # file; its editable install of rl_saliency is not (a .pth line adds a folder, it runs no .pth inside it)
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=base).strip())
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], cwd=base)
    work.mkdir()
    return python, work


def test_the_installed_package_is_the_wheel_not_the_source_tree(installed):
    python, work = installed
    location = _run([str(python), "-c", "import rl_saliency.paths as p; print(p.PACKAGE_ROOT); print(p.AGENTS_DIR)"],
                    cwd=work).split()
    assert not Path(location[0]).is_relative_to(ROOT) and Path(location[0]).is_relative_to(python.parents[1])
    assert Path(location[1]) == Path(location[0]) / "_agents"


def test_the_wheel_lists_the_games_and_the_zoo(installed):
    python, work = installed
    cli = python.parent / "rl-saliency"
    assert "ms_pacman" in _run([str(cli), "games"], cwd=work)
    assert "fls_sparse-ms_pacman" in _run([str(cli), "zoo"], cwd=work)


def test_the_wheel_trains_a_spec_by_name(installed):
    python, work = installed
    cli = python.parent / "rl-saliency"
    _run([str(cli), "train", "--agent", "nature", "--game", "pong", "--timesteps", "64", "--n-envs", "1",
          "--out", "run", "--no-progress", "--device", "cpu"], cwd=work)
    assert (work / "run" / "model.zip").is_file() and (work / "run" / "config.yaml").is_file()
