"""``rl-saliency train``: train an agent spec on an Atari game with SB3, resumably.

A run folder holds ``config.yaml`` (everything needed to rebuild the run), ``checkpoints/`` (written
atomically at rollout boundaries every ``checkpoint_freq`` steps, and when interrupted by Ctrl-C or
SIGTERM), ``metrics.csv`` (one row per rollout) and, at the end, ``model.zip``. ``--resume`` continues
from the newest intact checkpoint towards the same total budget: the same series of rollouts, linear
schedules and metrics rows as a run that was never stopped. One process at a time writes a run folder.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from tqdm.auto import tqdm

from rl_saliency import io
from rl_saliency.agents.cpu_speed import check_precision, speed_up
from rl_saliency.agents.spec import DEFAULT_SPEC, AgentSpec, load_spec, spec_from_dict
from rl_saliency.envs import BACKENDS, make_atari_vec_env, resolve_game
from rl_saliency.errors import DataError, OptionError, SpecError, Terminated, check_count
from rl_saliency.models import load_model, resolve_device, rollout_steps

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.zip"
METRICS_FILE = "metrics.csv"
CHECKPOINT_DIR = "checkpoints"
RESUME_SUFFIX = ".resume.json"  # next to each checkpoint: rollouts done and the log values not yet in metrics.csv
MAX_TIMESTEPS = 10**9  # about 3.5 days at the fastest throughput measured here (3.3k steps/s, H100, 64 envs)
_CKPT_RE = re.compile(r"ckpt_(\d+)_steps\.zip$")
# what a checkpoint restores besides the weights and the optimizer: counters and the episode statistics
_RESTORED_ATTRS = ("num_timesteps", "_n_updates", "_episode_num", "ep_info_buffer", "ep_success_buffer",
                   "_current_progress_remaining", "exploration_rate")


class MetricsWriter(KVWriter):
    """SB3 logger output that keeps one row per dump and rewrites ``metrics.csv`` atomically.

    Rows are few (one per rollout), so rewriting keeps the file valid even as new keys appear, and a
    resumed run keeps the rows written before its checkpoint.
    """

    def __init__(self, path: Path, rows: list[dict[str, Any]] | None = None, iteration_offset: int = 0):
        self.path = path
        self.rows = rows or []
        self.iteration_offset = iteration_offset  # rollouts done before a resume: time/iterations goes on counting

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        row = _scalars(key_values)
        if "time/iterations" in row:
            row["time/iterations"] += self.iteration_offset
        self.rows.append(row)
        io.write_csv(self.path, pd.DataFrame(self.rows))

    def close(self) -> None:
        pass


def _scalars(values: dict[str, Any]) -> dict[str, Any]:
    """The numbers and strings of a log record, as plain Python values."""
    kept = {k: v for k, v in values.items()  # not images, nor histograms (arrays) logged for TensorBoard
            if isinstance(v, (int, float, str)) or (hasattr(v, "item") and getattr(v, "ndim", 0) == 0)}
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in kept.items()}


class CheckpointAndProgress(BaseCallback):
    """Checkpoints at rollout boundaries, every ``freq`` agent steps (atomically, keeping the last two) and on an
    interrupt; a progress bar.

    A checkpoint is the state at the start of a rollout: weights, optimizer, step count and episode statistics,
    plus (in ``<ckpt>.resume.json``) the rollouts done and the log values of the last update, which SB3 writes to
    metrics.csv only after the next rollout. An interrupt mid-rollout or mid-update saves that same state from
    a copy kept in memory (the steps of the unfinished rollout are not kept: PPO had not learnt from them), so a
    resumed run continues the same series of rollouts and reaches exactly the budget an unstopped run reaches.
    The state of stateful callbacks (``state_savers``, e.g. the novelty explorer) is saved as it is then.
    """

    def __init__(self, run_dir: Path, freq: int, total: int, state_savers: list[Any], progress: bool = True,
                 iterations_done: int = 0):
        super().__init__()
        self.ckpt_dir = run_dir / CHECKPOINT_DIR
        self.freq = max(int(freq), 1)
        self.total = total
        self.state_savers = state_savers
        self.progress = progress
        self.iterations_done = iterations_done  # rollouts done before this learn() call (resume)
        self.bar: tqdm | None = None
        self._last_saved = 0
        self._rollouts = 0  # rollouts started in this learn() call
        self._boundary: dict[str, Any] | None = None
        self._record: tuple[int, dict[str, Any]] | None = None  # (rollouts done, pending log) of the state now

    def _on_training_start(self) -> None:
        self._last_saved = self.num_timesteps
        self.bar = tqdm(total=self.total, initial=self.num_timesteps, unit="step", disable=not self.progress,
                        desc="train", dynamic_ncols=True)

    def _on_rollout_start(self) -> None:
        self._boundary = self._snapshot()
        self._record = (self._boundary["iterations"], self._boundary["log"])
        if self.model.num_timesteps - self._last_saved >= self.freq:
            self.save()  # the current state is the boundary's
        self._rollouts += 1

    def _on_step(self) -> bool:
        if self.bar is not None:
            self.bar.update(self.model.num_timesteps - self.bar.n)
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self._record = (self.iterations_done + self._rollouts, _scalars(self.model.logger.name_to_value))

    def _snapshot(self) -> dict[str, Any]:
        model = self.model
        optimizer = getattr(model.policy, "optimizer", None)
        return {"iterations": self.iterations_done + self._rollouts, "log": _scalars(model.logger.name_to_value),
                "policy": {k: v.detach().clone() for k, v in model.policy.state_dict().items()},
                "optimizer": copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None,
                "attrs": {k: copy.deepcopy(getattr(model, k)) for k in _RESTORED_ATTRS if hasattr(model, k)}}

    def rewind(self) -> None:
        """After an interrupt: put the model back in the state at the start of the rollout under way (its steps
        were not learnt from; an update may have been cut short), so that ``save`` checkpoints that state."""
        if self._boundary is None:
            return
        model, state = self.model, self._boundary
        model.policy.load_state_dict(state["policy"])
        if state["optimizer"] is not None:
            model.policy.optimizer.load_state_dict(state["optimizer"])
        for key, value in state["attrs"].items():
            setattr(model, key, value)
        self._record = (state["iterations"], state["log"])

    def save(self) -> Path:
        """Checkpoint the model as it is now (at a rollout boundary, at the end, or rewound after an interrupt)."""
        iterations, log = self._record or (self.iterations_done, _scalars(self.model.logger.name_to_value))
        return self._write(iterations, log)

    def _write(self, iterations: int, log: dict[str, Any]) -> Path:
        """Write ``ckpt_<steps>_steps.zip`` (plus its resume record and the state of stateful callbacks), then
        prune old ones."""
        steps = self.model.num_timesteps
        path = self.ckpt_dir / f"ckpt_{steps}_steps.zip"
        io.atomic_write(path, lambda tmp: self.model.save(tmp))
        for saver in self.state_savers:
            with io.atomic_path(path.with_suffix(f".{type(saver).__name__}.pt")) as tmp:
                saver.save_state(tmp)
        io.write_json(path.with_suffix(RESUME_SUFFIX), {"num_timesteps": steps, "iterations": iterations, "log": log})
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
    """On the CPU, keep a NatureCNN policy's conv weights and inputs channels-last (oneDNN's fast layout).

    Same numbers up to float rounding. Measured side by side (``benchmarks/channels_last.py``, docs/benchmarks.md):
    1.17x faster PPO updates for NatureCNN, but 0.70x for Sparse FLS (its 7x7 attention convs and the flatten
    of a channels-last tensor cost more than they save), so only NatureCNN gets it. Checkpoints and
    ``model.zip`` load into ordinary models as before.
    """
    import torch
    from stable_baselines3.common.torch_layers import NatureCNN

    if model.device.type != "cpu" or not isinstance(getattr(model.policy, "features_extractor", None), NatureCNN):
        return
    model.policy.to(memory_format=torch.channels_last)
    for module in model.policy.modules():
        if isinstance(module, BaseFeaturesExtractor) and not getattr(module, "_channels_last_hook", False):
            module.register_forward_pre_hook(
                lambda _m, args: (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
                if args and getattr(args[0], "dim", lambda: 0)() == 4 else None)
            module._channels_last_hook = True


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` strings (values parsed as YAML) -> hyperparameter overrides."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SpecError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _unreadable_checkpoint(path: Path) -> str | None:
    """Why a checkpoint zip cannot be resumed from (truncated, corrupt, missing entries), or None if intact."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"{type(err).__name__}: {err}"
    if bad is not None:
        return f"entry {bad} fails its CRC check"
    missing = {"data", "policy.pth"} - names
    return f"no {', '.join(sorted(missing))} entry" if missing else None


