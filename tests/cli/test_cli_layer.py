"""The command layer (rl_saliency/cli/): shared options, one error policy, no torch at import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from rl_saliency.cli import main, options

PACKAGE = Path(__file__).resolve().parents[2] / "rl_saliency"

MOVED = ("evaluate", "games", "train", "quickstart", "sanity", "render", "gaze_eval", "zoo", "report", "trust",
         "visualize", "sweep", "options")


def test_parser_constants_agree_with_the_library():
    from rl_saliency.agents.spec import DEFAULT_SPEC
    from rl_saliency.cli.train import DEFAULT_SPEC as CLI_DEFAULT_SPEC
    from rl_saliency.envs.atari import BACKENDS, DEFAULT_MAX_FRAMES

    assert CLI_DEFAULT_SPEC == DEFAULT_SPEC
    from rl_saliency.cli import gaze_eval
    from rl_saliency.envs.replay import POOLS
    from rl_saliency.gaze.evaluator import RESOLUTIONS
    from rl_saliency.gaze.protocol import PROTOCOLS

    assert gaze_eval.PROTOCOLS == tuple(sorted(PROTOCOLS)) and gaze_eval.RESOLUTIONS == tuple(sorted(RESOLUTIONS))
    assert gaze_eval.POOLS == POOLS
    from rl_saliency.cli import trust as trust_cli
    from rl_saliency.render.report import REPORT_FILE
    from rl_saliency.trust import DEFAULT_METHODS

    assert trust_cli.DEFAULT_METHODS == DEFAULT_METHODS
    assert REPORT_FILE == "report.html"  # named in rl_saliency/cli/report.py's --out help
    assert options.BACKENDS == BACKENDS
    assert options.DEFAULT_MAX_FRAMES == DEFAULT_MAX_FRAMES
    from rl_saliency.cli import visualize as visualize_cli
    from rl_saliency.visualize.pipeline import WHATS
    from rl_saliency.visualize.targets import OBJECTIVES

    assert visualize_cli.WHATS == WHATS and visualize_cli.OBJECTIVES == OBJECTIVES
    from rl_saliency.agents.cpu_speed import PRECISIONS
    from rl_saliency.cli import train as train_cli

    assert train_cli.PRECISIONS == PRECISIONS


def test_visualize_cli_defaults_are_the_library_settings():
    """The CLI builds VisualizeSettings from its options: every field's default is the same in both."""
    import dataclasses

    from rl_saliency.cli import build_parser
    from rl_saliency.visualize.pipeline import VisualizeSettings

    args = vars(build_parser().parse_args(["visualize", "--model", "m.zip", "--out", "o"]))
    for field in dataclasses.fields(VisualizeSettings):
        assert field.name in args, field.name
        if field.default is not dataclasses.MISSING:
            assert args[field.name] == field.default, field.name


def test_moved_commands_import_no_torch():
    moved = ", ".join(f"rl_saliency.cli.{name}" for name in MOVED)
    code = (f"import sys; import {moved}; "
            "print(sorted(m for m in ('torch', 'stable_baselines3') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_argparse_only_in_the_command_layer():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("cli/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) else [])
            if "argparse" in names:
                offenders.append(relative)
    assert offenders == []


@pytest.mark.parametrize("argv", [["--episodes", "0"], ["--episodes", "-3"], ["--n-envs", "0"],
                                  ["--max-frames", "-1"]])
