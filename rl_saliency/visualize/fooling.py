"""Fooling frames (Szegedy et al. 2014; Goodfellow et al. 2015): the smallest change to a real observation that
changes the agent's decision.

The decision is the greedy action (argmax of the logits; DQN: of the Q-values). For a bound ``eps`` (integer grey
levels), iterated signed-gradient steps (``steps`` of ``eps / 4``, at least half a grey level) climb the margin
``z_t - max_{j != t} z_j`` towards a target action ``t``, or ``max_{j != a} z_j - z_a`` away from the current
action ``a`` (``target="any"``), each step projected back into ``|x - x0| <= eps`` and 0..255. The frame is
checked after rounding to integer grey levels (what an emulator could show), and the first rounded frame with the
new decision is kept. A line search on the bound tries eps = 1, 2, 4, ... up to ``max_bound``, then bisects between
the last bound that failed and the first that succeeded: the bound reached per observation is the smallest integer
bound at which the attack succeeded. Pixels whose gradient is always zero (where the policy ignores the frame)
never change: the sign of a zero gradient is zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.policies import BasePolicy
from tqdm.auto import tqdm

from rl_saliency.errors import OptionError, check_count
from rl_saliency.saliency.methods import policy_outputs
from rl_saliency.visualize.base import Visualization, as_float_frames, check_image_policy, register
from rl_saliency.visualize.targets import action_label, check_actions, n_actions

REPORT_BOUNDS = (1, 2, 4, 8)


def _margin(logits: torch.Tensor, original: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) > 0 exactly when the decision has changed as wanted: towards ``target`` (>= 0) or away from
    ``original`` (target -1)."""
    n = logits.shape[1]
    rows = torch.arange(len(logits), device=logits.device)
    untargeted = target < 0
    wanted = torch.where(untargeted, original, target)
    own = logits[rows, wanted]
    others = logits.masked_fill(torch.nn.functional.one_hot(wanted, n).bool(), float("-inf")).max(dim=1).values
    return torch.where(untargeted, others - own, own - others)


def _decided(logits: torch.Tensor, original: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) whether the greedy action is the target (or, for target -1, not the original action)."""
    greedy = logits.argmax(dim=1)
    return torch.where(target < 0, greedy != original, greedy == target)


def signed_gradient_attack(policy: BasePolicy, x0: torch.Tensor, original: torch.Tensor, target: torch.Tensor,
                           bound: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Iterated signed gradient under ``|x - x0| <= bound`` (per row, grey levels); returns the first rounded frames
    that change the decision (else ``x0``) and which rows succeeded."""
    eps = bound.view(-1, 1, 1, 1).to(x0)
    alpha = (eps / 4.0).clamp_min(0.5)
    x = x0.clone()
    result, done = x0.clone(), torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
    for _ in range(steps):
        live = ~done
        xs = x[live].requires_grad_(True)
        with torch.enable_grad():
            logits, _ = policy_outputs(policy, xs)
            (grad,) = torch.autograd.grad(_margin(logits, original[live], target[live]).sum(), xs)
        with torch.no_grad():
            moved = xs.detach() + alpha[live] * grad.sign()
            moved = torch.maximum(torch.minimum(moved, x0[live] + eps[live]), x0[live] - eps[live]).clamp(0, 255)
            x[live] = moved
            rounded = moved.round()
            logits, _ = policy_outputs(policy, rounded)
            success = _decided(logits, original[live], target[live])
            index = live.nonzero().squeeze(1)[success]
            result[index] = rounded[success]
            done[index] = True
        if bool(done.all()):
            break
    return result, done


