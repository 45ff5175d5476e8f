"""``rl-saliency train``: train an agent spec on an Atari game with SB3, resumably.

A run folder holds ``config.yaml`` (everything needed to rebuild the run), ``checkpoints/`` (written
atomically every ``checkpoint_freq`` steps and when interrupted), ``metrics.csv`` (one row per
rollout) and, at the end, ``model.zip``. ``--resume`` continues from the last checkpoint towards the
same total budget; linear schedules continue where they stopped.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from tqdm.auto import tqdm

from rl_saliency import io
from rl_saliency.agents.spec import DEFAULT_SPEC, AgentSpec, load_spec, spec_from_dict
from rl_saliency.envs import BACKENDS, make_atari_vec_env, resolve_game
from rl_saliency.errors import DataError, OptionError, SpecError, check_count
from rl_saliency.models import load_model

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.zip"
METRICS_FILE = "metrics.csv"
CHECKPOINT_DIR = "checkpoints"
_CKPT_RE = re.compile(r"ckpt_(\d+)_steps\.zip$")


class MetricsWriter(KVWriter):
    """SB3 logger output that keeps one row per dump and rewrites ``metrics.csv`` atomically.

    Rows are few (one per rollout), so rewriting keeps the file valid even as new keys appear, and a
    resumed run keeps the rows written before its checkpoint.
    """

    def __init__(self, path: Path, rows: list[dict[str, Any]] | None = None):
        self.path = path
        self.rows = rows or []

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        row = {k: v for k, v in key_values.items() if isinstance(v, (int, float, str)) or hasattr(v, "item")}
        self.rows.append({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
        io.write_csv(self.path, pd.DataFrame(self.rows))

    def close(self) -> None:
        pass


class CheckpointAndProgress(BaseCallback):
    """Checkpoint every ``freq`` agent steps (atomically, keeping the last two) and show a progress bar."""

    def __init__(self, run_dir: Path, freq: int, total: int, state_savers: list[Any], progress: bool = True):
        super().__init__()
        self.ckpt_dir = run_dir / CHECKPOINT_DIR
        self.freq = max(int(freq), 1)
        self.total = total
        self.state_savers = state_savers
        self.progress = progress
        self.bar: tqdm | None = None
        self._last_saved = 0

    def _on_training_start(self) -> None:
        self._last_saved = self.num_timesteps
        self.bar = tqdm(total=self.total, initial=self.num_timesteps, unit="step", disable=not self.progress,
                        desc="train", dynamic_ncols=True)

    def _on_step(self) -> bool:
        if self.bar is not None:
            self.bar.update(self.model.num_timesteps - self.bar.n)
        if self.num_timesteps - self._last_saved >= self.freq:
            self.save()
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def save(self) -> Path:
        """Write ``ckpt_<steps>_steps.zip`` (plus the state of stateful callbacks), then prune old ones."""
        steps = self.model.num_timesteps
        path = self.ckpt_dir / f"ckpt_{steps}_steps.zip"
        io.atomic_write(path, lambda tmp: self.model.save(tmp))
        for saver in self.state_savers:
            with io.atomic_path(path.with_suffix(f".{type(saver).__name__}.pt")) as tmp:
                saver.save_state(tmp)
        self._last_saved = steps
        for old in list_checkpoints(self.ckpt_dir)[:-2]:
            for sibling in old.parent.glob(old.stem + ".*"):
                sibling.unlink()
        return path


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in ckpt_dir.glob("ckpt_*_steps.zip") if (m := _CKPT_RE.search(p.name))]
    return [p for _, p in sorted(found)]


def read_run_config(path: Path) -> dict[str, Any]:
    """A run folder's config.yaml, checked for what resuming needs."""
    config = io.read_yaml(path, "run config", DataError)
    required = ("game", "seed", "timesteps", "n_envs", "backend", "device", "checkpoint_freq", "spec")
    missing = [key for key in required if not isinstance(config, dict) or key not in config]
    if missing:
        raise DataError(f"run config {path} lacks {', '.join(missing)}; it was not written by rl-saliency train "
                        f"(start a new run with another --out)")
    return config


