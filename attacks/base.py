"""The attack contract (DESIGN §2).

An attack sees only an :class:`Observation` -- what an honest-but-curious server receives -- and
returns a :class:`Reconstruction`. It never sees ground truth and never imports ``bench``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Literal, Mapping, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

__all__ = [
    "AttackNotApplicable",
    "DataSpec",
    "Observation",
    "Reconstruction",
    "Attack",
    "check_requirements",
]


class AttackNotApplicable(Exception):
    """The attack's preconditions are unmet (the message names which one and why).

    The runner turns this into a result row with ``status="not_applicable"``.
    """


@dataclass(frozen=True)
class DataSpec:
    """What client and server both know about the input space."""

    shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    kind: Literal["image", "tabular"] = "image"

    @property
    def numel(self) -> int:
        return int(math.prod(self.shape))

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        view = (1, len(self.mean)) + (1,) * (len(self.shape) - 1) if self.kind == "image" else (1, -1)
        mean = torch.as_tensor(self.mean, dtype=like.dtype, device=like.device).reshape(view)
        std = torch.as_tensor(self.std, dtype=like.dtype, device=like.device).reshape(view)
        return mean, std

    def denormalize(self, x: Tensor) -> Tensor:
        """Model-input space -> [0, 1] pixel space (images) or original units (tabular)."""
        mean, std = self._stats(x)
        return x * std + mean

    def normalize(self, x: Tensor) -> Tensor:
        mean, std = self._stats(x)
        return (x - mean) / std

    def box(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """Lower and upper bound of valid images in model-input space ([0,1] pixels normalised)."""
        mean, std = self._stats(like)
        return (0 - mean) / std, (1 - mean) / std


@dataclass(frozen=True)
class Observation:
    """Everything an honest-but-curious server sees; never ground truth."""

    model: nn.Module
    gradients: Mapping[str, Tensor]
    loss_fn: Callable
    data_spec: DataSpec
    batch_size: int | None = None
    labels: Tensor | None = None
    client_steps: int = 1
    update_meta: Mapping[str, float] = field(default_factory=dict)

    def revealed(self) -> frozenset[str]:
        """Names of optional facts this threat model reveals (matched against ``Attack.requires``)."""
        out = set()
        if self.batch_size is not None:
            out.add("batch_size")
        if self.labels is not None:
            out.add("labels")
        return frozenset(out)


@dataclass
class Reconstruction:
    inputs: Tensor                       # (B', *shape) in model-input (normalised) space
    labels: Tensor | None = None
    status: Literal["ok", "partial", "failed"] = "ok"
    diagnostics: dict[str, float | int | str] = field(default_factory=dict)   # scalars only
    # Inputs of the attacked layer as recovered by stage 1 of a pipeline (features after a conv
    # trunk), rows = samples; the runner scores them against the true features (feature_cosine).
    layer_inputs: Tensor | None = None

    def __post_init__(self) -> None:
        for k, v in self.diagnostics.items():
            if not isinstance(v, (int, float, str, bool)) and v is not None:
                raise TypeError(f"diagnostic {k!r} must be a scalar (int/float/str), got {type(v).__name__}")


@runtime_checkable
class Attack(Protocol):
    name: ClassVar[str]
    requires: ClassVar[frozenset[str]]

    def prepare(self, model: nn.Module, data_spec: DataSpec) -> None: ...

    def reconstruct(
        self, obs: Observation, *, generator: torch.Generator, deadline: float | None = None
    ) -> Reconstruction: ...
    # ``deadline`` is an absolute ``time.monotonic()`` value; past it an attack returns its best
    # result so far with status "partial" or "failed" instead of running on.


# Requirements an attack can declare that the threat model must reveal.
REVEALABLE = frozenset({"labels", "batch_size"})


def check_requirements(attack: Attack, obs: Observation) -> None:
    """Raise AttackNotApplicable if the observation does not reveal what the attack requires.

    Structural requirements (e.g. ``relu_linear_layer``) are checked by the attack itself.
    """
    missing = sorted((set(attack.requires) & REVEALABLE) - obs.revealed())
    if missing:
        raise AttackNotApplicable(
            f"{attack.name} requires the threat model to reveal {', '.join(missing)}; "
            f"set threat.{missing[0]}_known=true or pick an attack that recovers it"
        )
