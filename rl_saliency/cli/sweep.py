"""``rl-saliency sweep``: run a grid of games x agents x seeds (train, evaluate, gaze-eval) on Ray or locally."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rl_saliency.cli import options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep", help="run a grid of games x agents x seeds (train, evaluate, gaze-eval) on Ray",
        description="Run a grid of games x agents x seeds on Ray: train, evaluate and (where the grid gives "
                    "Atari-HEAD data) gaze-evaluate each cell, then aggregate a table and plots. Finished tasks "
                    "are never rerun: run the same command again to resume.",
        epilog="example: rl-saliency sweep --grid docs/grids/tiny.yaml --out sweeps/tiny --local")
    parser.add_argument("--grid", required=True, help="grid YAML file (see docs/sweeps.md)")
    options.add_out(parser, "sweep folder (e.g. sweeps/fls); shared by all nodes", required=True)
    parser.add_argument("--address", default=None,
                        help="existing Ray cluster: 'auto' (this node joined one) or 'ray://host:10001'; "
                             "default: start a local Ray instance")
    parser.add_argument("--local", action="store_true", help="run serially in this process, without Ray")
    options.add_count(parser, "--num-cpus", None, help="CPUs of the local Ray instance (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="list the tasks and their status, run nothing")
    parser.add_argument("--aggregate-only", action="store_true", help="only rebuild the table and plots")
    options.add_progress(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rl_saliency import io
    from rl_saliency.errors import DataError, OptionError
    from rl_saliency.sweep import aggregate, load_grid, run_sweep, task_status

    if args.local and args.address:
        raise OptionError("--local runs without Ray; it cannot be combined with --address")
    grid = load_grid(args.grid)
    out = Path(args.out)
    if args.dry_run:
        for task in grid.tasks():
            print(f"{task_status(out, task):8s} {task.key}")
        return 0
    if args.aggregate_only:
        with io.output_lock(out):
            table = aggregate(out)
        if table is None:
            raise DataError(f"sweep {out} has no finished task yet")
        print(f"table: {out / 'table.md'}")
        return 0
    report = run_sweep(grid, out, address=args.address, local=args.local, num_cpus=args.num_cpus,
                       progress=args.progress)
    print(f"sweep {grid.name}: {len(report.done)} run, {len(report.skipped)} already done, "
          f"{len(report.failed)} failed; table: {out / 'table.md'}")
    for key, error in report.failed.items():
        print(f"  failed {key}: {error}", file=sys.stderr)
    return 0 if report.ok else 1
