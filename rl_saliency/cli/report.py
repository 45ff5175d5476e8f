"""``rl-saliency report``: one self-contained HTML page for an output folder."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="one self-contained HTML page for an output folder",
        description="Write one self-contained HTML page (inline CSS, embedded images, videos linked beside it) for a "
                    "training run, evaluation, gaze evaluation, sanity or trust folder, or a sweep: what was run, "
                    "scores, the gaze table and charts, example frames (agent saliency | human gaze), videos and "
                    "plots.",
        epilog="example: rl-saliency report runs/fls_breakout")
    parser.add_argument("folder", help="output folder of train, evaluate, gaze-eval, sanity, trust, sweep or render")
    parser.add_argument("--out", default=None, help="page path (default: <folder>/report.html)")
    parser.add_argument("--examples", type=int, default=4, help="example frames per method in the gaze section "
                        "(0: none; they are computed from the model and the trial)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rl_saliency.errors import check_count
    from rl_saliency.render.report import build_report

    examples = check_count(args.examples, "--examples", minimum=0)
    page = build_report(args.folder, args.out, examples)
    print(f"written: {page}")
    return 0
