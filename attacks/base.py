"""The attack contract (documented for users in docs/api.md).

An attack sees only an :class:`Observation` -- what an honest-but-curious server receives -- and
returns a :class:`Reconstruction`. It never sees ground truth and never imports ``bench``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Literal, Mapping, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

__all__ = [
    "AttackNotApplicable",
    "DataSpec",
    "FeatureBlock",
    "Observation",
    "Reconstruction",
    "Attack",
    "check_requirements",
    "check_gradients",
    "resolve_deadline",
]


class AttackNotApplicable(Exception):
    """The attack's preconditions are unmet (the message names which one and why).

    The runner turns this into a result row with ``status="not_applicable"``.
    """


@dataclass(frozen=True)
class FeatureBlock:
    """One field of a tabular record and the columns ``[start, stop)`` that encode it.

    ``categorical``: a one-hot block, one column per entry of ``categories``. ``continuous``: one
    column holding the value in original units before standardisation; ``low``/``high`` are the
    field's public range and ``step`` its grid (1.0 for integer-valued fields), None when unknown.
    Derived from the dataset's schema and public statistics, never from a client's batch.
    """

    name: str
    kind: Literal["categorical", "continuous"]
    start: int
    stop: int
    categories: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None

    @property
    def columns(self) -> slice:
        return slice(self.start, self.stop)


@dataclass(frozen=True)
class DataSpec:
    """What client and server both know about the input space.

    Images: ``mean``/``std`` per channel map [0, 1] pixels to model inputs. Tabular
    (``kind="tabular"``, ``shape=(n_features,)``): ``mean``/``std`` per column map encoded records
    (one-hot columns in {0, 1}, continuous columns in original units) to model inputs, and
    ``feature_blocks`` says which columns form which field.
    """

    shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    kind: Literal["image", "tabular"] = "image"
    feature_blocks: tuple[FeatureBlock, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "tabular":
            n = self.numel
            if len(self.shape) != 1 or len(self.mean) != n or len(self.std) != n:
                raise ValueError(f"tabular DataSpec needs shape=(n_features,) and one mean/std per column; "
                                 f"got shape={self.shape}, {len(self.mean)} means, {len(self.std)} stds")
            at = 0
            for blk in self.feature_blocks:
                if blk.start != at or blk.stop <= blk.start or (
                        blk.kind == "categorical" and blk.stop - blk.start != len(blk.categories)) or (
                        blk.kind == "continuous" and blk.stop - blk.start != 1):
                    raise ValueError(f"feature block {blk.name!r} ({blk.kind}, columns {blk.start}:{blk.stop}) "
                                     f"does not continue the layout at column {at}")
                at = blk.stop
            if self.feature_blocks and at != n:
                raise ValueError(f"feature blocks cover {at} of the {n} columns")

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
        """Lower and upper bound of valid inputs in model-input space ([0,1] pixels normalised).

        Tabular: one-hot columns lie in [0, 1] before normalisation; a continuous column in its
        block's [low, high] (unbounded where the block gives no range).
        """
        mean, std = self._stats(like)
        lo, hi = (0 - mean) / std, (1 - mean) / std
        if self.kind == "tabular":
            lo, hi = lo.clone(), hi.clone()
            for blk in self.feature_blocks:
                if blk.kind == "continuous":
                    c = blk.start
                    lo[..., c] = -math.inf if blk.low is None else (blk.low - self.mean[c]) / self.std[c]
                    hi[..., c] = math.inf if blk.high is None else (blk.high - self.mean[c]) / self.std[c]
        return lo, hi


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
    # Intermediate reconstructions of a pipeline, by stage name (e.g. "fi"), each (B', *shape) in
    # model-input space; the runner scores each as stage_<name>_psnr (and _lpips where available).
    stages: dict[str, Tensor] = field(default_factory=dict)

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
        self, obs: Observation, *, generator: torch.Generator, deadline: float | None = None,
        time_budget_s: float | None = None,
    ) -> Reconstruction: ...
    # ``deadline`` is an absolute ``time.monotonic()`` value, ``time_budget_s`` seconds from the
    # call (both given: the earlier counts; :func:`resolve_deadline`). Past it an attack returns its
    # best result so far with status "partial" or "failed" instead of running on.


def resolve_deadline(deadline: float | None = None, time_budget_s: float | None = None) -> float | None:
    """The absolute ``time.monotonic()`` deadline of one ``reconstruct`` call.

    ``deadline`` is already absolute; ``time_budget_s`` counts seconds from now. With both, the
    earlier wins; with neither there is no deadline (None).
    """
    if time_budget_s is None:
        return deadline
    budget = float(time_budget_s)
    if not budget > 0:
        raise ValueError(f"time_budget_s={time_budget_s!r}: give a number of seconds > 0, or None for "
                         "no time limit")
    own = time.monotonic() + budget
    return own if deadline is None else min(float(deadline), own)


# Requirements an attack can declare that the threat model must reveal.
REVEALABLE = frozenset({"labels", "batch_size"})


def _shape(t) -> str:
    return str(tuple(int(d) for d in t))


def check_gradients(obs: Observation, needed: frozenset[str] | set[str] | tuple = ()) -> None:
    """Raise AttackNotApplicable unless every gradient matches its parameter's shape.

    Every entry of ``obs.gradients`` must be a tensor keyed by a name of
    ``obs.model.named_parameters()`` with exactly that parameter's shape (a transposed, truncated or
    reshaped gradient would otherwise surface as a raw torch error deep inside an attack).
    ``needed``: parameter names the attack cannot do without; each must be present.
    """
    params = dict(obs.model.named_parameters())
    if not obs.gradients:
        raise AttackNotApplicable("observation holds no gradients; the server needs the client's "
                                  "gradient keyed by model.named_parameters() names")
    for name, grad in obs.gradients.items():
        if name not in params:
            raise AttackNotApplicable(
                f"observation has a gradient for {name!r}, which is not a parameter of the model; "
                f"gradients are keyed by model.named_parameters() names ({sorted(params)[:6]}...)")
        if not isinstance(grad, Tensor):
            raise AttackNotApplicable(f"gradient of {name!r} is a {type(grad).__name__}, not a torch.Tensor")
        expected = tuple(params[name].shape)
        if tuple(grad.shape) != expected:
            raise AttackNotApplicable(
                f"gradient of {name!r} has shape {_shape(grad.shape)} but the parameter has shape "
                f"{_shape(expected)}; the gradient must have its parameter's shape (transposed, "
                f"truncated or reshaped gradients cannot be attacked)")
    missing = [n for n in needed if n not in obs.gradients]
    if missing:
        raise AttackNotApplicable(
            f"observation lacks the gradient of {sorted(missing)}, which this attack needs; "
            f"the client's update must include every parameter's gradient")


def check_requirements(attack: Attack, obs: Observation) -> None:
    """Raise AttackNotApplicable if the observation does not reveal what the attack requires.

    Also checks the observation itself (:func:`check_gradients`: every gradient has its
    parameter's shape). Structural requirements (e.g. ``relu_linear_layer``) are checked by the
    attack itself.
    """
    check_gradients(obs)
    missing = sorted((set(attack.requires) & REVEALABLE) - obs.revealed())
    if missing:
        raise AttackNotApplicable(
            f"{attack.name} requires the threat model to reveal {', '.join(missing)}; "
            f"set threat.{missing[0]}_known=true or pick an attack that recovers it"
        )
