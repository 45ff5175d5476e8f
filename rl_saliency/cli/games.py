"""``rl-saliency games``: list the games the registry knows."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("games", help="list the games the registry knows",
                                   description="List games: friendly name, gymnasium id, Atari-HEAD name.")
    parser.add_argument("--atari-head", action="store_true", help="only games that Atari-HEAD recorded")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rl_saliency.envs.registry import all_games

    for game in all_games():
        if args.atari_head and not game.atari_head:
            continue
        print(f"{game.name:22s} {game.gym_id:34s} {game.atari_head or '-'}")
    return 0
