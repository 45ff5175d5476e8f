"""``rl-saliency quickstart``: a trained agent's scores, its saliency against human gaze, and a video."""

from __future__ import annotations

import argparse

from rl_saliency import quickstart as library  # light at import: paths only; the work is imported when it runs
from rl_saliency.cli import options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quickstart", help="a trained agent's scores, its saliency against human gaze, and a video (CPU minutes)",
        description=library.__doc__.split("\n\n", 1)[1].replace("\n", " "),
        epilog="examples: rl-saliency quickstart | rl-saliency quickstart --model zoo:nature-ms_pacman "
               "--methods gradient gradcam | rl-saliency quickstart --train --game breakout --timesteps 200000 "
               "--out runs/breakout_quickstart")
    parser.add_argument("--out", default="runs/quickstart", help="output folder (default: runs/quickstart)")
    # dest agent_model: the quickstart resolves zoo names itself (the CLI's --model resolution is skipped)
    parser.add_argument("--model", dest="agent_model", default=library.DEFAULT_MODEL,
                        help=f"model zip or zoo name (default: {library.DEFAULT_MODEL})")
    parser.add_argument("--atari-head", default=str(library.EXCERPT),
                        help="Atari-HEAD folder for the gaze comparison (default: the excerpt in data/)")
    parser.add_argument("--methods", "--method", dest="methods", nargs="+", default=["attention", "gradient"],
                        help="saliency methods to score (default: attention gradient); the first is rendered")
    options.add_count(parser, "--episodes", 3, help="whole games to evaluate (default: 3)")
    options.add_count(parser, "--video-steps", 300, help="frames of the video (default: 300)")
    parser.add_argument("--no-gif", action="store_true", help="write the MP4 only")
    parser.add_argument("--train", action="store_true", help="train a new agent first (--agent, --game, ...)")
    parser.add_argument("--agent", default="fls_sparse", help="with --train: agent spec (default: fls_sparse)")
    parser.add_argument("--game", default="ms_pacman", help="with --train: game (default: ms_pacman)")
    parser.add_argument("--timesteps", type=float, default=50_000, help="with --train: agent steps")
    options.add_count(parser, "--n-envs", 8, help="with --train: parallel envs")
    options.add_seed(parser)
    options.add_progress(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    library.quickstart(args.out, model=args.agent_model, atari_head=args.atari_head, methods=tuple(args.methods),
                       episodes=args.episodes, video_steps=args.video_steps, gif=not args.no_gif,
                       train_agent=args.train, agent=args.agent, game=args.game, timesteps=args.timesteps,
                       n_envs=args.n_envs, seed=args.seed, progress=args.progress)
    return 0