def _set_aside(path: Path, label: str) -> Path:
    """Rename ``path`` to ``<label>-<name>`` next to it (numbered if taken): kept for inspection, never read."""
    aside = path.with_name(f"{label}-{path.name}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{label}{n}-{path.name}")
    os.replace(path, aside)
    return aside


def _newest_intact_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest checkpoint that is a whole zip; newer broken ones are set aside with a warning."""
    for path in reversed(list_checkpoints(ckpt_dir)):
        problem = _unreadable_checkpoint(path)
        if problem is None:
            return path
        aside = _set_aside(path, "unreadable")
        for sibling in path.parent.glob(path.stem + ".*"):
            _set_aside(sibling, "unreadable")
        print(f"warning: checkpoint {path} is unreadable ({problem}); kept it as {aside.name} and fell back to the "
              f"checkpoint before it", file=sys.stderr)
    return None


def _read_resume_record(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint.with_suffix(RESUME_SUFFIX)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _metrics_before(path: Path, steps: int) -> list[dict[str, Any]]:
    """The rows of ``metrics.csv`` up to ``steps`` (a resume writes the later ones again). A file that cannot be
    read is set aside with a warning and the run starts a new one."""
    if not path.exists():
        return []
    try:
        done = pd.read_csv(path)
        logged = pd.to_numeric(done["time/total_timesteps"], errors="raise")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, KeyError, ValueError,
            TypeError) as err:
        aside = _set_aside(path, "unreadable")
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        print(f"warning: {path} cannot be read ({reason}); kept it as {aside.name} and started a new one",
              file=sys.stderr)
        return []
    return done[logged <= steps].to_dict("records")


def train(spec: AgentSpec | str | Path = DEFAULT_SPEC, game: str = "breakout", timesteps: int | None = None,
          out: str | Path | None = None, seed: int = 0, n_envs: int | None = None, backend: str = "ale",
          device: str | None = None, resume: bool = False, checkpoint_freq: int | None = None,
          hyperparams: dict[str, Any] | None = None, progress: bool = True, verbose: int = 0,
          tensorboard: str | Path | None = None, precision: str | None = None) -> Path:
    """Train ``spec`` on ``game``; returns the run folder (holding ``model.zip``).

    ``tensorboard``: a folder for TensorBoard event files (``<it>/<run folder name>``): SB3's scalars and the
    agent's saliency over fixed observations (``render/tensorboard.py``; the spec's ``tensorboard:`` section sets
    what and how often, and alone logs to ``<run>/tensorboard``). On ``resume`` the run's own setting unless given.

    ``device``: ``auto`` (default for a new run; config.yaml records what it chose), ``cpu`` or ``cuda`` (refused
    where there is none); on ``resume`` the run's own setting unless given. The run folder is locked while
    training: a second writer is refused with the first one's pid and command.

    ``precision`` (CPU only, ``agents/cpu_speed.py``): ``bf16`` autocast of the features extractor (about 2x faster
    Sparse FLS updates where the CPU has native bf16; the default there, unless ``RL_SALIENCY_CPU_PRECISION=fp32``)
    or ``fp32``; config.yaml records it and ``resume`` keeps the run's own unless given.
    """
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
        device = resolve_device(device or config.get("device_requested") or config["device"])
        tensorboard = tensorboard or config.get("tensorboard")
        previous = config.get("cpu_precision", "fp32")  # runs from before the setting: float32
        config["cpu_precision"] = check_precision(precision, device) if precision else previous
    else:
        spec = spec if isinstance(spec, AgentSpec) else load_spec(spec)
        if hyperparams:
            spec.hyperparams.update(hyperparams)
        spec.parsed_hyperparams()  # unknown names and malformed schedules fail before anything is written
        game_obj = resolve_game(game)
        # bad counts fail here, before the run folder gets a config.yaml
        timesteps = check_count(timesteps if timesteps is not None else spec.n_timesteps, "--timesteps",
                                maximum=MAX_TIMESTEPS)
        n_envs = check_count(n_envs if n_envs is not None else spec.n_envs, "--n-envs")
        checkpoint_freq = check_count(checkpoint_freq if checkpoint_freq is not None else max(timesteps // 10, 1),
                                      "--checkpoint-freq")
        if not 0 <= seed < 2**32:
            raise OptionError(f"--seed must be between 0 and 2**32 - 1, got {seed}")
        if backend not in BACKENDS:
            raise OptionError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        requested = device or "auto"
        device = resolve_device(requested)
        run_dir = run_dir or Path("runs") / f"{spec.name}_{game_obj.name}_s{seed}"
        config = {"game": game_obj.name, "gym_id": game_obj.gym_id, "seed": seed, "timesteps": timesteps,
                  "n_envs": n_envs, "backend": backend, "device": device, "device_requested": requested,
                  "checkpoint_freq": checkpoint_freq, "algo": spec.algo,
                  "spec_path": spec.path, "spec": spec.to_dict()}
        if tensorboard:
            config["tensorboard"] = str(tensorboard)
        config["cpu_precision"] = check_precision(precision, device)
    tb_dir = _tensorboard_dir(spec, tensorboard, run_dir)  # a bad tensorboard: section fails before anything
    with io.output_lock(run_dir):
        if not resume:
            if (run_dir / MODEL_FILE).exists() or list_checkpoints(run_dir / CHECKPOINT_DIR):
                raise FileExistsError(f"run folder {run_dir} already holds a run; use --resume or another --out")
            io.write_yaml(run_dir / CONFIG_FILE, config)
        return _train_locked(run_dir, config, spec, device, resume, progress, verbose, tb_dir)


def _tensorboard_dir(spec: AgentSpec, tensorboard: str | Path | None, run_dir: Path) -> Path | None:
    """Where this run's TensorBoard event files go: ``<--tensorboard>/<run name>``, else the spec section's
    ``dir``, else ``<run>/tensorboard`` when the spec has a ``tensorboard:`` section; None: no TensorBoard."""
    section = getattr(spec, "tensorboard", None)
    if tensorboard is None and section is None:
        return None
    from rl_saliency.render.tensorboard import check_config, tensorboard_available

    settings = check_config(section, f"agent spec {spec.path or spec.name}: tensorboard")
    base = tensorboard or settings["dir"]
    if not tensorboard_available():
        raise OptionError("TensorBoard logging needs the tensorboard package: pip install -e \".[tensorboard]\"")
    return Path(base) / run_dir.name if base else run_dir / "tensorboard"


def _train_locked(run_dir: Path, config: dict[str, Any], spec: AgentSpec, device: str, resume: bool,
                  progress: bool, verbose: int, tb_dir: Path | None = None) -> Path:
    venv = make_atari_vec_env(config["game"], config["n_envs"], seed=config["seed"], backend=config["backend"])
    state_savers: list[Any] = []
    callbacks: list[BaseCallback] = []
    if tb_dir is not None:  # saliency images every N updates, the explorer's intrinsic-reward histogram
        from rl_saliency.render.tensorboard import SaliencyTensorBoardCallback

        callbacks.append(SaliencyTensorBoardCallback.from_config(getattr(spec, "tensorboard", None), obs_dir=tb_dir))
    if spec.explorer:
        from rl_saliency.agents.exploration import make_explorer

        venv, explorer_callback = make_explorer(spec.explorer, venv, seed=config["seed"])
        callbacks.append(explorer_callback)
        state_savers.append(explorer_callback)
    venv = spec.wrap_env(venv)

    latest = _newest_intact_checkpoint(run_dir / CHECKPOINT_DIR) if resume else None
    metrics_rows: list[dict[str, Any]] = []
    iterations_done, pending_log = 0, {}
    if latest is not None:
        model = load_model(latest, algo=spec.algo, device=device)
        model.set_env(venv)
        for saver in state_savers:
            state = latest.with_suffix(f".{type(saver).__name__}.pt")
            if state.exists():
                saver.load_state(state)
        record = _read_resume_record(latest)
        per_rollout = rollout_steps(model)
        if not record and model.num_timesteps % per_rollout:
            # saved mid-rollout by an earlier version: its weights are those of the rollout's start
            model.num_timesteps -= model.num_timesteps % per_rollout
        iterations_done = int(record.get("iterations", model.num_timesteps // per_rollout))
        pending_log = record.get("log") or {}
        metrics_rows = _metrics_before(run_dir / METRICS_FILE, model.num_timesteps)
        print(f"resuming {run_dir} from {latest.name} ({model.num_timesteps}/{config['timesteps']} steps)",
              file=sys.stderr)
    else:
        if resume and (run_dir / METRICS_FILE).exists():  # no checkpoint to continue: the run starts over
            _set_aside(run_dir / METRICS_FILE, "replaced")
        model = spec.build_model(venv, seed=config["seed"], device=device, verbose=verbose)
    use_channels_last(model)
    # on the CPU: bf16 autocast or a channels-last trunk. Torch keeps its own thread count: on the idle 2-core
    # machine 2 threads beat 1 (281 vs 190 steps/s for Sparse FLS in bf16, docs/benchmarks.md); fewer threads only
    # paid on a machine shared with other jobs, where OMP_NUM_THREADS=1 is the user's lever.
    speed_up(model, config.get("cpu_precision", "fp32"), env_threads=None)
    if (run_dir / MODEL_FILE).exists() and model.num_timesteps >= config["timesteps"]:
        print(f"{run_dir} is already trained to {config['timesteps']} steps", file=sys.stderr)
        venv.close()
        return run_dir

    outputs: list[KVWriter] = [MetricsWriter(run_dir / METRICS_FILE, metrics_rows, iterations_done)]
    if tb_dir is not None:  # SB3's scalars, the saliency images and the explorer's statistics
        from stable_baselines3.common.logger import TensorBoardOutputFormat

        outputs.append(TensorBoardOutputFormat(str(tb_dir)))
    model.set_logger(Logger(str(run_dir), outputs))
    for key, value in pending_log.items():  # the last update's losses, written with the next rollout's row
        model.logger.record(key, value)
    checkpointer = CheckpointAndProgress(run_dir, config["checkpoint_freq"], config["timesteps"], state_savers,
                                         progress=progress, iterations_done=iterations_done)
    remaining = config["timesteps"] - model.num_timesteps
    per_rollout = rollout_steps(model)
    if remaining > 0 and remaining % per_rollout:
        end = model.num_timesteps + -(-remaining // per_rollout) * per_rollout
        print(f"note: {spec.algo.upper()} learns from whole rollouts of {per_rollout} steps ({config['n_envs']} envs); "
              f"the run ends at {end} steps, the first whole rollout past the budget of {config['timesteps']}",
              file=sys.stderr)
    try:
        if remaining > 0:
            model.learn(total_timesteps=remaining, callback=CallbackList([*callbacks, checkpointer]),
                        reset_num_timesteps=latest is None, log_interval=1)
    except KeyboardInterrupt as err:
        what = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
        if getattr(checkpointer, "model", None) is None:  # stopped while SB3 was still setting up: nothing new
            print(f"\n{what} before training started; continue with --resume", file=sys.stderr)
            raise
        checkpointer.rewind()
        path = checkpointer.save()
        print(f"\n{what}: saved {path} ({model.num_timesteps} steps, the start of the unfinished rollout); continue "
              f"with --resume", file=sys.stderr)
        raise
    finally:
        venv.close()
    if remaining > 0:  # else the checkpoint at the budget exists: only model.zip was missing
        checkpointer.save()
    io.atomic_write(run_dir / MODEL_FILE, lambda tmp: model.save(tmp))
    return run_dir
