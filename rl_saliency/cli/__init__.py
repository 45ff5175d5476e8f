"""rl-saliency: one CLI for training, evaluation, saliency, gaze evaluation and videos.

The command layer. Each command has a module with ``register(subparsers)`` (argparse, option checks,
printing); the shared options are built by :mod:`rl_saliency.cli.options` so every command spells and checks
them the same way. Each command imports its library modules inside its run function, so building the parser
(``rl-saliency --help``) does not import torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

# command name -> module defining register(subparsers)
COMMANDS: dict[str, str] = {
    "quickstart": "rl_saliency.cli.quickstart",
    "train": "rl_saliency.cli.train",
    "evaluate": "rl_saliency.cli.evaluate",
    "gaze-eval": "rl_saliency.cli.gaze_eval",
    "render": "rl_saliency.cli.render",
    "sanity": "rl_saliency.cli.sanity",
    "trust": "rl_saliency.cli.trust",
    "sweep": "rl_saliency.cli.sweep",
    "games": "rl_saliency.cli.games",
    "zoo": "rl_saliency.cli.zoo",
    "report": "rl_saliency.cli.report",
    "visualize": "rl_saliency.cli.visualize",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rl-saliency",
        description="Train Atari agents that explain themselves, score their saliency against human gaze, "
        "render videos.")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    subparsers.required = True
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).register(subparsers)
    return parser


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (kill, a scheduler's stop, docker stop) is handled as Ctrl-C is: what can be saved is saved."""
    from rl_saliency.errors import Terminated

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: a second must not cut the checkpoint being saved
    raise Terminated


def _resolve_zoo_names(model: object) -> object:
    """``zoo:<name>`` -> the zoo agent's zip, for one ``--model`` or several (``trust``); anything else as is."""
    if isinstance(model, list):
        return [_resolve_zoo_names(m) for m in model]
    if isinstance(model, str) and model.startswith("zoo:"):
        from rl_saliency.runs import model_path

        return str(model_path(model))
    return model


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        from rl_saliency.cli.options import check_counts

        check_counts(args)  # every count option > 0, the same check and message in every command
        args.model = _resolve_zoo_names(getattr(args, "model", None))  # every command's --model takes zoo:<name>
        result = args.func(args)
    except KeyboardInterrupt as err:
        from rl_saliency.errors import Terminated

        terminated = isinstance(err, Terminated)
        print("terminated (SIGTERM)" if terminated else "interrupted", file=sys.stderr)
        return 143 if terminated else 130
    except BrokenPipeError:  # the reader of our output went away (rl-saliency games | head): not an error
        try:  # send what is still buffered nowhere, so that the flush at exit does not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 0
    except Exception as err:  # noqa: BLE001 - user-facing errors become one line
        from rl_saliency.errors import USER_ERRORS, storage_error_message

        # a full disk, a read-only folder or a permission error is one line naming the path, not a traceback
        message = str(err) if isinstance(err, USER_ERRORS) else storage_error_message(err)
        if message is None:
            raise
        print(f"rl-saliency {args.command}: error: {message}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