def use_channels_last(model: Any) -> None:
    """On the CPU, keep the policy's conv weights and inputs channels-last (oneDNN's fast layout).

    Same numbers up to float rounding; 1.15-1.35x faster PPO updates for NatureCNN on the 2-core CPU
    (``benchmarks/throughput.py``). Checkpoints and ``model.zip`` load into ordinary models as before.
    """
    import torch

    if model.device.type != "cpu":
        return
    model.policy.to(memory_format=torch.channels_last)
    for module in model.policy.modules():
        if isinstance(module, BaseFeaturesExtractor) and not getattr(module, "_channels_last_hook", False):
            module.register_forward_pre_hook(
                lambda _m, args: (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
                if args and getattr(args[0], "dim", lambda: 0)() == 4 else None)
            module._channels_last_hook = True


def _parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` strings (values parsed as YAML) -> hyperparameter overrides."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SpecError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def train(spec: AgentSpec | str | Path = DEFAULT_SPEC, game: str = "breakout", timesteps: int | None = None,
          out: str | Path | None = None, seed: int = 0, n_envs: int | None = None, backend: str = "ale",
          device: str = "auto", resume: bool = False, checkpoint_freq: int | None = None,
          hyperparams: dict[str, Any] | None = None, progress: bool = True, verbose: int = 0) -> Path:
    """Train ``spec`` on ``game``; returns the run folder (holding ``model.zip``)."""
    run_dir = Path(out) if out else None
    if resume:
        if run_dir is None or not (run_dir / CONFIG_FILE).exists():
            raise FileNotFoundError(f"cannot resume: no {CONFIG_FILE} in run folder {run_dir}")
        config = read_run_config(run_dir / CONFIG_FILE)
        spec = spec_from_dict(config["spec"], config.get("spec_path"))
        if timesteps is not None and int(timesteps) != config["timesteps"]:
            # the linear schedules are defined on the run's total budget: changing it mid-run would bend them
            raise SpecError(f"--resume continues {run_dir} to its budget of {config['timesteps']} steps; "
                            f"--timesteps {int(timesteps)} differs (start a new run for another budget)")
    else:
        spec = spec if isinstance(spec, AgentSpec) else load_spec(spec)
        if hyperparams:
            spec.hyperparams.update(hyperparams)
        spec.parsed_hyperparams()  # unknown names and malformed schedules fail before anything is written
        game_obj = resolve_game(game)
        # bad counts fail here, before the run folder gets a config.yaml
        timesteps = check_count(timesteps if timesteps is not None else spec.n_timesteps, "--timesteps")
        n_envs = check_count(n_envs if n_envs is not None else spec.n_envs, "--n-envs")
        checkpoint_freq = check_count(checkpoint_freq if checkpoint_freq is not None else max(timesteps // 10, 1),
                                      "--checkpoint-freq")
        if not 0 <= seed < 2**32:
            raise OptionError(f"--seed must be between 0 and 2**32 - 1, got {seed}")
        if backend not in BACKENDS:
            raise OptionError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        run_dir = run_dir or Path("runs") / f"{spec.name}_{game_obj.name}_s{seed}"
        config = {"game": game_obj.name, "gym_id": game_obj.gym_id, "seed": seed, "timesteps": timesteps,
                  "n_envs": n_envs, "backend": backend, "device": device,
                  "checkpoint_freq": checkpoint_freq, "algo": spec.algo,
                  "spec_path": spec.path, "spec": spec.to_dict()}
        if (run_dir / MODEL_FILE).exists() or list_checkpoints(run_dir / CHECKPOINT_DIR):
            raise FileExistsError(f"run folder {run_dir} already holds a run; use --resume or another --out")
        io.write_yaml(run_dir / CONFIG_FILE, config)

    venv = make_atari_vec_env(config["game"], config["n_envs"], seed=config["seed"], backend=config["backend"])
    state_savers: list[Any] = []
    callbacks: list[BaseCallback] = []
    if spec.explorer:
        from rl_saliency.agents.exploration import make_explorer

        venv, explorer_callback = make_explorer(spec.explorer, venv, seed=config["seed"])
        callbacks.append(explorer_callback)
        state_savers.append(explorer_callback)
    venv = spec.wrap_env(venv)

    checkpoints = list_checkpoints(run_dir / CHECKPOINT_DIR)
    metrics_rows: list[dict[str, Any]] = []
    if resume and checkpoints:
        latest = checkpoints[-1]
        model = load_model(latest, algo=spec.algo, device=config["device"])
        model.set_env(venv)
        for saver in state_savers:
            state = latest.with_suffix(f".{type(saver).__name__}.pt")
            if state.exists():
                saver.load_state(state)
        metrics_path = run_dir / METRICS_FILE
        if metrics_path.exists():
            done = pd.read_csv(metrics_path)
            if "time/total_timesteps" in done:
                done = done[done["time/total_timesteps"] <= model.num_timesteps]
            metrics_rows = done.to_dict("records")
        print(f"resuming {run_dir} from {latest.name} ({model.num_timesteps}/{config['timesteps']} steps)",
              file=sys.stderr)
    else:
        model = spec.build_model(venv, seed=config["seed"], device=config["device"], verbose=verbose)
    use_channels_last(model)
    if (run_dir / MODEL_FILE).exists() and model.num_timesteps >= config["timesteps"]:
        print(f"{run_dir} is already trained to {config['timesteps']} steps", file=sys.stderr)
        venv.close()
        return run_dir

    model.set_logger(Logger(str(run_dir), [MetricsWriter(run_dir / METRICS_FILE, metrics_rows)]))
    checkpointer = CheckpointAndProgress(run_dir, config["checkpoint_freq"], config["timesteps"], state_savers,
                                         progress=progress)
    remaining = config["timesteps"] - model.num_timesteps
    try:
        if remaining > 0:
            model.learn(total_timesteps=remaining, callback=CallbackList([*callbacks, checkpointer]),
                        reset_num_timesteps=not (resume and checkpoints), log_interval=1)
    except KeyboardInterrupt:
        path = checkpointer.save()
        print(f"\ninterrupted: saved {path}; continue with --resume", file=sys.stderr)
        raise
    finally:
        venv.close()
    checkpointer.save()
    io.atomic_write(run_dir / MODEL_FILE, lambda tmp: model.save(tmp))
    return run_dir


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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="run folder (default: runs/<agent>_<game>_s<seed>)")
    parser.add_argument("--n-envs", type=int, default=None, help="parallel envs (default: the spec's)")
    parser.add_argument("--backend", choices=BACKENDS, default="ale", help="env backend (default: ale)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--checkpoint-freq", type=int, default=None, help="steps between checkpoints "
                        "(default: a tenth of the budget)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a hyperparameter, e.g. --set n_steps=64 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    run_dir = train(args.agent, game=args.game, timesteps=args.timesteps,
                    out=args.out, seed=args.seed, n_envs=args.n_envs, backend=args.backend, device=args.device,
                    resume=args.resume, checkpoint_freq=args.checkpoint_freq,
                    hyperparams=_parse_overrides(args.overrides), progress=not args.no_progress)
    print(f"trained: {run_dir / MODEL_FILE}")
    return 0
