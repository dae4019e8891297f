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
    "ObservationError",
    "validate_observation",
    "default_deadline",
    "check_budget",
    "GRADIENT_DTYPES",
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


class ObservationError(AttackNotApplicable, ValueError):
    """The observation itself is malformed: a gradient of the wrong type, dtype, shape or key, a
    missing gradient, non-finite values, bad labels. Both a ``ValueError`` (for Python callers)
    and an ``AttackNotApplicable`` (the runner writes a ``not_applicable`` row naming it)."""


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
    # call (both given: the earlier counts; :func:`resolve_deadline`; neither: the attack's own
    # ``time_budget_s`` knob, :func:`default_deadline`). Past it an attack returns its best result
    # so far with status "partial" or "failed" instead of running on. ``reconstruct`` starts with
    # :func:`validate_observation`.


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


# Gradient dtypes every attack accepts: float16/bfloat16 lose the precision the exact attacks rely
# on (and stall SPEAR's search), integers and complex numbers are not gradients.
GRADIENT_DTYPES = (torch.float32, torch.float64)
_CHUNK = 1 << 22  # entries per finiteness test (bounded temporaries for 10^8-entry layers)


def _finite(t: Tensor) -> bool:
    flat = t.detach().reshape(-1)
    return all(bool(torch.isfinite(c).all()) for c in flat.split(_CHUNK))


def _needed_names(obs: Observation, needed) -> set[str]:
    if needed is None:  # every trainable parameter (what a FedSGD / FedAvg client sends)
        return {n for n, p in obs.model.named_parameters() if p.requires_grad}
    if callable(needed):
        needed = needed(obs.model)
    return set(needed)


def validate_observation(obs: Observation, *, needed=None, finite: bool = True,
                         dtypes: tuple[torch.dtype, ...] = GRADIENT_DTYPES) -> None:
    """Raise :class:`ObservationError` naming the first malformed part of ``obs``.

    Call it first thing in ``reconstruct``: ``validate_observation(obs)``. It checks that

    * ``obs`` is an :class:`Observation` with an ``nn.Module`` model, a :class:`DataSpec`, a
      callable loss, and a non-empty mapping of gradients;
    * every gradient is a ``torch.Tensor`` (not a numpy array) of a dtype in ``dtypes`` (float32
      or float64) keyed by a name of ``obs.model.named_parameters()`` (extra keys are named) with
      exactly that parameter's shape (transposed, truncated, reshaped, wrong bias length);
    * every name in ``needed`` has a gradient: None (the default) = every trainable parameter
      (``requires_grad``), an iterable of names, or a callable ``model -> names`` (e.g. the
      attacked layer's ``weight`` and ``bias``);
    * the values are finite (``finite=False`` skips this pass over the data);
    * ``batch_size`` is None or an int >= 1, ``labels`` None or integer class indices (one per
      sample), ``client_steps`` an int >= 1.
    """
    if not isinstance(obs, Observation):
        raise ObservationError(f"expected an attacks.base.Observation, got {type(obs).__name__}")
    if not isinstance(obs.model, nn.Module):
        raise ObservationError(f"Observation.model is a {type(obs.model).__name__}, not a torch.nn.Module")
    if not isinstance(obs.data_spec, DataSpec):
        raise ObservationError(f"Observation.data_spec is a {type(obs.data_spec).__name__}, not an "
                               "attacks.base.DataSpec")
    if not callable(obs.loss_fn):
        raise ObservationError("Observation.loss_fn is not callable; pass the client's loss, "
                               "e.g. torch.nn.functional.cross_entropy")
    grads = obs.gradients
    if not isinstance(grads, Mapping):
        raise ObservationError(f"Observation.gradients is a {type(grads).__name__}; it must map "
                               "model.named_parameters() names to gradient tensors")
    if not grads:
        raise ObservationError("observation holds no gradients; the server needs the client's "
                               "gradient keyed by model.named_parameters() names")
    params = dict(obs.model.named_parameters())
    extra = [k for k in grads if k not in params]
    if extra:
        raise ObservationError(
            f"observation has gradients for {sorted(map(str, extra))[:5]}, which are not parameters of "
            f"the model; gradients are keyed by model.named_parameters() names ({sorted(params)[:6]}...)")
    allowed = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
    for name, grad in grads.items():
        if not isinstance(grad, Tensor):
            kind = f"{type(grad).__module__}.{type(grad).__name__}".removeprefix("builtins.")
            hint = " (convert with torch.from_numpy)" if type(grad).__module__ == "numpy" else ""
            raise ObservationError(f"gradient of {name!r} is a {kind}, not a torch.Tensor{hint}")
        if grad.dtype not in dtypes:
            raise ObservationError(
                f"gradient of {name!r} has dtype {str(grad.dtype).removeprefix('torch.')}; attacks take "
                f"{allowed} gradients (half precision loses what exact recovery needs, integer "
                f"tensors are not gradients): compute the client's gradient in float32 or float64")
        expected = tuple(params[name].shape)
        if tuple(grad.shape) != expected:
            raise ObservationError(
                f"gradient of {name!r} has shape {_shape(grad.shape)} but the parameter has shape "
                f"{_shape(expected)}; the gradient must have its parameter's shape (transposed, "
                f"truncated or reshaped gradients cannot be attacked)")
    missing = sorted(_needed_names(obs, needed) - set(grads))
    if missing:
        raise ObservationError(
            f"observation lacks the gradient of {missing[:5]}, which this attack needs; the client's "
            f"update must include every trainable parameter's gradient (mark frozen parameters "
            f"requires_grad=False)")
    _check_revealed(obs)
    if finite:
        for name, grad in grads.items():
            if not _finite(grad):
                raise ObservationError(f"gradient of {name!r} is not finite (non-finite entries, NaN/Inf): "
                                       "the client update is unusable")


