"""``rl-saliency trust``: which saliency method to trust for an agent."""

from __future__ import annotations

import argparse
from pathlib import Path

from rl_saliency.cli import options

# rl_saliency.trust.DEFAULT_METHODS, repeated so --help does not import torch (tests/cli/test_cli_layer.py checks)
DEFAULT_METHODS = ("gradient", "smoothgrad", "integrated_gradients", "gradcam", "perturbation",
                   "perturbation_action", "sarfa")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "trust", help="which saliency method to trust for an agent: faithfulness, randomisation, robustness, gaze",
        description="For each agent, one table with a row per saliency method: deletion and insertion AUC of the "
        "chosen action's probability (each vs random pixel orders), cascading-randomisation similarity (top / all "
        "layers), robustness to small noise, NSS against human gaze (with --atari-head) and maps per second. "
        "Writes trust.csv, trust.md and curves.png under --out (a subfolder per agent when several are given). "
        "Resumable: finished parts are skipped on a rerun.",
        epilog="example: rl-saliency trust --model runs/nature_ms_pacman_s0/model.zip --game ms_pacman "
               "--atari-head ../shared/atari_head --out runs/nature_ms_pacman_s0/trust")
    parser.add_argument("--model", nargs="+", required=True, help="SB3 model zip(s) (PPO, A2C or DQN)")
    parser.add_argument("--game", default=None, help="game (default: from each model's run folder)")
    parser.add_argument("--methods", "--method", dest="methods", nargs="+", default=None,
                        help=f"saliency methods to compare (default: {' '.join(DEFAULT_METHODS)}, and attention "
                        f"first when the model has it)")
    options.add_count(parser, "--n-obs", 32, help="observations the measures are averaged over")
    parser.add_argument("--observations", default=None, help="a .npy of observations (N, 4, 84, 84) instead of "
                        "playing the game")
    parser.add_argument("--steps", type=int, default=20, help="deletion/insertion steps")
    parser.add_argument("--fill", choices=["blur", "mean"], default="blur", help="what replaces deleted pixels")
    parser.add_argument("--blur-sigma", type=float, default=5.0)
    parser.add_argument("--max-fraction", type=float, default=1.0, help="delete/insert up to this fraction of pixels")
    parser.add_argument("--noise", type=float, default=0.01, help="robustness noise std, fraction of 0..255")
    options.add_count(parser, "--robustness-samples", 1, help="noisy copies per observation")
    options.add_count(parser, "--randomisation-obs", 8, help="observations for the randomisation check")
    parser.add_argument("--atari-head", default=None, help="Atari-HEAD folder: adds gaze NSS")
    parser.add_argument("--gaze-max-frames", type=int, default=1000, help="first N raw frames of each trial")
    options.add_count(parser, "--gaze-stride", 4, help="an observation every N raw frames")
    parser.add_argument("--perturbation-stride", type=int, default=5)
    parser.add_argument("--smoothgrad-samples", type=int, default=20)
    parser.add_argument("--ig-steps", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    options.add_device(parser)
    parser.add_argument("--overwrite", action="store_true", help="start afresh in --out")
    options.add_progress(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rl_saliency.errors import OptionError
    from rl_saliency.trust import agent_label, markdown_table, method_options, trust_table

    per_method = method_options(args.methods or DEFAULT_METHODS, args.perturbation_stride, args.smoothgrad_samples,
                                args.ig_steps)
    labels = [agent_label(m) for m in args.model]
    if len(set(labels)) != len(labels):
        raise OptionError(f"two models have the same name ({', '.join(labels)}); run them one at a time")
    for model, label in zip(args.model, labels, strict=True):
        out = Path(args.out) / label if len(args.model) > 1 else Path(args.out)
        table = trust_table(model, out, game=args.game, methods=args.methods, n_obs=args.n_obs, steps=args.steps,
                            fill=args.fill, blur_sigma=args.blur_sigma, max_fraction=args.max_fraction,
                            noise=args.noise, robustness_samples=args.robustness_samples,
                            randomisation_obs=args.randomisation_obs, seed=args.seed, atari_head=args.atari_head,
                            gaze_max_frames=args.gaze_max_frames, gaze_stride=args.gaze_stride, options=per_method,
                            observations=args.observations, device=args.device, overwrite=args.overwrite,
                            progress=args.progress)
        print(markdown_table(table))
        print(f"wrote {out / 'trust.csv'}, {out / 'trust.md'} and {out / 'curves.png'}")
    return 0
