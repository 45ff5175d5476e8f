"""Perturbation saliency as one family, on the saliency contract (``saliency/base.py``).

A mask M on a grid of centres blends the observation with a fill, I' = I (1 - M) + fill(I) M, and a score
compares the policy's outputs on I and I'. Options, combined freely in one batched implementation:

- ``mask``: ``"gaussian"`` (a blob of peak 1 and std ``sigma``, Greydanus et al. 2018) or ``"square"`` (a
  ``size`` x ``size`` occluder); centres every ``stride`` pixels, the last row/column included.
- ``fill``: ``"blur"`` (the frame blurred with ``blur_sigma``, computed once per observation) or ``"mean"``
  (each stacked frame's mean grey level).
- ``score``: ``"greydanus"``: 0.5 ||L(I) - L(I')||^2 of the logits (``target="logits"``), the value
  (``"value"``) or one action's logit; ``"action"``: the change of the chosen action's log-probability
  log pi(a|I) - log pi(a|I') (DQN: its Q-value), action-specific as Huber et al. 2022 recommend; ``"sarfa"``:
  Puri et al. 2020, 2 K dP / (K + dP) with dP = max(0, P(I, a) - P(I', a)) and K = 1 / (1 + KL(P_rem(I') ||
  P_rem(I))), P the softmax of the action scores and P_rem that of the other actions.

Registered as ``perturbation`` (Greydanus: all logits), ``perturbation_action`` and ``sarfa``; every option can
be passed to any of them. Scores on the grid are upsampled bilinearly to 84x84.

Speed: the masks are separable (a row profile times a column profile) and a convolution is linear, so when a
policy feeds its observations (divided by 255) only to convolutions, the first convolution of every perturbed
copy is the clean frame's plus the convolution of fill-minus-frame times the mask, computed for all masks at
once from the kernel's patches (``FirstConvShortcut``, ~20x fewer operations than convolving every copy); the
rest of the network runs on those activations (channels-last). Whether a policy qualifies is checked once per
policy by comparing with a direct forward pass; otherwise the perturbed frames are built and run as they are.
``reference_score_grid`` is the earlier straightforward form, kept as the tests' oracle and the benchmark's
"before".
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from torch import nn

from rl_saliency.errors import OptionError
from rl_saliency.saliency.base import check_maps, register
from rl_saliency.saliency.methods import Target, _float_input, policy_outputs, resolve_target

MASKS = ("gaussian", "square")
FILLS = ("blur", "mean")
SCORES = ("greydanus", "action", "sarfa")


# ---------------------------------------------------------------------------------------------------------------
# Masks, fills, upsampling
# ---------------------------------------------------------------------------------------------------------------


def grid_centres(size: int, stride: int) -> np.ndarray:
    """Mask centres every ``stride`` pixels from 0, plus the last pixel, so the grid reaches the far edge
    (the original code left the last row/column of the score grid empty)."""
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise OptionError(f"perturbation stride must be an integer >= 1, got {stride!r}")
    centres = np.arange(0, size, stride)
    if centres[-1] != size - 1:
        centres = np.append(centres, size - 1)
    return centres


@lru_cache(maxsize=16)
def mask_profiles(size: int, stride: int, mask: str, width: float) -> tuple[np.ndarray, np.ndarray]:
    """(centres, profiles (len(centres), size) float64): the 1-D factor of every mask along one axis.

    ``gaussian``: exp(-(y - c)^2 / (2 width^2)); ``square``: 1 on ``width`` pixels around c (c - width // 2
    onwards), clipped at the edges. A 2-D mask is the outer product of a row and a column profile.
    """
    centres = grid_centres(size, stride)
    y = np.arange(size, dtype=np.float64)[None, :]
    c = centres[:, None].astype(np.float64)
    if mask == "gaussian":
        profiles = np.exp(-((y - c) ** 2) / (2.0 * width**2))
    elif mask == "square":
        start = c - int(width) // 2
        profiles = ((y >= start) & (y < start + int(width))).astype(np.float64)
    else:
        raise OptionError(f"perturbation mask must be one of {', '.join(MASKS)}, got {mask!r}")
    return centres, profiles


@lru_cache(maxsize=8)
def blob_masks(size: int, stride: int, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, masks (len(rows) * len(cols), size, size)): Gaussian blobs of peak 1 on the grid."""
    rows = cols = grid_centres(size, stride)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    masks = np.stack([np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2.0 * sigma**2)) for r in rows for c in cols])
    return rows, cols, masks.astype(np.float32)


