"""``rl-saliency render``: a video of an agent playing (or of a human Atari-HEAD trial) with its saliency."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rl_saliency.cli import options

NO_TARGET = ("attention", "centre_bias", "uniform", "intensity")  # methods that take no target


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "render", help="video of an agent playing (or of a human Atari-HEAD trial) with its saliency overlaid",
        description="Play a model in one evaluation env and write an MP4 (H.264) with the saliency map overlaid "
        "on the 210x160 RGB frame, enlarged, and a HUD (step, action, value, score). With --atari-head, replay a "
        "human trial instead, the agent's saliency and the human gaze side by side.")
    options.add_model(parser)
    options.add_game(parser)
    parser.add_argument("--atari-head", default=None, metavar="TRIAL",
                        help="replay this Atari-HEAD trial (path to <trial>.txt/.tar.bz2 or their stem)")
    parser.add_argument("--method", default="gradient", help="saliency method (attention, gradient, smoothgrad, "
                        "integrated_gradients, gradcam, perturbation, ...)")
    parser.add_argument("--target", default=None, help="'action' (default), 'value', or an action index")
    options.add_count(parser, "--steps", 300, help="frames to render (agent steps or trial frames)")
    parser.add_argument("--start", type=int, default=0, help="with --atari-head: first trial frame to show")
    options.add_count(parser, "--stride", 1, help="with --atari-head: show every k-th frame")
    parser.add_argument("--out", default="video.mp4", help="output MP4 path")
    parser.add_argument("--gif", action="store_true", help="also write a GIF next to the MP4")
    options.add_seed(parser)
    options.add_count(parser, "--scale", 4, help="enlargement of the 210x160 frame")
    parser.add_argument("--fps", type=float, default=30.0, help="frames per second of the video")
    parser.add_argument("--alpha", type=float, default=0.6, help="opacity of the heat map where most salient")
    parser.add_argument("--normalise", choices=("running", "global"), default="running",
                        help="scale maps by the max so far (running) or over the whole video (global)")
    options.add_policy_mode(parser, default_deterministic=True)
    options.add_device(parser)
    options.add_progress(parser)
    parser.set_defaults(func=run)


def _target(value: str | None) -> str | int | None:
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else value


def run(args: argparse.Namespace) -> int:
    from rl_saliency import io
    from rl_saliency.render.video import check_render_options
    from rl_saliency.saliency.registry import get_method

    get_method(args.method)  # an unknown method fails (OptionError, one line) before any work
    method_kwargs = {} if args.target is None or args.method in NO_TARGET else {"target": _target(args.target)}
    check_render_options(args.steps, args.scale, args.fps, args.alpha, args.normalise)
    out = Path(args.out)
    with io.output_lock(out.parent, out.name):  # one writer per video (the trial replay included)
        summary = _render(args, method_kwargs)
    print(f"wrote {', '.join(summary['paths'])}: {summary['frames']} frames, {summary['codec']}")
    print(f"rendered at {summary['fps']:.1f} frames/s ({summary['seconds']:.1f} s)")
    return 0


def _render(args: argparse.Namespace, method_kwargs: dict[str, Any]) -> dict[str, Any]:
    if args.atari_head:
        from rl_saliency.render.replay import render_trial

        summary = render_trial(args.model, args.atari_head, method=args.method, steps=args.steps, start=args.start,
                               stride=args.stride, game=args.game, out=args.out, gif=args.gif, scale=args.scale,
                               fps=args.fps, alpha=args.alpha, normalise=args.normalise,
                               method_kwargs=method_kwargs, device=args.device, progress=args.progress)
        for issue in summary["issues"]:
            print(f"warning: {issue}", file=sys.stderr)
    else:
        from rl_saliency.render.video import render_agent

        summary = render_agent(args.model, game=args.game, method=args.method, steps=args.steps, out=args.out,
                               gif=args.gif, seed=args.seed, scale=args.scale, fps=args.fps, alpha=args.alpha,
                               normalise=args.normalise, deterministic=args.deterministic,
                               method_kwargs=method_kwargs, device=args.device, progress=args.progress)
    return summary
