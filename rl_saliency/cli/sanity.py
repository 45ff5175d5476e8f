"""``rl-saliency sanity``: cascading randomisation sanity checks of saliency methods (Adebayo et al.)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rl_saliency.cli import options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sanity", help="cascading randomisation sanity checks of saliency methods (Adebayo et al.)",
        description="Re-initialise the model's layers from the top down and compare each method's maps with the "
        "trained model's (Spearman rank correlation of absolute and signed maps, SSIM). Writes sanity.csv and "
        "sanity.png under --out. Methods that explain the model drop towards 0; ones near 1 ignore it.")
    options.add_model(parser)
    options.add_game(parser)
    parser.add_argument("--methods", "--method", dest="methods", nargs="+",
                        default=["gradient", "smoothgrad", "integrated_gradients", "gradcam", "perturbation"],
                        help="saliency methods to check")
    options.add_count(parser, "--n-obs", 16, help="observations the maps are compared on")
    parser.add_argument("--observations", default=None, help="a .npy of observations (N, 4, 84, 84) instead of "
                        "playing the game")
    # per-method options: checked by the method itself, whose message names its own parameter
    parser.add_argument("--smoothgrad-samples", type=int, default=20)
    parser.add_argument("--ig-steps", type=int, default=32)
    parser.add_argument("--perturbation-stride", type=int, default=5)
    options.add_seed(parser)
    options.add_device(parser)
    parser.add_argument("--overwrite", action="store_true", help="recompute methods already in --out")
    options.add_out(parser, "output folder", required=True)
    options.add_progress(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from rl_saliency.saliency.registry import get_method
    from rl_saliency.saliency.sanity import METRICS
    from rl_saliency.saliency.sanity import run as run_sanity

    method_kwargs = {"smoothgrad": {"n_samples": args.smoothgrad_samples},
                     "integrated_gradients": {"n_steps": args.ig_steps},
                     "perturbation": {"stride": args.perturbation_stride}}
    method_kwargs = {k: v for k, v in method_kwargs.items() if k in args.methods}
    for name in args.methods:
        get_method(name)  # unknown names fail (OptionError, one line) before any work
    table = run_sanity(args.model, args.game, args.methods, args.out, n_obs=args.n_obs, seed=args.seed,
                       method_kwargs=method_kwargs, device=args.device, observations=args.observations,
                       overwrite=args.overwrite, progress=args.progress)
    last = table.sort_values("step").groupby("method").tail(1)
    with pd.option_context("display.width", 120, "display.precision", 3):
        print(last[["method", "layer", *METRICS]].to_string(index=False))
    print(f"wrote {Path(args.out) / 'sanity.csv'} and {Path(args.out) / 'sanity.png'}")
    return 0