def _check_revealed(obs: Observation) -> None:
    """batch_size, labels and client_steps: the optional facts the threat model reveals."""
    bs = obs.batch_size
    if bs is not None and (isinstance(bs, bool) or not isinstance(bs, int) or bs < 1):
        raise ObservationError(f"Observation.batch_size={bs!r} must be an int >= 1, or None when hidden")
    steps = obs.client_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ObservationError(f"Observation.client_steps={steps!r} must be an int >= 1")
    y = obs.labels
    if y is None:
        return
    if not isinstance(y, Tensor):
        raise ObservationError(f"Observation.labels is a {type(y).__name__}, not a torch.Tensor of class indices")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool or y.dim() != 1:
        raise ObservationError(f"Observation.labels must be a 1-D integer tensor of class indices, got "
                               f"dtype {str(y.dtype).removeprefix('torch.')} and shape {_shape(y.shape)}")
    if bs is not None and y.shape[0] != bs:
        raise ObservationError(f"Observation.labels holds {y.shape[0]} labels for batch_size={bs}")
    k = obs.data_spec.num_classes
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= k):
        raise ObservationError(f"Observation.labels must lie in [0, {k}) (data_spec.num_classes={k}), "
                               f"got values in [{int(y.min())}, {int(y.max())}]")


def check_gradients(obs: Observation, needed: frozenset[str] | set[str] | tuple = ()) -> None:
    """:func:`validate_observation` with only ``needed`` required (default: nothing beyond the
    gradients given): every gradient a tensor of its parameter's shape, keyed by its name."""
    validate_observation(obs, needed=needed)


def default_deadline(deadline: float | None, budget_s: float | None) -> float | None:
    """``deadline`` when the caller gave one, else ``budget_s`` seconds from now (an attack's own
    ``time_budget_s`` knob, so that a call without a deadline never runs unbounded); None only
    when both are None."""
    if deadline is not None:
        return float(deadline)
    if budget_s is None:
        return None
    return time.monotonic() + float(budget_s)


def check_budget(budget_s, key: str = "time_budget_s") -> float | None:
    """An attack's ``time_budget_s`` knob: seconds > 0 (finite), or None for no default deadline."""
    if budget_s is None:
        return None
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or not 0 < budget_s < math.inf:
        raise ValueError(f"{key}={budget_s!r}: give a number of seconds > 0, or None for no default "
                         "deadline")
    return float(budget_s)


def check_requirements(attack: Attack, obs: Observation) -> None:
    """Raise AttackNotApplicable if the observation does not reveal what the attack requires.

    Also checks the observation's form (:func:`validate_observation` without the pass over the
    values, which every attack makes itself). Structural requirements (e.g. ``relu_linear_layer``)
    are checked by the attack itself.
    """
    validate_observation(obs, needed=(), finite=False)
    missing = sorted((set(attack.requires) & REVEALABLE) - obs.revealed())
    if missing:
        raise AttackNotApplicable(
            f"{attack.name} requires the threat model to reveal {', '.join(missing)}; "
            f"set threat.{missing[0]}_known=true or pick an attack that recovers it"
        )
