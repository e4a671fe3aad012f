"""Checks for step parameters, so a bad recipe value fails at build time with a clear ValueError."""
from __future__ import annotations

from typing import Any


def check_fraction(step: str, name: str, value: float | None) -> None:
    """A ratio threshold must be None (rule off) or a number in [0, 1]."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{step}: {name} must be a number in [0, 1] or null, got {value!r}")


def check_non_negative(step: str, name: str, value: float | None, *, allow_none: bool = True) -> None:
    """A count or length threshold must be a number >= 0, or None (rule off) where `allow_none`."""
    if value is None:
        if not allow_none:
            raise ValueError(f"{step}: {name} must be a number >= 0 (0 turns the rule off), got null")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{step}: {name} must be a number >= 0 or null, got {value!r}")


def check_range(step: str, low_name: str, low: Any, high_name: str, high: Any) -> None:
    """When both bounds are set, the lower must not exceed the upper."""
    if low is not None and high is not None and low > high:
        raise ValueError(f"{step}: {low_name} ({low}) is greater than {high_name} ({high})")


def check_ngram_thresholds(step: str, name: str, value: Any) -> dict[int, float]:
    """An n-gram threshold table: a mapping n -> fraction (YAML keys may arrive as strings) or null."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{step}: {name} must be a mapping of n to a fraction, got {value!r}")
    table: dict[int, float] = {}
    for key, frac in value.items():
        try:
            n = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"{step}: {name} has a non-integer n {key!r}") from None
        if n < 1:
            raise ValueError(f"{step}: {name} has n={n}; n must be >= 1")
        check_fraction(step, f"{name}[{n}]", frac)
        if frac is not None:
            table[n] = float(frac)
    return dict(sorted(table.items()))
