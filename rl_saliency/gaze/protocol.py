"""Gaze-evaluation protocols: every choice that changes a gaze-eval number, under one name.

``default``: this package's own choice: scored at the agent's 84x84 (where its maps are made; nothing is
interpolated), an observation at every raw frame (stride 1), fixations floored to the pixel that contains them.
``paper``: what the FLS reference code (dniku/free-lunch-saliency, ``benchmark_atari_head.py``) did, to compare
with the paper's table: maps resized bilinearly to the frame's 210x160, fixation counts at frame pixels, KL
against the counts blurred with sigma 5 px (mirrored at the frame's edges, cv2's default), an observation
every 4 raw frames at the decision points of an agent that started at the trial's first frame, shuffled-AUC
negatives from 10 other observations drawn with replacement.

The reference's quirks (its gaze one frame early, rounded gaze pixels, KL skipped where the map is ~0 near the
gaze) are fields too, so that their effect can be measured (docs/fidelity.md), but no preset copies them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rl_saliency.errors import SpecError
from rl_saliency.gaze.fixations import BORDERS, ROUNDINGS

RESOLUTIONS = (84, 210)


@dataclass(frozen=True)
class Protocol:
    """How observations, fixation maps and metrics are made; see the module doc."""

    name: str
    resolution: int = 84  # 84: the agent's 84x84; 210: the frame's 210x160 (maps resized bilinearly)
    stride: int = 1  # an observation every ``stride`` raw frames
    aligned: bool = False  # observations at first + k * stride (else from the first full stack on)
    blur_border: str = "constant"  # KL/CC/SIM density: zero outside the frame, or mirrored ("reflect")
    negatives_with_replacement: bool = False  # shuffled AUC's 10 other observations
    # the FLS reference's quirks: off in every preset, for measuring them only
    gaze_offset: int = 0  # -1: the gaze of one raw frame earlier
    rounding: str = "floor"  # "round": nearest pixel, half to even
    kl_skip_zero_near_gaze: bool = False  # KL undefined where the map is ~0 anywhere the blurred gaze is > 0

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise SpecError(f"resolution must be one of {RESOLUTIONS}, got {self.resolution}")
        if not isinstance(self.stride, int) or self.stride < 1:
            raise SpecError(f"stride must be an integer >= 1, got {self.stride!r}")
        if self.blur_border not in BORDERS:
            raise SpecError(f"blur_border must be one of {sorted(BORDERS)}, got {self.blur_border!r}")
        if self.rounding not in ROUNDINGS:
            raise SpecError(f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}")

    @property
    def shape(self) -> tuple[int, int]:
        return (84, 84) if self.resolution == 84 else (210, 160)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def label(self) -> str:
        """The preset's name, with every field that differs from the preset: ``paper``, ``paper+stride=1``."""
        preset = PROTOCOLS.get(self.name)
        if preset is None:
            return self.name
        return self.name + "".join(f"+{k}={v}" for k, v in self.as_dict().items()
                                   if k != "name" and v != getattr(preset, k))

    def describe(self) -> str:
        """One line for the head of every table."""
        h, w = self.shape
        parts = [f"{h}x{w}" + (" (maps resized bilinearly)" if self.resolution == 210 else ""),
                 f"stride {self.stride}" + (" from the trial's first frame" if self.aligned and self.stride > 1
                                            else ""),
                 f"KL vs counts blurred sigma {5 if self.resolution == 210 else 2} ({self.blur_border} border)",
                 "shuffled-AUC negatives: 10 other observations" + (" with replacement"
                                                                    if self.negatives_with_replacement else "")]
        return f"protocol {self.label}: " + ", ".join(parts)


DEFAULT = Protocol("default")
PAPER = Protocol("paper", resolution=210, stride=4, aligned=True, blur_border="reflect",
                 negatives_with_replacement=True)
PROTOCOLS = {p.name: p for p in (DEFAULT, PAPER)}


def from_label(label: str) -> Protocol:
    """The protocol a ``label`` names (``paper``, ``paper+stride=1``, ``default+rounding=round``)."""
    name, *changes = str(label).split("+")
    if name not in PROTOCOLS:
        raise SpecError(f"unknown gaze-eval protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
    preset, fields = PROTOCOLS[name], {}
    for change in changes:
        key, _, value = change.partition("=")
        if key not in preset.as_dict() or key == "name":
            raise SpecError(f"protocol {label!r}: {key!r} is not a protocol field")
        kind = type(getattr(preset, key))
        fields[key] = value == "True" if kind is bool else kind(value)
    return dataclasses.replace(preset, **fields)


def resolve_protocol(protocol: str | Protocol | dict | None = "default", resolution: int | None = None,
                     stride: int | None = None) -> Protocol:
    """A preset by name or label (or a Protocol, or its dict), with ``resolution`` / ``stride`` overriding it
    when given; its ``label`` then says what differs from the preset, so that no table claims a preset it did
    not follow."""
    if protocol is None:
        protocol = DEFAULT
    if isinstance(protocol, dict):
        try:
            protocol = Protocol(**protocol)
        except TypeError as err:
            raise SpecError(f"not a gaze-eval protocol: {err}") from err
    if isinstance(protocol, str):
        protocol = from_label(protocol)
    if not isinstance(protocol, Protocol):
        raise SpecError(f"protocol must be a name ({', '.join(PROTOCOLS)}) or a Protocol, got {protocol!r}")
    changes = {k: v for k, v in (("resolution", resolution), ("stride", stride)) if v is not None}
    return dataclasses.replace(protocol, **changes) if changes else protocol
