"""``rl-saliency gaze-eval``: score an agent's saliency against human gaze (Atari-HEAD)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rl_saliency.cli import options

# Copies of the gaze room's choices so --help does not import torch; tests/cli/test_cli_layer.py checks them.
PROTOCOLS = ("default", "paper")
RESOLUTIONS = (84, 210)
POOLS = ("rgb", "grey")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gaze-eval", help="score an agent's saliency against human gaze (Atari-HEAD)",
        description="Replay Atari-HEAD trials through the agent's preprocessing, compute the saliency of every "
                    "observation with a method on the saliency contract, and score it against the human fixations "
                    "(NSS, AUC-Judd, AUC-Borji, shuffled AUC, KL, CC, SIM, information gain over centre bias), "
                    "with the centre-bias, uniform and intensity baselines alongside. Resumable.",
        epilog="example: rl-saliency gaze-eval --model runs/fls_ms_pacman/model.zip --method attention "
               "--atari-head data/atari_head --games ms_pacman --max-frames 2000 --out runs/fls_ms_pacman/gaze")
    options.add_model(parser, help="model zip, zoo:<name>, or 'none' to score the baselines only")
    parser.add_argument("--method", "--methods", dest="method", nargs="+", default=None,
                        help="saliency method(s): attention, gradient, ... (default: attention; with --model none, "
                        "the baselines only); the baselines are always scored too")
    parser.add_argument("--atari-head", required=True, help="Atari-HEAD folder (games in <game>/), a game folder, "
                        "or one trial (<trial>.txt, .tar.bz2 or their stem)")
    parser.add_argument("--games", nargs="+", default=None, help="only these games")
    parser.add_argument("--trials", nargs="+", default=None, help="only these trials (names or numbers)")
    parser.add_argument("--game", default=None, help="the model's game when its run folder does not say")
    parser.add_argument("--max-frames", type=int, default=None, help="only the first N raw frames of each trial")
    options.add_count(parser, "--batch-size", 64, help="observations per saliency batch")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="default",
                        help="default: 84x84, every raw frame (this package's choice); paper: as the FLS paper's "
                        "code scored (210x160, maps resized bilinearly, every 4th frame, sigma-5 blur for KL); "
                        "docs/fidelity.md lists every choice")
    options.add_count(parser, "--stride", None, help="an observation every N raw frames (default: the "
                        "protocol's, 1 or 4 for paper; 4 = the agent's decision points); changes the protocol's label")
    parser.add_argument("--resolution", type=int, choices=RESOLUTIONS, default=None,
                        help="score at the agent's 84x84 or the frame's 210x160 (maps upsampled); default: the "
                        "protocol's")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random negatives (AUC-Borji, shuffled AUC)")
    parser.add_argument("--pool", choices=["auto", *POOLS], default="auto",
                        help="max of each step's two raw frames taken on RGB (SB3 backend) or grey (ale backend); "
                        "auto: the backend in the model's run config.yaml, else rgb")
    parser.add_argument("--strict", action="store_true", help="stop at a corrupt txt row instead of skipping it")
    options.add_device(parser)
    parser.add_argument("--out", required=True, help="output folder (resumes when it holds finished trials)")
    options.add_progress(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rl_saliency import io
    from rl_saliency.gaze.evaluator import format_table, gaze_eval
    from rl_saliency.saliency.registry import get_method

    methods = args.method if args.method is not None else [] if args.model.lower() == "none" else ["attention"]
    for name in methods:
        get_method(name)  # an unknown method fails (OptionError, one line) before any work, as in every command
    with io.output_lock(args.out):  # one writer per output folder; a dead one's temporary files are removed
        result = gaze_eval(args.model, args.atari_head, args.out, methods=methods, games=args.games,
                           trials=args.trials, game=args.game, max_frames=args.max_frames,
                           batch_size=args.batch_size, stride=args.stride, resolution=args.resolution,
                           seed=args.seed, strict=args.strict, pool=args.pool, device=args.device,
                           protocol=args.protocol, progress=args.progress)
    print(format_table(result["per_game"], result["per_trial"]))
    print(f"written: {Path(args.out) / 'per_game.csv'}, per_trial.csv, trials/")
    return 0
