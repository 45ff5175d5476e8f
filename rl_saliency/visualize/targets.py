"""What a visualisation maximises: an action's score or one internal unit, as a differentiable function of frames.

Actions: ``logit`` (an actor-critic's action logit; DQN: the Q-value), ``log_prob`` (log-softmax of the logits)
or ``q`` (DQN only). Units, named as text:

- ``conv<i>:<c>``: channel ``c`` of the extractor's ``i``-th conv layer (before its activation), averaged over
  positions; ``conv<i>:<c>@<r>,<col>``: that channel at one position;
- ``features:<k>``: unit ``k`` of the features layer (the extractor's last linear layer, before its ReLU: the
  512-d features of NatureCNN and this package's extractors);
- ``attention:<r>,<c>``: one cell of the extractor's attention map (FLS, DAQN, RS-PPO: the map that re-weights
  the features; 7x7 for sparse maps, 84x84 for Dense FLS).

Pre-activation values keep a gradient where the unit is off, so the ascent can switch it on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from torch import nn

from rl_saliency.errors import OptionError
from rl_saliency.saliency.methods import policy_outputs

OBJECTIVES = ("logit", "log_prob", "q")
_UNIT_RE = re.compile(r"^(?P<layer>conv\d+|features|attention):(?P<index>[\d,@ ]+)$")


# ---------------------------------------------------------------------------------------------------------- actions

def n_actions(policy: BasePolicy) -> int:
    """How many actions the policy scores (from one forward pass on a blank frame)."""
    with torch.no_grad():
        logits, _ = policy_outputs(policy, torch.zeros(1, 4, 84, 84, device=policy.device))
    return int(logits.shape[1])


def action_label(action: int, names: Sequence[str] | None) -> str:
    return f"{action} {names[action]}" if names is not None and action < len(names) else f"action {action}"


def _listing(n: int, names: Sequence[str] | None) -> str:
    if names is None or len(names) != n:
        return f"0..{n - 1}"
    return ", ".join(f"{i} {name}" for i, name in enumerate(names))


def check_actions(actions: Sequence[Any] | None, n: int, names: Sequence[str] | None = None) -> list[int]:
    """Action indices (default: all ``n``); one out of range is an OptionError listing the valid ones."""
    if actions is None:
        return list(range(n))
    checked = []
    for action in actions:
        try:
            index = int(action)
            valid = float(action) == index
        except (TypeError, ValueError):
            valid = False
        if not valid or not 0 <= index < n:
            raise OptionError(f"action {action} is out of range: the policy has {n} actions ({_listing(n, names)})")
        checked.append(index)
    return checked


def check_objective(policy: BasePolicy, objective: str) -> str:
    if objective not in OBJECTIVES:
        raise OptionError(f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
    if objective == "q" and getattr(policy, "q_net", None) is None:
        raise OptionError(f"objective 'q' needs a DQN policy; {type(policy).__name__} has no Q-network (use 'logit' "
                          f"or 'log_prob')")
    return objective


def action_scores(logits: torch.Tensor, actions: torch.Tensor, objective: str) -> torch.Tensor:
    """(K,) the score of row k's action: its logit / Q-value, or its log-probability."""
    values = F.log_softmax(logits, dim=1) if objective == "log_prob" else logits
    return values.gather(1, actions[:, None]).squeeze(1)


# ---------------------------------------------------------------------------------------------------------- units

@dataclass(frozen=True)
class Layer:
    """A layer whose units can be visualised: its name (conv3, features, attention), module and output shape."""

    name: str
    path: str  # module path inside the features extractor
    module: nn.Module
    shape: tuple[int, ...]  # (C, H, W) for conv, (D,) for features, (H, W) for attention

    def describe(self) -> str:
        if self.name.startswith("conv"):
            c, h, w = self.shape
            return f"{self.name}:0-{c - 1} ({self.path}, {c} channels of {h}x{w}; @r,c for one position)"
        if self.name == "features":
            return f"features:0-{self.shape[0] - 1} ({self.path})"
        h, w = self.shape
        return f"attention:0-{h - 1},0-{w - 1} ({self.path}, a {h}x{w} map)"