def interpolation_matrix(centres: np.ndarray, size: int) -> np.ndarray:
    """(size, len(centres)) weights of linear interpolation from values at ``centres`` to every pixel
    (``np.interp`` as a matrix: constant beyond the first and last centre)."""
    eye = np.eye(len(centres))
    return np.stack([np.interp(np.arange(size), centres, eye[k]) for k in range(len(centres))], axis=1)


def interpolate_grid(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """Bilinear interpolation of a score grid sampled at (rows, cols) onto every pixel of a size x size map."""
    return upsample_grids(np.asarray(grid)[None], rows, cols, size)[0]


def upsample_grids(grids: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """(N, len(rows), len(cols)) score grids -> (N, size, size) float32 maps, bilinearly, all at once."""
    along_rows, along_cols = interpolation_matrix(rows, size), interpolation_matrix(cols, size)
    return np.einsum("yr,nrc,xc->nyx", along_rows, grids.astype(np.float64), along_cols).astype(np.float32)


def fill_frames(obs: torch.Tensor, fill: str, blur_sigma: float) -> torch.Tensor:
    """What a mask blends in: the frames blurred with ``blur_sigma`` (``blur``) or each stacked frame's mean
    (``mean``); same shape and dtype as ``obs`` (N, C, H, W)."""
    if fill == "blur":
        blurred = gaussian_filter(obs.cpu().numpy(), sigma=(0, 0, blur_sigma, blur_sigma))
        return torch.as_tensor(blurred, device=obs.device)
    if fill == "mean":
        return obs.mean(dim=(2, 3), keepdim=True).expand_as(obs).contiguous()
    raise OptionError(f"perturbation fill must be one of {', '.join(FILLS)}, got {fill!r}")


# ---------------------------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------------------------


def is_q_network(policy: BasePolicy) -> bool:
    """True for DQN-style policies, whose action scores are Q-values rather than logits."""
    return not isinstance(policy, ActorCriticPolicy) and getattr(policy, "q_net", None) is not None \
        and not callable(getattr(policy, "saliency_outputs", None))


def greydanus_score(clean: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """0.5 ||clean - perturbed||^2 over the last axis."""
    return 0.5 * (clean - perturbed).pow(2).sum(dim=-1)


def action_score(clean: torch.Tensor, perturbed: torch.Tensor, actions: torch.Tensor,
                 q_values: bool = False) -> torch.Tensor:
    """s(I) - s(I') of the chosen action: its log-probability (log-softmax of the logits) or, for a Q-network,
    its Q-value. Positive where the perturbation takes support away from the action."""
    if not q_values:
        clean, perturbed = F.log_softmax(clean, dim=-1), F.log_softmax(perturbed, dim=-1)
    index = actions.long()[:, None]
    return (clean.gather(1, index) - perturbed.gather(1, index)).squeeze(1)


def sarfa_score(clean: torch.Tensor, perturbed: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """SARFA (Puri et al. 2020) from action scores (logits or Q-values) on I and I' and the chosen action:
    2 K dP / (K + dP), dP = max(0, P(I, a) - P(I', a)), K = 1 / (1 + KL(P_rem(I') || P_rem(I)))."""
    index = actions.long()[:, None]
    p_clean, p_pert = F.softmax(clean, dim=-1), F.softmax(perturbed, dim=-1)
    d_p = (p_clean.gather(1, index) - p_pert.gather(1, index)).squeeze(1).clamp_min(0.0)
    # the other actions renormalised = the softmax over their scores alone
    chosen = torch.zeros_like(clean, dtype=torch.bool).scatter_(1, index, True)
    log_rem_clean = F.log_softmax(clean.masked_fill(chosen, float("-inf")), dim=-1)
    log_rem_pert = F.log_softmax(perturbed.masked_fill(chosen, float("-inf")), dim=-1)
    terms = log_rem_pert.exp() * (log_rem_pert - log_rem_clean)
    kl = terms.masked_fill(chosen, 0.0).sum(dim=-1).clamp_min(0.0)
    k = 1.0 / (1.0 + kl)
    return 2.0 * k * d_p / (k + d_p)


# ---------------------------------------------------------------------------------------------------------------
# Fast path: the first convolution from separable masks
# ---------------------------------------------------------------------------------------------------------------


def column_stage(conv: nn.Conv2d, delta: torch.Tensor, col_profiles: torch.Tensor) -> torch.Tensor:
    """First half of conv(delta * (row_r outer col_c)) for every column profile c (once per observation):
    T[p, u, c, q, o] = sum over input channels i and kernel columns v of weight[o, i, u, v] x
    delta[i, s p + u, s q + v] x col_c[s q + v] (padding included), as (P, kh, C * Q * O).

    delta (Cin, H, W); col_profiles (C, W)."""
    (ph, pw), (sh, sw) = conv.padding, conv.stride
    weight = conv.weight.to(delta.dtype)
    n_out, _, kh, kw = weight.shape
    cols = F.pad(col_profiles, (pw, pw)).unfold(1, kw, sw)  # (C, Q, kw)
    patches = F.pad(delta, (pw, pw, ph, ph)).unfold(1, kh, sh).unfold(2, kw, sw)  # (Cin, P, Q, kh, kw)
    n_p, n_q = patches.shape[1:3]
    n_c = len(cols)
    a = torch.einsum("oiuv,ipquv->qvupo", weight, patches).reshape(n_q, kw, kh * n_p * n_out)
    t = torch.bmm(cols.permute(1, 0, 2), a)  # (Q, C, kh * P * O): [q, c, u, p, o]
    return t.view(n_q, n_c, kh, n_p, n_out).permute(3, 2, 1, 0, 4).reshape(n_p, kh, n_c * n_q * n_out)


def row_stage(conv: nn.Conv2d, t: torch.Tensor, row_profiles: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """clean + conv(delta * (row_r outer col_c)) for every pair (r, c), row-major, then ``clean`` itself:
    (R * C + 1, O, P, Q) in channels-last memory. ``t``: ``column_stage``'s output; row_profiles (R, H); clean
    (O, P, Q), the convolution (with bias) of the unperturbed input."""
    ph, sh = conv.padding[0], conv.stride[0]
    n_out, n_p, n_q = clean.shape
    kh = t.shape[1]
    rows = F.pad(row_profiles, (ph, ph)).unfold(1, kh, sh)  # (R, P, kh)
    n_r, n_c = len(rows), t.shape[2] // (n_q * n_out)
    d = torch.bmm(rows.permute(1, 0, 2), t)  # (P, R, C * Q * O): [p, r, c, q, o]
    d = d.view(n_p, n_r, n_c, n_q, n_out).permute(1, 2, 0, 3, 4)  # [r, c, p, q, o], blocks of Q * O contiguous
    out = torch.empty(n_r * n_c + 1, n_p, n_q, n_out, dtype=d.dtype, device=d.device)
    torch.add(d, clean.permute(1, 2, 0), out=out[:-1].view(n_r, n_c, n_p, n_q, n_out))
    out[-1] = clean.permute(1, 2, 0)
    return out.permute(0, 3, 1, 2)


def _conv_ok(module: nn.Module) -> bool:
    return (type(module) is nn.Conv2d and module.groups == 1 and tuple(module.dilation) == (1, 1)
            and module.padding_mode == "zeros" and not isinstance(module.padding, str))


class FirstConvShortcut:
    """The first convolution(s) of a policy computed from separable masks; the rest of the network as usual.

    ``convs``: the convolutions that receive the observation (scaled by ``scale``, 1/255 for SB3 image
    policies) directly: one, or two when the actor and critic have their own extractors. While ``patched`` is
    active, each returns precomputed outputs instead of convolving its input, so the policy runs on a dummy
    input of 1x1 frames.
    """

    _checked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self, convs: list[nn.Conv2d], scale: float):
        self.convs = convs
        self.scale = scale
        self._local = threading.local()  # each thread's precomputed outputs (several threads share one policy)
        self._lock = threading.Lock()
        self._depth = 0  # nesting of ``patched``

    @classmethod
    def for_policy(cls, policy: BasePolicy, example: torch.Tensor) -> FirstConvShortcut | None:
        """The shortcut for ``policy`` if it gives the same outputs as a direct forward pass (checked once per
        policy object, input dtype and device, on random frames), else None."""
        checked = cls._checked.setdefault(policy, {})
        key = (example.dtype, example.device)
        if key not in checked:
            shortcut = cls._probe(policy, example)
            checked[key] = shortcut if shortcut is not None and shortcut._agrees(policy, example) else None
        return checked[key]

    @classmethod
    def _probe(cls, policy: BasePolicy, example: torch.Tensor) -> FirstConvShortcut | None:
        seen: list[tuple[nn.Module, torch.Tensor]] = []
        handles = [m.register_forward_hook(lambda m, i, _o: seen.append((m, i[0])))
                   for m in policy.modules() if isinstance(m, nn.Conv2d)]
        x = torch.rand(1, *example.shape[1:], generator=torch.Generator().manual_seed(0)).to(example) * 255
        try:
            with torch.no_grad():
                policy_outputs(policy, x)
        except Exception:  # noqa: BLE001 - a policy the shortcut cannot follow takes the direct path
            return None
        finally:
            for handle in handles:
                handle.remove()
        for scale in (1.0 / 255.0, 1.0):
            scaled = x / 255.0 if scale != 1.0 else x
            convs = [m for m, inp in seen if inp.shape == x.shape and torch.equal(inp, scaled)]
            if convs:
                if not all(_conv_ok(m) for m in convs) or len(set(map(id, convs))) != len(convs):
                    return None
                return cls(convs, scale)
        return None

    def _agrees(self, policy: BasePolicy, example: torch.Tensor) -> bool:
        """Outputs through the shortcut equal a direct forward pass on 4 random perturbations of random frames."""
        gen = torch.Generator().manual_seed(1)
        shape = example.shape[1:]
        x = (torch.rand(1, *shape, generator=gen) * 255).to(example)
        fill = (torch.rand(1, *shape, generator=gen) * 255).to(example)
        rows = torch.rand(2, shape[-2], generator=gen).to(example)
        cols = torch.rand(2, shape[-1], generator=gen).to(example)
        masks = (rows[:, None, :, None] * cols[None, :, None, :]).reshape(-1, 1, *shape[-2:])
        try:
            with torch.no_grad():
                direct = policy_outputs(policy, torch.cat([x + (fill - x) * masks, x]))
                fast = self.outputs(policy, self.prepare(x[0], (fill - x)[0], cols), rows)
            return all(a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5 * (1.0 + float(a.abs().max())))
                       for a, b in zip(direct, fast, strict=True))
        except Exception:  # noqa: BLE001 - any failure means: take the direct path
            return False

    @contextlib.contextmanager
    def patched(self) -> Iterator[None]:
        """While active, each conv returns the outputs that the calling thread set in ``outputs`` (an instance
        attribute, removed when the outermost ``patched`` ends); a thread that set none gets the real conv."""
        with self._lock:
            if self._depth == 0:
                for index, conv in enumerate(self.convs):
                    conv.forward = functools.partial(self._forward, index, conv)  # type: ignore[method-assign]
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    for conv in self.convs:
                        del conv.forward

    def _forward(self, index: int, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        outputs = getattr(self._local, "outputs", None)
        return type(conv).forward(conv, x) if outputs is None else outputs[index]

    def prepare(self, frame: torch.Tensor, delta: torch.Tensor, col_profiles: torch.Tensor
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """What one observation's masks share, per conv: (clean conv output, ``column_stage``).
        frame, delta: (C, H, W) in the observation's units (0..255)."""
        prepared = []
        for conv in self.convs:
            clean = F.conv2d((frame * self.scale)[None], conv.weight, conv.bias, conv.stride, conv.padding)[0]
            prepared.append((clean, column_stage(conv, delta * self.scale, col_profiles)))
        return prepared

    def outputs(self, policy: BasePolicy, prepared: list[tuple[torch.Tensor, torch.Tensor]],
                row_profiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy outputs (logits, value) on frame + delta * (row_r outer col_c) for every row profile r and every
        column profile given to ``prepare``, row-major, and last on the frame itself."""
        results = [row_stage(conv, t, row_profiles, clean) for conv, (clean, t) in zip(self.convs, prepared,
                                                                                       strict=True)]
        n, channels = len(results[0]), self.convs[0].in_channels
        dummy = torch.zeros((), dtype=results[0].dtype, device=results[0].device).expand(n, channels, 1, 1)
        self._local.outputs = results
        try:
            with self.patched():
                return policy_outputs(policy, dummy)
        finally:
            self._local.outputs = None


def run_in_threads(work: Any, n: int, workers: int) -> None:
    """``work(i)`` for i in range(n), under no_grad, in ``workers`` threads taking the next i in turn, with torch
    set to 1 thread meanwhile (a new thread takes its thread count from it); the first error is raised here."""
    lock, todo, errors = threading.Lock(), iter(range(n)), []

    def worker() -> None:
        try:
            with torch.no_grad():
                while not errors:
                    with lock:
                        i = next(todo, None)
                    if i is None:
                        return
                    work(i)
        except BaseException as err:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(err)

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        threads = [threading.Thread(target=worker, name=f"perturbation-{k}", daemon=True) for k in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        torch.set_num_threads(previous)
    if errors:
        raise errors[0]


# ---------------------------------------------------------------------------------------------------------------
# The family
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    rows: np.ndarray
    cols: np.ndarray
    row_profiles: np.ndarray
    col_profiles: np.ndarray


@register("perturbation")
class Perturbation:
    """Perturbation saliency: mask, fill and score as options (see the module doc). Default: Greydanus et al.
    (Gaussian blobs of sigma 5 every 5 px, blurred with sigma 3, 0.5 ||L(I) - L(I')||^2 of all logits).

    ``batch_size``: copies per forward pass (whole rows of the grid, at least one row; 128 keeps every tensor
    small enough for the allocator to reuse memory instead of mapping fresh pages); ``fast``: allow the
    first-convolution shortcut; ``workers``: threads that take the observations in turn, each running torch with
    one thread (None: ``torch.get_num_threads()``, capped at the number of observations). On a 2-core CPU two
    workers beat one worker with torch's 2 intra-op threads (nothing waits at a barrier, the memory-bound steps
    run in parallel too, and a core taken by another job slows one worker instead of stalling both); torch's
    thread count is set to 1 while they run and restored afterwards. The maps do not depend on it.
    """

    name = "perturbation"
    default_score = "greydanus"

    def __init__(self, score: str | None = None, target: Target = None, stride: int = 5, mask: str = "gaussian",
                 sigma: float = 5.0, size: int | None = None, fill: str = "blur", blur_sigma: float = 3.0,
                 batch_size: int = 128, fast: bool = True, workers: int | None = None):
        self.score = self.default_score if score is None else score
        if self.score not in SCORES:
            raise OptionError(f"perturbation score must be one of {', '.join(SCORES)}, got {self.score!r}")
        if target is None:
            target = "logits" if self.score == "greydanus" else "action"
        if self.score != "greydanus" and isinstance(target, str) and target != "action":
            raise OptionError(f"the {self.score!r} score explains an action; target must be 'action' or action "
                              f"indices, got {target!r}")
        if mask not in MASKS:
            raise OptionError(f"perturbation mask must be one of {', '.join(MASKS)}, got {mask!r}")
        if fill not in FILLS:
            raise OptionError(f"perturbation fill must be one of {', '.join(FILLS)}, got {fill!r}")
        grid_centres(84, stride)  # validates the stride
        size = 2 * stride if size is None else size
        for option, value in (("sigma", sigma), ("blur_sigma", blur_sigma), ("size", size)):
            if not isinstance(value, (int, float, np.number)) or not np.isfinite(value) or value <= 0:
                raise OptionError(f"perturbation {option} must be a positive number, got {value!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise OptionError(f"perturbation batch_size must be an integer >= 1, got {batch_size!r}")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer))
                                    or workers < 1):
            raise OptionError(f"perturbation workers must be an integer >= 1 or None, got {workers!r}")
        self.target = target
        self.stride, self.mask, self.sigma, self.size = stride, mask, float(sigma), int(size)
        self.fill, self.blur_sigma = fill, float(blur_sigma)
        self.batch_size, self.fast, self.workers = batch_size, fast, workers
        self.used_shortcut: bool | None = None  # set by each call: whether the fast path ran

    def _grid(self, height: int, width: int) -> _Grid:
        extent = self.sigma if self.mask == "gaussian" else float(self.size)
        rows, row_profiles = mask_profiles(height, self.stride, self.mask, extent)
        cols, col_profiles = mask_profiles(width, self.stride, self.mask, extent)
        return _Grid(rows, cols, row_profiles, col_profiles)

    def _scores(self, clean: tuple[torch.Tensor, torch.Tensor], out: tuple[torch.Tensor, torch.Tensor],
                target: np.ndarray | str, q_values: bool) -> torch.Tensor:
        """One score per perturbed copy; ``clean``: the observation's outputs, broadcast over the copies."""
        (clean_logits, clean_value), (logits, value) = clean, out
        if self.score == "greydanus":
            if isinstance(target, str):
                if target == "value":
                    return greydanus_score(clean_value[:, None], value[:, None])
                return greydanus_score(clean_logits, logits)
            index = torch.as_tensor(target, device=logits.device).long().expand(len(logits))[:, None]
            return greydanus_score(clean_logits.expand_as(logits).gather(1, index), logits.gather(1, index))
        actions = torch.as_tensor(target, device=logits.device).long().expand(len(logits))
        clean_logits = clean_logits.expand_as(logits)
        if self.score == "action":
            return action_score(clean_logits, logits, actions, q_values)
        return sarfa_score(clean_logits, logits, actions)

    def score_grid(self, policy: BasePolicy, observations: np.ndarray | torch.Tensor,
                   target: Target = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols, scores (N, len(rows), len(cols))) before upsampling; ``action`` scores are signed."""
        policy.set_training_mode(False)
        obs = _float_input(policy, observations)
        fixed = resolve_target(policy, obs, self.target if target is None else target)
        if self.score != "greydanus" and isinstance(fixed, str):
            raise OptionError(f"the {self.score!r} score explains an action; target must be 'action' or action "
                              f"indices, got {fixed!r}")
        n, _, height, width = obs.shape
        grid = self._grid(height, width)
        row_profiles = torch.as_tensor(grid.row_profiles, device=obs.device, dtype=obs.dtype)
        col_profiles = torch.as_tensor(grid.col_profiles, device=obs.device, dtype=obs.dtype)
        fills = fill_frames(obs, self.fill, self.blur_sigma)
        q_values = is_q_network(policy)
        scores = torch.empty(n, len(grid.rows), len(grid.cols), device=obs.device, dtype=obs.dtype)
        passes = -(-len(grid.rows) // max(1, (self.batch_size - 1) // len(grid.cols)))
        rows_per_pass = -(-len(grid.rows) // passes)  # balanced passes
        with torch.no_grad():
            shortcut = FirstConvShortcut.for_policy(policy, obs[:1]) if self.fast else None
        self.used_shortcut = shortcut is not None

        def observation(i: int) -> None:
            """Scores of observation i into scores[i]."""
            target_i = fixed if isinstance(fixed, str) else fixed[i:i + 1]
            delta = fills[i] - obs[i]
            prepared = shortcut.prepare(obs[i], delta, col_profiles) if shortcut is not None else None
            for start in range(0, len(grid.rows), rows_per_pass):
                # the clean frame rides along as the last copy: clean and perturbed outputs come from the same
                # pass, so rounding that they share cancels in the difference
                rows = row_profiles[start:start + rows_per_pass]
                if shortcut is not None:
                    logits, value = shortcut.outputs(policy, prepared, rows)
                else:
                    masks = (rows[:, None, :, None] * col_profiles[None, :, None, :]).reshape(-1, 1, height, width)
                    logits, value = policy_outputs(policy, torch.cat([obs[i] + delta * masks, obs[i:i + 1]]))
                part = self._scores((logits[-1:], value[-1:]), (logits[:-1], value[:-1]), target_i, q_values)
                scores[i, start:start + len(rows)] = part.view(len(rows), len(grid.cols))

        workers = self.workers if self.workers is not None else \
            torch.get_num_threads() if obs.device.type == "cpu" else 1
        workers = min(n, workers)
        with contextlib.ExitStack() as stack:
            if shortcut is not None:
                stack.enter_context(shortcut.patched())  # once for all workers
            if workers <= 1:
                with torch.no_grad():
                    for i in range(n):
                        observation(i)
            else:
                run_in_threads(observation, n, workers)
        return grid.rows, grid.cols, scores.cpu().numpy()

    def signed_attribute(self, policy: BasePolicy, observations: np.ndarray | torch.Tensor,
                         target: Target = None) -> np.ndarray:
        """Upsampled scores before the absolute value: for ``action``, positive where the mask takes support
        away from the action; Greydanus and SARFA scores are >= 0 already."""
        rows, cols, grids = self.score_grid(policy, observations, target)
        return upsample_grids(grids, rows, cols, observations.shape[-1])

    def attribute(self, policy: BasePolicy, observations: np.ndarray | torch.Tensor, target: Target = None,
                  **_: Any) -> np.ndarray:
        maps = np.abs(self.signed_attribute(policy, observations, target))
        return check_maps(maps, len(maps))


@register("perturbation_action")
class ActionPerturbation(Perturbation):
    """Perturbation scored on the chosen action only: |log pi(a|I) - log pi(a|I')| (DQN: its Q-value)."""

    name = "perturbation_action"
    default_score = "action"


@register("sarfa")
class SARFA(Perturbation):
    """Specific and relevant feature attribution (Puri et al. 2020) on perturbation masks."""

    name = "sarfa"
    default_score = "sarfa"


# ---------------------------------------------------------------------------------------------------------------
# The earlier form, kept as the oracle
# ---------------------------------------------------------------------------------------------------------------


def reference_score_grid(policy: BasePolicy, observations: np.ndarray | torch.Tensor, target: Target = "logits",
                         stride: int = 5, sigma: float = 5.0, blur_sigma: float = 3.0, batch_size: int = 512
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greydanus perturbation as first implemented here (every perturbed frame built from full 2-D masks and run
    through the whole network, 0.5 ||L(I) - L(I')||^2): the tests' oracle and the benchmark's "before"."""
    policy.set_training_mode(False)
    obs = _float_input(policy, observations)
    fixed = resolve_target(policy, obs, target)
    n, size = len(obs), obs.shape[-1]
    rows = cols = grid_centres(size, stride)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    masks_np = np.stack([np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2.0 * sigma**2)) for r in rows for c in cols])
    masks = torch.as_tensor(masks_np, device=obs.device, dtype=obs.dtype)[:, None]
    k = len(masks)
    blurred = torch.as_tensor(gaussian_filter(obs.cpu().numpy(), sigma=(0, 0, blur_sigma, blur_sigma)),
                              device=obs.device)

    def outputs(x: torch.Tensor, t: np.ndarray | str) -> torch.Tensor:
        logits, value = policy_outputs(policy, x)
        if isinstance(t, str):
            return logits if t == "logits" else value[:, None]
        return logits.gather(1, torch.as_tensor(t, device=logits.device).long()[:, None])

    with torch.no_grad():
        clean = outputs(obs, fixed)
        scores = torch.empty(n * k, device=obs.device, dtype=obs.dtype)
        for start in range(0, n * k, batch_size):
            pair = torch.arange(start, min(start + batch_size, n * k), device=obs.device)
            i, m = pair // k, pair % k
            perturbed = obs[i] + (blurred[i] - obs[i]) * masks[m]
            out = outputs(perturbed, fixed if isinstance(fixed, str) else fixed[i.cpu().numpy()])
            scores[start:start + len(pair)] = 0.5 * (clean[i] - out).pow(2).sum(dim=1)
    return rows, cols, scores.view(n, len(rows), len(cols)).cpu().numpy()


def reference_maps(policy: BasePolicy, observations: np.ndarray | torch.Tensor, **kwargs: Any) -> np.ndarray:
    """Upsampled maps of ``reference_score_grid`` with the earlier per-map ``np.interp`` loops."""
    rows, cols, grids = reference_score_grid(policy, observations, **kwargs)
    size = observations.shape[-1]
    pixels = np.arange(size)
    maps = []
    for grid in grids:
        along_rows = np.stack([np.interp(pixels, rows, grid[:, j]) for j in range(grid.shape[1])], axis=1)
        maps.append(np.stack([np.interp(pixels, cols, along_rows[i]) for i in range(size)]))
    return np.maximum(np.asarray(maps, dtype=np.float32), 0.0)
