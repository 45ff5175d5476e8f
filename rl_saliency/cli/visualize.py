"""``rl-saliency visualize``: what an agent wants to see (actions, units, the generator prior) and the smallest
change that changes its mind (fooling frames). The run itself is :func:`rl_saliency.visualize.pipeline.run`."""

from __future__ import annotations

import argparse

from rl_saliency.cli import options

# rl_saliency.visualize.pipeline.WHATS and rl_saliency.visualize.targets.OBJECTIVES, repeated so that --help does
# not import torch (tests/cli/test_cli_layer.py checks that they agree)
WHATS = ("action", "unit", "generator", "fooling")
OBJECTIVES = ("logit", "log_prob", "q")

def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "visualize", help="what an agent wants to see: action and unit visualisation, generator prior, fooling frames",
        description="Activation maximisation for an SB3 Atari agent (PPO, A2C, DQN zip): the frames that maximise "
        "each action's score (--what action) or internal units (--what unit), the same through a generator trained "
        "to invert the agent's features (--what generator, compared with pixel space), and the smallest change to "
        "real observations that changes the agent's decision (--what fooling). Writes PNG sheets (4 stacked frames "
        "per row, labelled with the game's action names), a GIF per stack and a CSV of scores before and after.",
        epilog="examples: rl-saliency visualize --model zoo:nature-ms_pacman --game ms_pacman --what action --out "
               "runs/vis/pacman | --what unit --units features:0 conv3:5 attention:3,3 | --what generator "
               "--gen-steps 3000 | --what fooling --n-obs 64 --target any")
    options.add_model(parser, help="SB3 model zip (PPO, A2C or DQN) or zoo:<name>")
    options.add_game(parser)
    parser.add_argument("--what", choices=WHATS, default="action", help="what to make (default: action)")
    options.add_out(parser, "output folder", required=True)
    parser.add_argument("--actions", nargs="+", default=None, help="action indices (default: all)")
    parser.add_argument("--units", nargs="+", default=None,
                        help="units: conv<i>:<channel>[@row,col], features:<k>, attention:<row>,<col>")
    parser.add_argument("--list-units", action="store_true", help="print the model's units and exit")
    parser.add_argument("--objective", choices=OBJECTIVES, default="logit",
                        help="action score: logit (DQN: Q-value), log_prob, or q (DQN only)")
    pixel = parser.add_argument_group("pixel-space ascent (action, unit; generator's comparison)")
    pixel.add_argument("--init", choices=["noise", "observation"], default="noise",
                       help="start from grey noise or from an observation the agent played")
    pixel.add_argument("--steps", type=int, default=200, help="ascent steps")
    pixel.add_argument("--lr", type=float, default=4.0, help="Adam step, grey levels")
    pixel.add_argument("--l2", type=float, default=1.0, help="L2 penalty weight (score units per white frame)")
    pixel.add_argument("--blur-every", type=int, default=4, help="blur every N steps (0: never)")
    pixel.add_argument("--blur-sigma", type=float, default=0.5, help="blur sigma, pixels")
    pixel.add_argument("--jitter", type=int, default=2, help="random shift per step, pixels (0: none)")
    gen = parser.add_argument_group("generator prior (--what generator)")
    gen.add_argument("--gen-dir", default=None, help="generator folder (default: <out>/generator); resumable")
    gen.add_argument("--gen-steps", type=int, default=3000, help="training steps (a rerun continues to this)")
    gen.add_argument("--gen-obs", type=int, default=2000, help="observations the agent plays for training")
    gen.add_argument("--gen-batch", type=int, default=64)
    gen.add_argument("--gen-lr", type=float, default=1e-3)
    gen.add_argument("--feature-weight", type=float, default=1.0,
                     help="weight of the feature-matching loss (relative to |E(x)|^2) against the pixel loss "
                     "(squared error per stack, 0..1)")
    gen.add_argument("--checkpoint-every", type=int, default=250, help="training steps between checkpoints")
    gen.add_argument("--code-steps", type=int, default=200, help="ascent steps on the code")
    gen.add_argument("--code-lr", type=float, default=0.05, help="Adam step on the code, fraction of its bound a")
    gen.add_argument("--code-l2", type=float, default=0.1, help="L2 penalty on the code (relative to |a|^2)")
    fool = parser.add_argument_group("fooling frames (--what fooling)")
    fool.add_argument("--n-obs", type=int, default=32, help="observations to fool")
    fool.add_argument("--target", default="any", help="'any' other action, or an action index")
    fool.add_argument("--max-bound", type=int, default=64, help="largest L-infinity bound tried, grey levels")
    fool.add_argument("--attack-steps", type=int, default=20, help="signed-gradient steps per bound")
    parser.add_argument("--observations", default=None, help="a .npy of observations (N, 4, 84, 84) instead of "
                        "playing the game")
    options.add_count(parser, "--every", 8, help="keep one observation every N agent steps (after 30)")
    options.add_count(parser, "--scale", 2, help="sheet pixels per observation pixel")
    options.add_seed(parser)
    options.add_device(parser)
    options.add_progress(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from rl_saliency.visualize.pipeline import VisualizeSettings, run

    fields = {f.name for f in dataclasses.fields(VisualizeSettings)}
    record = run(VisualizeSettings(**{k: v for k, v in vars(args).items() if k in fields}))
    if record:
        outputs = record["outputs"]
        shown = [p for p in outputs if not p.endswith(".gif")]
        gifs = len(outputs) - len(shown)
        print(f"{args.what}: {record['rows']} rows in {record['seconds']:.1f} s "
              f"({record['seconds_per_row']:.2f} s per row); wrote {', '.join(shown)} and {gifs} GIFs")
        if "summary" in record:
            s = record["summary"]
            print("flipped within " + ", ".join(f"{b} grey levels: {s[f'flipped_at_{b}']:.0%}" for b in (1, 2, 4, 8)))
    return 0
