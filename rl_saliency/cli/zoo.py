"""``rl-saliency zoo``: list the trained agents of the zoo, or add a training run to it."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "zoo", help="list the trained agents shipped in agents/zoo (use them as --model zoo:<name>)",
        description="List the zoo of trained agents (agents/zoo/index.yaml), or add a training run to it "
                    "(compact weights, config, metrics, command, scores and gaze metrics).",
        epilog="examples: rl-saliency zoo | rl-saliency evaluate --model zoo:fls_sparse-ms_pacman --episodes 5 | "
               "rl-saliency zoo add --run runs/fls_sparse_ms_pacman_s0 --name fls_sparse-ms_pacman "
               "--evaluation runs/fls_sparse_ms_pacman_s0/eval/evaluation.json")
    actions = parser.add_subparsers(dest="zoo_action", metavar="[add]")
    add = actions.add_parser("add", help="copy a training run into the zoo and index it")
    add.add_argument("--run", required=True, help="training run folder (holding config.yaml)")
    add.add_argument("--name", required=True, help="zoo name, e.g. fls_sparse-ms_pacman")
    add.add_argument("--model", default=None, help="zip to ship (default: <run>/model.zip)")
    add.add_argument("--evaluation", default=None, help="evaluation.json of that zip (rl-saliency evaluate)")
    add.add_argument("--gaze", default=None, help="a JSON or YAML file of gaze metrics to record")
    add.add_argument("--device", default="cpu", help="device the agent was trained on (recorded)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rl_saliency import io
    from rl_saliency.agents.zoo import add_agent, format_index, load_index
    from rl_saliency.errors import DataError

    if getattr(args, "zoo_action", None) == "add":
        gaze = io.read_yaml(Path(args.gaze), "gaze metrics", DataError) if args.gaze else None
        agent = add_agent(args.run, args.name, evaluation=args.evaluation, gaze=gaze, model=args.model,
                          device=args.device)
        print(f"added zoo:{agent.name} ({agent.path})")
        return 0
    print(format_index(load_index()))
    return 0
