"""The knob type of the config schema (bench/run/config_schema.py): a value's kind, allowed range
and the meaning of null and 0, with the constructors the schema's tables are written in."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

__all__ = ["Knob", "Int", "Float", "Bool", "Choice", "Text", "Node", "BIG", "HUGE", "SECONDS", "THREADS"]

BIG = 10**9            # iterations, proposals and similar counts
HUGE = 1e6             # loss weights
SECONDS = 1e7          # ~116 days: any longer deadline is a typo
THREADS = 1024


@dataclass(frozen=True)
class Knob:
    """One config value: ``kind`` int | float | bool | choice | text | ints | floats | device |
    layer | node, its closed/open range ``[lo, hi]``, what null and 0 mean when allowed."""

    kind: str
    help: str = ""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple = ()
    pattern: str | None = None
    null: str | None = None      # meaning of null; None: null is refused
    zero: str | None = None      # meaning of 0 (documentation; 0 must lie in the range)
    nodes: dict = field(default_factory=dict, compare=False)  # kind "node": knob tables by _target_

    # ------------------------------------------------------------------ description
    def allowed(self) -> str:
        if self.kind in ("int", "float", "ints", "floats"):
            what = "an integer" if self.kind in ("int", "ints") else "a finite number"
            if self.kind in ("ints", "floats"):
                what = "a list of " + ("integers" if self.kind == "ints" else "finite numbers")
            lo = "(" if self.lo_open else "["
            hi = ")" if self.hi_open else "]"
            text = f"{what} in {lo}{_num(self.lo)}, {_num(self.hi)}{hi}"
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "choice":
            text = "one of " + ", ".join(map(str, self.choices))
        elif self.kind == "device":
            text = "one of auto, cpu, cuda, cuda:<index>"
        elif self.kind == "layer":
            text = "a module name (or its index in an nn.Sequential)"
        elif self.kind == "node":
            text = "a config node with _target_ one of " + ", ".join(sorted(self.nodes))
        else:
            text = f"a string matching {self.pattern}" if self.pattern else "a string"
        if self.null is not None:
            text += f", or null ({self.null})"
        return text

    # ------------------------------------------------------------------ checking
    def problem(self, value) -> str | None:
        """None when ``value`` is allowed, else why not (the caller adds key and allowed range)."""
        if value is None:
            return None if self.null is not None else "null is not allowed"
        if self.kind in ("ints", "floats"):
            if not isinstance(value, (list, tuple)) or not value:
                return "a non-empty list is required"
            for v in value:
                p = self._scalar(v, "int" if self.kind == "ints" else "float")
                if p:
                    return f"element {v!r}: {p}"
            return None
        return self._scalar(value, self.kind)

    def _scalar(self, value, kind: str) -> str | None:
        if kind == "bool":
            return None if isinstance(value, bool) else "true or false is required"
        if kind in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return "a number is required"
            if kind == "int" and not isinstance(value, int):
                return "an integer is required" + (f", write {int(value)}" if math.isfinite(value)
                                                   and float(value).is_integer() else "")
            if not math.isfinite(value):
                return "a finite number is required"
            if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
                return "out of range"
            if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
                return "out of range"
            return None
        if kind == "choice":
            return None if value in self.choices else "unknown value"
        if kind == "device":
            ok = isinstance(value, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", value)
            return None if ok else "unknown device"
        if kind == "layer":
            if isinstance(value, str) and value:
                return None
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            return None if ok else "a module name is required"
        if kind == "text":
            if not isinstance(value, str) or not value:
                return "a non-empty string is required"
            if self.pattern and not re.fullmatch(self.pattern, value):
                return "not allowed"
            return None
        raise AssertionError(f"unknown knob kind {kind!r}")


def _num(v) -> str:
    if v is None:
        return "inf"
    if isinstance(v, int):
        k = len(str(abs(v))) - 1
        return f"10^{k}" if v >= 10**6 and v == 10**k else str(v)
    return f"{v:g}"


# ---------------------------------------------------------------------- constructors
def Int(lo, hi, help="", **kw) -> Knob:
    return Knob("int", help, lo=lo, hi=hi, **kw)


def Float(lo, hi, help="", **kw) -> Knob:
    return Knob("float", help, lo=lo, hi=hi, **kw)


def Bool(help="", **kw) -> Knob:
    return Knob("bool", help, **kw)


def Choice(*choices, help="", **kw) -> Knob:
    return Knob("choice", help, choices=tuple(choices), **kw)


def Text(help="", pattern=None, **kw) -> Knob:
    return Knob("text", help, pattern=pattern, **kw)


def Node(nodes: dict, help="", **kw) -> Knob:
    return Knob("node", help, nodes=nodes, **kw)