def test_evaluate_bad_count_is_one_line_exit_2(tmp_path, capsys, argv):
    assert main(["evaluate", "--model", str(tmp_path / "m.zip"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "must be an integer >= 1" in err


def test_evaluate_missing_model_is_one_line_exit_2(tmp_path, capsys):
    assert main(["evaluate", "--model", str(tmp_path / "nope.zip"), "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err


def test_evaluate_bad_device_is_exit_2(tmp_path):
    with pytest.raises(SystemExit) as exited:
        main(["evaluate", "--model", str(tmp_path / "m.zip"), "--device", "tpu"])
    assert exited.value.code == 2


def test_evaluate_spells_both_policy_modes():
    parser = __import__("rl_saliency.cli", fromlist=["build_parser"]).build_parser()
    base = ["evaluate", "--model", "m.zip"]
    assert parser.parse_args(base).deterministic is False
    assert parser.parse_args([*base, "--deterministic"]).deterministic is True
    assert parser.parse_args([*base, "--stochastic"]).deterministic is False
    assert parser.parse_args([*base, "--no-progress"]).progress is False


# Every command with a --model, its other required arguments, and one of its counts (issue 12: one parametrised
# test over the commands).
MODEL_COMMANDS = {
    "evaluate": ([], "--episodes", None),
    "sanity": (["--out", "{tmp}/out"], "--n-obs", "--methods"),
    "render": (["--out", "{tmp}/v.mp4"], None, "--method"),
    "quickstart": (["--out", "{tmp}/q"], "--episodes", "--methods"),
    "gaze-eval": (["--out", "{tmp}/g", "--atari-head", "{tmp}"], None, "--method"),
    "trust": (["--out", "{tmp}/t"], "--n-obs", "--methods"),
    "visualize": (["--out", "{tmp}/v"], "--n-obs", None),
}


def _argv(command, tmp_path, *extra):
    required = [a.format(tmp=tmp_path) for a in MODEL_COMMANDS[command][0]]
    return [command, "--model", str(tmp_path / "nope.zip"), *required, *extra]


def _one_line_error(capsys, command):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"rl-saliency {command}: error:"), err
    return err


@pytest.mark.parametrize("command", sorted(MODEL_COMMANDS))
def test_missing_model_is_one_line_exit_2(command, tmp_path, capsys):
    assert main(_argv(command, tmp_path)) == 2
    assert "nope.zip" in _one_line_error(capsys, command)


@pytest.mark.parametrize("command", sorted(c for c, (_, count, _) in MODEL_COMMANDS.items() if count))
@pytest.mark.parametrize("value", ["0", "-2"])
def test_bad_count_is_one_line_exit_2(command, value, tmp_path, capsys):
    count = MODEL_COMMANDS[command][1]
    assert main(_argv(command, tmp_path, count, value)) == 2
    assert f"{count} must be an integer >= 1" in _one_line_error(capsys, command)


@pytest.mark.parametrize("command", sorted(c for c, (_, _, method) in MODEL_COMMANDS.items() if method))
def test_unknown_method_is_one_line_exit_2(command, tmp_path, capsys):
    assert main(_argv(command, tmp_path, MODEL_COMMANDS[command][2], "nosuch")) == 2
    assert "unknown saliency method 'nosuch'" in _one_line_error(capsys, command)


@pytest.mark.parametrize("command", sorted(c for c in MODEL_COMMANDS if c != "quickstart"))
def test_bad_device_is_exit_2(command, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(_argv(command, tmp_path, "--device", "tpu"))
    assert exited.value.code == 2
    assert "invalid choice: 'tpu'" in capsys.readouterr().err


# Every command with a progress bar, with its required arguments: one spelling, --no-progress -> progress False.
PROGRESS_COMMANDS = {
    "train": [], "evaluate": ["--model", "m.zip"], "gaze-eval": ["--model", "m.zip", "--atari-head", "d", "--out", "o"],
    "render": ["--model", "m.zip"], "sanity": ["--model", "m.zip", "--out", "o"],
    "trust": ["--model", "m.zip", "--out", "o"], "visualize": ["--model", "m.zip", "--out", "o"],
    "quickstart": [], "sweep": ["--grid", "grid.yaml", "--out", "o"],
}


@pytest.mark.parametrize("command", sorted(PROGRESS_COMMANDS))
def test_every_command_spells_no_progress_the_same_way(command):
    from rl_saliency.cli import build_parser

    parser = build_parser()
    argv = [command, *PROGRESS_COMMANDS[command]]
    assert parser.parse_args(argv).progress is True
    assert parser.parse_args([*argv, "--no-progress"]).progress is False


def _count_options() -> list[tuple[str, str]]:
    """Every (command, count option) registered with options.add_count, read from the parser itself."""
    from rl_saliency.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    found = []
    for command, parser in subparsers.choices.items():
        found += [(command, flag) for _, flag in parser.get_default("_counts") or ()]
    return sorted(found)


def test_the_count_options_are_many_and_span_the_commands():
    commands = {command for command, _ in _count_options()}
    assert {"train", "evaluate", "sanity", "quickstart", "sweep"} <= commands and len(_count_options()) >= 8


@pytest.mark.parametrize(("command", "flag"), _count_options())
def test_every_count_option_of_every_command_refuses_zero_in_one_line(command, flag, tmp_path, capsys):
    """The check runs before the command (rl_saliency.cli.main), so any other argument may be a placeholder."""
    required = {**PROGRESS_COMMANDS, **{c: [a.format(tmp=tmp_path) for a in MODEL_COMMANDS[c][0]]
                                        for c in MODEL_COMMANDS}}
    argv = [command, *required.get(command, [])]
    if command in MODEL_COMMANDS:
        argv[1:1] = ["--model", str(tmp_path / "nope.zip")]
    assert main([*argv, flag, "0"]) == 2
    assert f"{flag} must be an integer >= 1, got 0" in _one_line_error(capsys, command)


def test_train_precision_option():
    from rl_saliency.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["train"]).precision is None  # the CPU's default (cpu_speed.default_precision)
    assert parser.parse_args(["train", "--precision", "fp32"]).precision == "fp32"
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["train", "--precision", "fp16"])
    assert exited.value.code == 2
