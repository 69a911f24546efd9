"""Allowed values of config fields, checked before a job writes anything.

Why data and not ``if`` chains: the same limits serve options, ``--config`` files and a resumed
``config.json``, and every refusal reads the same way: ``--lr-per-256 must be > 0, got -1``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any

from spnas.errors import SpnasError


@dataclass(frozen=True)
class Limit:
    """A closed or open interval for numbers, or a set of choices for strings."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()

    def problem(self, value: Any) -> str | None:
        if self.choices:
            return None if value in self.choices else f"must be one of: {', '.join(self.choices)}"
        if not math.isfinite(value):
            return "must be a finite number"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"must be {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return f"must be {'<' if self.high_open else '<='} {self.high:g}"
        return None


def at_least(low: float) -> Limit:
    return Limit(low=low)


def positive() -> Limit:
    return Limit(low=0, low_open=True)


def fraction(low_open: bool = False, high_open: bool = True) -> Limit:
    return Limit(low=0, high=1, low_open=low_open, high_open=high_open)


def one_of(*choices: str) -> Limit:
    return Limit(choices=tuple(choices))


def option_name(field: str) -> str:
    return "--" + field.rstrip("_").replace("_", "-")


def check_types(cfg: Any, source: str = "") -> None:
    """Every field has its declared type (ints for ints, numbers for floats, ...), as a config file
    can say ``epochs: ten``; ints given for float fields are converted in place."""
    hints = typing.get_type_hints(type(cfg))
    prefix = f"{source}: " if source else ""
    for f in dataclasses.fields(cfg):
        value, kind = getattr(cfg, f.name), hints[f.name]
        args = typing.get_args(kind)
        if value is None:
            if type(None) in args:
                continue
            raise SpnasError(f"{prefix}{option_name(f.name)} needs a value")
        base = next((t for t in args if t is not type(None)), kind)
        ok = (isinstance(value, bool) if base is bool else
              isinstance(value, int) and not isinstance(value, bool) if base is int else
              isinstance(value, (int, float)) and not isinstance(value, bool) if base is float else
              isinstance(value, base))
        if not ok:
            raise SpnasError(f"{prefix}{option_name(f.name)} must be {base.__name__}, got {value!r}")
        if base is float and isinstance(value, int):
            object.__setattr__(cfg, f.name, float(value))


def check_limits(cfg: Any, limits: dict[str, Limit], source: str = "") -> None:
    """Types first, then each limited field that is set; the first problem is one line."""
    check_types(cfg, source)
    prefix = f"{source}: " if source else ""
    for name, limit in limits.items():
        value = getattr(cfg, name)
        if value is None:
            continue
        problem = limit.problem(value)
        if problem:
            raise SpnasError(f"{prefix}{option_name(name)} {problem}, got {value!r}")
