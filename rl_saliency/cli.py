"""rl-saliency: one CLI for training, evaluation, saliency, gaze evaluation and videos.

Each command lives in its own module with ``register(subparsers)``; modules are imported lazily so
``--help`` stays fast and a broken optional part does not break the rest.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# command name -> module defining register(subparsers)
COMMANDS: dict[str, str] = {
    "quickstart": "rl_saliency.quickstart",
    "train": "rl_saliency.train",
    "evaluate": "rl_saliency.evaluate",
    "gaze-eval": "rl_saliency.gaze.evaluator",
    "render": "rl_saliency.render.video",
    "sanity": "rl_saliency.saliency.sanity",
    "sweep": "rl_saliency.sweep",
    "games": "rl_saliency.envs.registry",
    "zoo": "rl_saliency.agents.zoo",
}


class CliError(Exception):
    """An error to print as one line, without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rl-saliency",
        description="Train Atari agents that explain themselves, score their saliency against human gaze, "
        "render videos.")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    subparsers.required = True
    for module_name in COMMANDS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:  # command not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        model = getattr(args, "model", None)
        if isinstance(model, str) and model.startswith("zoo:"):  # every command's --model takes a zoo name
            from rl_saliency.agents.zoo import resolve_model

            args.model = str(resolve_model(model))
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (rl-saliency games | head): not an error
        try:  # send what is still buffered nowhere, so that the flush at exit does not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 0
    except Exception as err:  # noqa: BLE001 - user-facing errors become one line
        from rl_saliency.errors import USER_ERRORS

        if isinstance(err, USER_ERRORS):
            print(f"rl-saliency {args.command}: error: {err}", file=sys.stderr)
            return 2
        raise
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
