"""CPU speed settings for training: bf16 autocast of the features extractor, channels-last trunks, threads.

Measured side by side on the 2-core AMD EPYC sandbox (``benchmarks/pipeline.py``, docs/benchmarks.md, section
"Training pipeline: this package vs SB3's stock make_atari_env"): PPO's minibatch update is where Atari training
spends its time on the CPU, and almost all of it is in convolutions. On a CPU with native bf16 dot products
(``avx512_bf16`` or ``amx_bf16``) a Sparse FLS update runs about 2x faster in bf16; no float32 reformulation of the
FLS module beat the plain convolutions (im2col + one GEMM: 1.4x slower).

``speed_up(model, precision, env_threads=...)`` changes a built SB3 model in place, for this process only (nothing
of it is saved: checkpoints and ``model.zip`` load into ordinary float32 models):

- ``precision="bf16"``: the features extractor's forward runs under ``torch.autocast("cpu", bfloat16)`` in
  rollouts and updates alike (the same function in both, so PPO's ratio starts at 1), and returns float32
  features, so the action and value heads, the losses, the gradients' accumulation and Adam stay float32; the
  weights stay float32 (autocast casts copies). This changes the numbers (bf16 keeps 8 bits of mantissa):
  ``precision="fp32"`` turns it off. Only where the CPU has native bf16 (else it would be emulated, slower).
- a trunk (``extractor.trunk``, the Nature convolutions of the attention extractors) in channels-last memory
  with its output turned back to the default layout for the attention module (channels-last helps the trunk's
  strided convolutions, but makes the 7x7 attention convolutions and the flatten slower). Same numbers up to
  float rounding.
- torch threads (only when ``env_threads`` is given, which ``rl-saliency train`` does not do): one core per env
  thread of the ale backend, the rest (at least 1) to torch (``training_threads``), unless ``OMP_NUM_THREADS`` is
  set; the same numbers. That paid only on a machine shared with other jobs; on the idle 2-core machine torch's
  own 2 threads were 1.48x faster (docs/benchmarks.md), so training leaves the count alone.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import torch
from torch import nn

__all__ = ["PRECISIONS", "channels_last_trunk", "check_precision", "cpu_has_native_bf16", "default_precision",
           "speed_up", "training_threads"]

PRECISIONS = ("bf16", "fp32")
PRECISION_ENV = "RL_SALIENCY_CPU_PRECISION"  # fp32 turns bf16 autocast off by default for `rl-saliency train`


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 dot products natively (``avx512_bf16`` or AMX); else bf16 is emulated."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & flags) and torch.backends.mkldnn.is_available()


def default_precision() -> str:
    """``bf16`` where the CPU has native bf16, unless ``RL_SALIENCY_CPU_PRECISION=fp32`` is set."""
    wanted = os.environ.get(PRECISION_ENV, "").strip().lower()
    if wanted and wanted not in PRECISIONS:
        raise ValueError(f"{PRECISION_ENV} must be one of {', '.join(PRECISIONS)}, got {wanted!r}")
    if wanted == "fp32":
        return "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def check_precision(precision: str | None, device: str = "cpu") -> str:
    """The precision a run on ``device`` uses: ``precision`` checked (an OptionError names the choices), None:
    ``default_precision()``; ``fp32`` off the CPU (these settings are for the CPU only)."""
    from rl_saliency.errors import OptionError

    if precision is not None and precision not in PRECISIONS:
        raise OptionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if str(device) != "cpu":
        return "fp32"
    return precision or default_precision()


def _bf16_forward(module: nn.Module) -> None:
    """Run ``module.forward`` under bf16 autocast, returning float32 (and a float32 ``last_attention``)."""
    if getattr(module, "_bf16_autocast", False):
        return
    inner = module.forward

    def forward(*args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = inner(*args, **kwargs)
        attention = getattr(module, "last_attention", None)
        if isinstance(attention, torch.Tensor) and attention.dtype != torch.float32:
            module.last_attention = attention.float()
        return out.float()

    module.forward = forward
    module._bf16_autocast = True


def _measured_extractors() -> tuple[type, ...]:
    """The extractors these settings were measured on: NatureCNN and the attention extractors (FLS, DAQN, RS-PPO);
    others (the saccader's hard attention) keep float32."""
    from stable_baselines3.common.torch_layers import NatureCNN

    from rl_saliency.agents.extractors import AttentionExtractor

    return (NatureCNN, AttentionExtractor)


def channels_last_trunk(extractor: nn.Module) -> bool:
    """Put ``extractor.trunk`` (the Nature convolutions, 84x84 -> 7x7) in channels-last memory: its input is made
    channels-last, its output contiguous again. False where the extractor has no such trunk (the dense FLS's
    stride-1 trunk was not measured)."""
    trunk = getattr(extractor, "trunk", None)
    if not isinstance(trunk, nn.Sequential) or getattr(trunk, "_channels_last_trunk", False):
        return False
    first = trunk[0] if len(trunk) else None
    if not isinstance(first, nn.Conv2d) or first.stride != (4, 4):
        return False
    trunk.to(memory_format=torch.channels_last)
    trunk.register_forward_pre_hook(
        lambda _m, args: (args[0].contiguous(memory_format=torch.channels_last), *args[1:]))
    trunk.register_forward_hook(lambda _m, _args, out: out.contiguous())
    trunk._channels_last_trunk = True
    return True


def training_threads(env_threads: int) -> int:
    """Torch threads for training beside ``env_threads`` busy env threads: one core each, the rest to torch (at
    least 1). The ale backend steps every env on its own thread; with 8 envs on 2 cores, 2 torch threads ran
    PPO 3-11x slower than 1 (the threads oversubscribe the cores; ``benchmarks/pipeline.py``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - int(env_threads))


def speed_up(model: Any, precision: str | None = None, trunk_channels_last: bool | None = None,
             env_threads: int | None = None) -> dict[str, Any]:
    """Apply the CPU speed settings to a built SB3 model (on the CPU only); returns what was applied.

    ``precision``: ``bf16`` or ``fp32``; None: ``default_precision()``. ``bf16`` where the CPU has no native bf16
    falls back to ``fp32`` (emulated bf16 is slower than float32). ``trunk_channels_last``: None: only in float32
    (under bf16 autocast the channels-last trunk was measured slightly slower, 0.97x per update).
    ``env_threads``: the env backend's own threads (``n_envs`` for the ale backend): torch gets
    ``training_threads(env_threads)`` (process-wide), unless ``OMP_NUM_THREADS`` is set (the user's choice);
    None leaves the thread count alone.
    """
    precision = precision or default_precision()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    applied: dict[str, Any] = {"precision": "fp32", "trunk_channels_last": False}
    if getattr(model, "device", torch.device("cpu")).type != "cpu":
        return applied
    extractors = [m for m in model.policy.modules() if isinstance(m, _measured_extractors())]
    if precision == "bf16" and cpu_has_native_bf16():
        for extractor in extractors:
            _bf16_forward(extractor)
        applied["precision"] = "bf16"
    if trunk_channels_last is None:
        trunk_channels_last = applied["precision"] == "fp32"
    if trunk_channels_last:
        applied["trunk_channels_last"] = any([channels_last_trunk(e) for e in extractors])
    if env_threads is not None and not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(training_threads(env_threads))
        applied["torch_threads"] = torch.get_num_threads()
    return applied