@dataclass(frozen=True)
class Unit:
    layer: str
    index: tuple[int, ...]  # conv: (c,) or (c, r, col); features: (k,); attention: (r, c)
    text: str


def actor_extractor(policy: BasePolicy) -> nn.Module:
    """The features extractor that feeds the actions: the actor's (PPO, A2C) or the Q-network's (DQN)."""
    if isinstance(policy, ActorCriticPolicy):
        return policy.pi_features_extractor
    q_net = getattr(policy, "q_net", None)
    if q_net is not None:
        return q_net.features_extractor
    extractor = getattr(policy, "features_extractor", None)
    if extractor is None:
        raise OptionError(f"{type(policy).__name__} has no features extractor whose units could be visualised")
    return extractor


def _recorder(store: dict[str, Any], name: str, what: Callable[[torch.Tensor], Any]) -> Callable[..., None]:
    """A forward hook keeping ``what(output)`` of a module's first call in ``store[name]`` (returns None, so the
    output itself is left alone)."""

    def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        if name not in store:
            store[name] = what(output)

    return hook


def unit_layers(policy: BasePolicy) -> dict[str, Layer]:
    """The layers of the policy's extractor that have units, with their output shapes (from one probe pass)."""
    extractor = actor_extractor(policy)
    named = list(extractor.named_modules())
    candidates: list[tuple[str, str, nn.Module]] = []
    convs = [(path, m) for path, m in named if isinstance(m, nn.Conv2d)]
    candidates += [(f"conv{i + 1}", path, m) for i, (path, m) in enumerate(convs)]
    linears = [(path, m) for path, m in named if isinstance(m, nn.Linear)]
    if linears:
        candidates.append(("features", *linears[-1]))
    attention = getattr(extractor, "attention", None)
    if isinstance(attention, nn.Module) and hasattr(extractor, "project_attention"):
        candidates.append(("attention", "attention", attention))
    shapes: dict[str, tuple[int, ...]] = {}
    handles = [module.register_forward_hook(_recorder(shapes, name, lambda out: tuple(out.shape[1:])))
               for name, _, module in candidates]
    try:
        with torch.no_grad():
            policy_outputs(policy, torch.zeros(1, 4, 84, 84, device=policy.device))
    finally:
        for handle in handles:
            handle.remove()
    layers = {}
    for name, path, module in candidates:
        if name not in shapes:  # not on the path to the actions (e.g. a critic-only layer)
            continue
        shape = shapes[name]
        if name == "attention":
            if len(shape) != 3 or shape[0] != 1:
                continue
            shape = shape[1:]
        layers[name] = Layer(name, path, module, shape)
    return layers


def describe_units(layers: dict[str, Layer]) -> str:
    return "; ".join(layer.describe() for layer in layers.values()) or "none"


def parse_unit(text: str, layers: dict[str, Layer]) -> Unit:
    """``conv3:12``, ``conv3:12@3,4``, ``features:7`` or ``attention:3,4``; anything else (or out of range) is an
    OptionError naming the valid units of this policy."""
    text = str(text).strip()
    match = _UNIT_RE.match(text.replace(" ", ""))
    valid = f"this policy's units: {describe_units(layers)}"
    if not match:
        raise OptionError(f"unit {text!r} does not exist; name one as conv<i>:<channel>[@row,col], features:<k> or "
                          f"attention:<row>,<col>; {valid}")
    name, index_text = match["layer"], match["index"]
    if name not in layers:
        raise OptionError(f"unit {text!r} does not exist: this policy has no layer {name!r}; {valid}")
    layer = layers[name]
    try:
        if name.startswith("conv"):
            channel, _, where = index_text.partition("@")
            index = (int(channel), *(int(v) for v in where.split(","))) if where else (int(channel),)
            limits = (layer.shape[0], *layer.shape[1:]) if where else (layer.shape[0],)
        elif name == "features":
            index, limits = (int(index_text),), layer.shape
        else:
            index, limits = tuple(int(v) for v in index_text.split(",")), layer.shape
    except ValueError:
        index, limits = (), (0,)
    if len(index) != len(limits) or any(not 0 <= i < n for i, n in zip(index, limits, strict=True)):
        raise OptionError(f"unit {text!r} does not exist; {valid}")
    return Unit(name, index, text)