@register("fooling")
class FoolingFrames:
    """The smallest L-infinity change (line search on the bound) that changes each observation's decision.

    :param target: ``"any"`` (any other action), or an action index for every observation; ``visualize``'s
        ``targets`` may also give one per observation
    :param max_bound: the largest bound tried, in grey levels
    :param steps: signed-gradient steps per attack
    """

    name = "fooling"

    def __init__(self, target: str | int = "any", max_bound: int = 64, steps: int = 20, batch_size: int = 32,
                 action_names: Sequence[str] | None = None, progress: bool = False):
        self.target = target
        self.max_bound = check_count(max_bound, "max_bound", maximum=255)
        self.steps = check_count(steps, "steps")
        self.batch_size = check_count(batch_size, "batch_size")
        self.action_names = action_names
        self.progress = progress

    def _targets(self, policy: BasePolicy, targets: Sequence[Any] | None, n: int) -> np.ndarray:
        """One target per observation: -1 for any other action, else an action index."""
        wanted = self.target if targets is None else targets
        if isinstance(wanted, str | int | np.integer):
            wanted = [wanted] * n
        wanted = list(wanted)
        if len(wanted) != n:
            raise OptionError(f"give one fooling target per observation ({n}), or one for all; got {len(wanted)}")
        out = np.full(n, -1, dtype=np.int64)
        count = n_actions(policy)
        for i, t in enumerate(wanted):
            if isinstance(t, str) and t.strip().lower() == "any":
                continue
            out[i] = check_actions([t], count, self.action_names)[0]
        return out

    def search(self, policy: BasePolicy, x0: torch.Tensor, original: torch.Tensor, target: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Line search on the bound for one batch: (fooled frames, bound reached; inf where none up to
        ``max_bound``, 0 where the decision already is the target)."""
        n = len(x0)
        best = x0.clone()
        bound = torch.full((n,), float("inf"), device=x0.device)
        bound[(target >= 0) & (target == original)] = 0.0
        failed = torch.zeros(n, device=x0.device)  # the largest bound known to fail
        eps = 1
        while True:  # doubling: 1, 2, 4, ... (and max_bound itself)
            todo = torch.isinf(bound)
            if not bool(todo.any()):
                break
            rows = todo.nonzero().squeeze(1)
            frames, ok = signed_gradient_attack(policy, x0[rows], original[rows], target[rows],
                                                torch.full((len(rows),), float(eps), device=x0.device), self.steps)
            best[rows[ok]] = frames[ok]
            bound[rows[ok]] = float(eps)
            failed[rows[~ok]] = float(eps)
            if eps >= self.max_bound:
                break
            eps = min(eps * 2, self.max_bound)
        while True:  # bisection between the last failure and the first success
            gap = torch.isfinite(bound) & (bound - failed > 1)
            if not bool(gap.any()):
                break
            rows = gap.nonzero().squeeze(1)
            middle = torch.floor((bound[rows] + failed[rows]) / 2)
            frames, ok = signed_gradient_attack(policy, x0[rows], original[rows], target[rows], middle, self.steps)
            best[rows[ok]] = frames[ok]
            bound[rows[ok]] = middle[ok]
            failed[rows[~ok]] = middle[~ok]
        return best, bound

    def visualize(self, policy: BasePolicy, targets: Sequence[Any] | str | int | None = None,
                  observations: np.ndarray | torch.Tensor | None = None) -> Visualization:
        """Fool each observation; rows hold the action before and after, the bound reached, the change made."""
        check_image_policy(policy)
        if observations is None or len(observations) == 0:
            raise OptionError("fooling frames need real observations to change")
        policy.set_training_mode(False)
        x_all = as_float_frames(policy, observations).round().clamp(0, 255)  # integer grey levels
        wanted = self._targets(policy, targets, len(x_all))
        frames, bounds, rows, labels = [], [], [], []
        chunks = range(0, len(x_all), self.batch_size)
        for start in tqdm(chunks, desc="fooling", unit="batch", disable=not self.progress):
            x0 = x_all[start:start + self.batch_size]
            target = torch.as_tensor(wanted[start:start + len(x0)], device=x0.device)
            with torch.no_grad():
                logits0, _ = policy_outputs(policy, x0)
            original = logits0.argmax(dim=1)
            fooled, bound = self.search(policy, x0, original, target)
            with torch.no_grad():
                logits1, _ = policy_outputs(policy, fooled)
            p0, p1 = torch.softmax(logits0, dim=1), torch.softmax(logits1, dim=1)
            for i in range(len(x0)):
                a, b = int(original[i]), int(logits1[i].argmax())
                t = int(target[i])
                diff = (fooled[i] - x0[i]).abs()
                flipped = (a != b) if t < 0 else (b == t and a != t)
                row = {"observation": start + i, "action_before": a, "label_before": action_label(a, self.action_names),
                       "target": "any" if t < 0 else t, "action_after": b,
                       "label_after": action_label(b, self.action_names), "flipped": flipped,
                       "already_target": t >= 0 and a == t,
                       "bound": float(bound[i]) if torch.isfinite(bound[i]) else float("nan"),
                       "linf": float(diff.max()), "changed_pixels": int((diff > 0).sum()),
                       "margin_before": float(_margin(logits0[i:i + 1], original[i:i + 1], target[i:i + 1])),
                       "margin_after": float(_margin(logits1[i:i + 1], original[i:i + 1], target[i:i + 1])),
                       "prob_before": float(p0[i, a]), "prob_after_of_original": float(p1[i, a])}
                rows.append(row)
                verdict = (f"-> {row['label_after']} at {int(row['bound'])} grey levels" if flipped else
                           "already the target" if row["already_target"] else f"unchanged within {self.max_bound}")
                labels.append(f"obs {start + i}: {row['label_before']} {verdict}")
            frames.append(fooled.cpu())
            bounds.append(bound.cpu())
        bound_all = torch.cat(bounds).numpy()
        searched = np.array([not r["already_target"] for r in rows])
        reached = np.where(np.isfinite(bound_all), bound_all, np.inf)[searched]
        summary = {f"flipped_at_{b}": float((reached <= b).mean()) if len(reached) else float("nan")
                   for b in REPORT_BOUNDS}
        summary.update(flipped_within_max=float(np.isfinite(reached).mean()) if len(reached) else float("nan"),
                       max_bound=self.max_bound, observations=len(rows), searched=int(searched.sum()),
                       median_bound=float(np.median(reached)) if len(reached) else float("nan"))
        return Visualization(self.name, torch.cat(frames).numpy().astype(np.float32),
                             x_all.cpu().numpy().astype(np.float32), labels, rows,
                             extra={"summary": summary, "bounds": bound_all})
