"""``rl-saliency evaluate``: play whole games with a model and summarise the scores."""

from __future__ import annotations

import argparse
from pathlib import Path

from rl_saliency.cli import options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="play whole games with a model and summarise the scores",
        description="Play whole games (no life-loss ends, unclipped scores) with any SB3 PPO, A2C or DQN Atari "
                    "model zip, print and write the mean, std, min and max of score and length.",
        epilog="example: rl-saliency evaluate --model runs/fls_breakout/model.zip --episodes 10")
    options.add_model(parser)
    options.add_game(parser)
    options.add_count(parser, "--episodes", 10)
    options.add_seed(parser)
    options.add_out(parser, "folder for evaluation.json and episodes.csv "
                    "(default: <run folder>/eval when the model is in a run folder)")
    parser.add_argument("--backend", choices=options.BACKENDS, default=None,
                        help="env backend (default: the one the model was trained on; sb3 without a run folder)")
    options.add_policy_mode(parser, default_deterministic=False)
    options.add_count(parser, "--n-envs", None, help="games played in parallel (default: up to 4)")
    options.add_count(parser, "--max-frames", options.DEFAULT_MAX_FRAMES, help="emulator frames per game cap")
    options.add_device(parser)
    options.add_progress(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rl_saliency.agents.zoo import zoo_name_of
    from rl_saliency.evaluate import evaluate, format_summary
    from rl_saliency.runs import run_config

    out = args.out
    zoo_name = zoo_name_of(args.model)
    if out is None and zoo_name:  # never write into the shipped zoo
        out = Path("runs") / "zoo" / zoo_name / "eval"
    elif out is None and run_config(args.model) is not None:
        out = Path(args.model).parent / "eval"
    summary = evaluate(args.model, game=args.game, episodes=args.episodes, seed=args.seed, out=out,
                       backend=args.backend, deterministic=args.deterministic, n_envs=args.n_envs,
                       max_frames=args.max_frames, device=args.device, progress=args.progress)
    print(format_summary(summary))
    if out:
        print(f"written: {Path(out) / 'evaluation.json'}")
    return 0
