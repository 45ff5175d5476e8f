"""Cut the Atari-HEAD excerpt shipped in data/atari_head_excerpt from the full trial (run by hand, once).

Keeps the first N consecutive frames of one trial in the dataset's own format: the txt header and rows,
and a tar.bz2 whose members are the original PNG bytes under the original names.

    python data/make_excerpt.py ../shared/atari_head/ms_pacman/593_RZ_5037271_Aug-05-15-35-12 \
        data/atari_head_excerpt/ms_pacman --frames 1000
"""

from __future__ import annotations

import argparse
import io
import re
import tarfile
from pathlib import Path


def make_excerpt(trial: Path, out_dir: Path, frames: int) -> None:
    name = trial.name
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = trial.with_suffix(".txt").read_text().splitlines()
    (out_dir / f"{name}.txt").write_text("\n".join(lines[: frames + 1]) + "\n")
    keep = {f"{row.split(',', 1)[0]}.png" for row in lines[1: frames + 1]}
    with tarfile.open(trial.with_suffix(".tar.bz2"), "r|bz2") as src, \
            tarfile.open(out_dir / f"{name}.tar.bz2", "w:bz2") as dst:
        dir_info = tarfile.TarInfo(name)
        dir_info.type, dir_info.mode = tarfile.DIRTYPE, 0o755
        dst.addfile(dir_info)
        found = 0
        for member in src:
            if member.isfile() and Path(member.name).name in keep:
                data = src.extractfile(member).read()
                info = tarfile.TarInfo(member.name)
                info.size, info.mtime, info.mode = len(data), member.mtime, 0o644
                dst.addfile(info, io.BytesIO(data))
                found += 1
                if found == len(keep):
                    break
    index = sorted(int(re.search(r"_(\d+)\.png$", k).group(1)) for k in keep)
    print(f"{out_dir / name}: frames {index[0]}..{index[-1]} ({found} PNGs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trial", type=Path, help="trial stem (path without .txt / .tar.bz2)")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--frames", type=int, default=1000)
    args = parser.parse_args()
    make_excerpt(args.trial, args.out_dir, args.frames)
