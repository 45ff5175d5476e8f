"""Shared option builders: every command spells and checks its common options the same way.

Nothing here imports torch or a library module beyond :mod:`rl_saliency.errors` at parse time.
"""

from __future__ import annotations

import argparse

DEVICES = ("auto", "cpu", "cuda")


def add_model(parser: argparse.ArgumentParser, required: bool = True, help: str | None = None) -> None:  # noqa: A002
    """``--model``: a model zip, or ``zoo:<name>`` for a zoo agent (resolved by ``rl_saliency.cli.main``)."""
    parser.add_argument("--model", required=required,
                        help=help or "model zip, or zoo:<name> for an agent of the zoo (rl-saliency zoo)")


def add_game(parser: argparse.ArgumentParser, help: str | None = None) -> None:  # noqa: A002
    parser.add_argument("--game", default=None, help=help or "game (default: from the model's run folder)")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=DEVICES, default="auto", help="torch device (default: auto)")


def add_count(parser: argparse.ArgumentParser, flag: str, default: int | None, help: str | None = None) -> None:  # noqa: A002
    """A count option (``--episodes``, ``--n-envs``, ...). ``rl_saliency.cli.main`` checks every count > 0
    before the command runs (:func:`check_counts`), so 0 or a negative count is an OptionError, one line, exit 2
    in every command."""
    action = parser.add_argument(flag, type=int, default=default, help=help)
    counts = parser.get_default("_counts") or ()
    parser.set_defaults(_counts=(*counts, (action.dest, flag)))


def check_counts(args: argparse.Namespace) -> None:
    """Every count option the command registered with :func:`add_count`: an int >= 1 (None = its default)."""
    from rl_saliency.errors import check_count

    for dest, flag in getattr(args, "_counts", ()):
        value = getattr(args, dest)
        if value is not None:
            setattr(args, dest, check_count(value, flag))


def add_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0)


def add_out(parser: argparse.ArgumentParser, help: str, required: bool = False) -> None:  # noqa: A002
    parser.add_argument("--out", default=None, required=required, help=help)


def add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def add_policy_mode(parser: argparse.ArgumentParser, default_deterministic: bool) -> None:
    """``--deterministic`` and ``--stochastic`` in every command that plays the model, whatever its default."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--deterministic", dest="deterministic", action="store_true", default=default_deterministic,
                       help="greedy actions" + (" (default)" if default_deterministic else ""))
    stochastic_default = "" if default_deterministic else " (default, as rl-zoo does for Atari)"
    group.add_argument("--stochastic", dest="deterministic", action="store_false",
                       help="sample actions" + stochastic_default)


# Copies of the env room's constants so building the parser does not import the emulator and torch;
# tests/cli/test_cli_options.py checks that they agree with rl_saliency.envs.atari.
BACKENDS = ("ale", "sb3")
DEFAULT_MAX_FRAMES = 108_000