def unit_value(activation: torch.Tensor, unit: Unit) -> torch.Tensor:
    """(N,) the unit's value from its layer's output batch."""
    if unit.layer.startswith("conv"):
        channel = activation[:, unit.index[0]]
        return channel.mean(dim=(1, 2)) if len(unit.index) == 1 else channel[:, unit.index[1], unit.index[2]]
    if unit.layer == "features":
        return activation[:, unit.index[0]]
    return activation[:, 0, unit.index[0], unit.index[1]]


# ---------------------------------------------------------------------------------------------------------- targets

class Objective:
    """One differentiable score per row: row k maximises ``targets[k]`` (an action index or a unit name).

    ``objective(x)`` returns ``(scores (K,), logits (K, A))`` for frames ``x`` (K, 4, 84, 84) float in 0..255.
    """

    def __init__(self, policy: BasePolicy, targets: Sequence[Any] | None, objective: str = "logit",
                 action_names: Sequence[str] | None = None, units: bool = False):
        self.policy = policy
        self.objective = check_objective(policy, objective)
        self.n_actions = n_actions(policy)
        self.action_names = list(action_names) if action_names is not None else None
        self.units: list[Unit] = []
        self.actions: list[int] = []
        if units:
            if not targets:
                raise OptionError("give at least one unit (e.g. features:0, conv3:5, attention:3,3)")
            self.layers = unit_layers(policy)
            self.units = [parse_unit(t, self.layers) for t in targets]
            self.labels = [u.text for u in self.units]
        else:
            self.actions = check_actions(targets, self.n_actions, self.action_names)
            self.labels = [action_label(a, self.action_names) for a in self.actions]
        self.kind = "unit" if units else "action"
        self.targets: list[Any] = [u.text for u in self.units] if units else list(self.actions)

    def __len__(self) -> int:
        return len(self.targets)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.units:
            logits, _ = policy_outputs(self.policy, x)
            actions = torch.as_tensor(self.actions, device=logits.device)
            return action_scores(logits, actions, self.objective), logits
        captured: dict[str, torch.Tensor] = {}
        needed = {u.layer for u in self.units}
        handles = [self.layers[name].module.register_forward_hook(_recorder(captured, name, lambda out: out))
                   for name in needed]
        try:
            logits, _ = policy_outputs(self.policy, x)
        finally:
            for handle in handles:
                handle.remove()
        scores = []
        for k, unit in enumerate(self.units):
            activation = captured[unit.layer]
            if unit.layer == "attention" and activation.dim() == 3:
                activation = activation[:, None]
            scores.append(unit_value(activation[k:k + 1], unit))
        return torch.cat(scores), logits

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor | None:
        """(K,) the softmax probability of each row's action (actions only)."""
        if not self.actions:
            return None
        actions = torch.as_tensor(self.actions, device=logits.device)
        return F.softmax(logits, dim=1).gather(1, actions[:, None]).squeeze(1)

    def rows(self, before: tuple[torch.Tensor, torch.Tensor], after: tuple[torch.Tensor, torch.Tensor]
             ) -> list[dict[str, Any]]:
        """The CSV rows: each target's score (and action probability, greedy action) before and after."""
        rows = []
        p_before, p_after = self.probabilities(before[1]), self.probabilities(after[1])
        greedy_before, greedy_after = before[1].argmax(dim=1), after[1].argmax(dim=1)
        for k, target in enumerate(self.targets):
            row: dict[str, Any] = {"target": target, "label": self.labels[k],
                                   "objective": self.objective if self.kind == "action" else "activation",
                                   "score_before": float(before[0][k]), "score_after": float(after[0][k])}
            if p_before is not None and p_after is not None:
                row.update(prob_before=float(p_before[k]), prob_after=float(p_after[k]))
            row.update(greedy_before=int(greedy_before[k]), greedy_after=int(greedy_after[k]))
            rows.append(row)
        return rows
