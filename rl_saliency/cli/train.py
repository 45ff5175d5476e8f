"""``rl-saliency train``: train an agent spec on an Atari game."""

from __future__ import annotations

import argparse

from rl_saliency.cli import options

# rl_saliency.agents.cpu_speed.PRECISIONS, repeated so --help does not import torch (tests/cli checks they agree)
PRECISIONS = ("bf16", "fp32")

DEFAULT_SPEC = "nature"  # rl_saliency.agents.spec.DEFAULT_SPEC, repeated so --help does not import SB3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train an agent spec on an Atari game",
        description="Train an agent (a YAML spec in agents/) on an Atari game with Stable-Baselines3. Writes "
                    "config.yaml, checkpoints/, metrics.csv and model.zip into the run folder.",
        epilog="example: rl-saliency train --agent agents/fls_sparse.yaml --game breakout --timesteps 100000 "
               "--out runs/fls_breakout")
    parser.add_argument("--agent", default=DEFAULT_SPEC, help="spec path or name in agents/ (default: nature)")
    parser.add_argument("--game", default="breakout", help="game name or ALE id (default: breakout)")
    parser.add_argument("--timesteps", type=float, default=None, help="agent steps (default: the spec's)")
    options.add_seed(parser)
    options.add_out(parser, "run folder (default: runs/<agent>_<game>_s<seed>)")
    options.add_count(parser, "--n-envs", None, help="parallel envs (default: the spec's)")
    parser.add_argument("--backend", choices=options.BACKENDS, default="ale", help="env backend (default: ale)")
    parser.add_argument("--device", choices=options.DEVICES, default=None,
                        help="auto (default: CUDA where available; config.yaml records the choice), cpu or cuda; "
                        "with --resume, the run's own setting unless given")
    options.add_count(parser, "--checkpoint-freq", None, help="steps between checkpoints "
                      "(default: a tenth of the budget)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a hyperparameter, e.g. --set n_steps=64 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--tensorboard", default=None, metavar="DIR",
                        help="write TensorBoard event files to DIR/<run folder name>: SB3's scalars and, every 10 "
                        "updates, the agent's saliency over fixed observations (the spec's tensorboard: section "
                        "sets method and frequency); view with: tensorboard --logdir DIR")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="CPU only: bf16 autocast of the features extractor (about 2x faster updates; the default "
                        "where the CPU has native bf16, unless RL_SALIENCY_CPU_PRECISION=fp32) or fp32; a resumed run "
                        "keeps its own unless given")
    options.add_progress(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rl_saliency.train import MODEL_FILE, parse_overrides, train

    run_dir = train(args.agent, game=args.game, timesteps=args.timesteps,
                    out=args.out, seed=args.seed, n_envs=args.n_envs, backend=args.backend, device=args.device,
                    resume=args.resume, checkpoint_freq=args.checkpoint_freq,
                    hyperparams=parse_overrides(args.overrides), progress=args.progress,
                    tensorboard=args.tensorboard, precision=args.precision)
    print(f"trained: {run_dir / MODEL_FILE}")
    return 0
