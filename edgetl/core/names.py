"""Parsing and checking user-given values: comma lists of names, and numbers (type, finite,
range) checked before any work starts."""
import math

from .errors import ConfigError


def parse_names(value, allowed, what) -> list:
    """'a,b' (or a list) -> ['a', 'b'], each one of `allowed`; a clear error otherwise."""
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise ConfigError(f"unknown {what} '{','.join(bad) or value}': choose from "
                          f"{', '.join(allowed)}")
    return names


def check_number(name: str, value, kind=float, low=None, high=None, low_open=False,
                 where: str = "") -> None:
    """`value` is a finite `kind` (int: a whole number) within [low, high] (low excluded if
    low_open); else one ConfigError line naming the setting and what it takes."""
    prefix = f"{where}: " if where else ""
    ok_type = isinstance(value, int) if kind is int else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise ConfigError(f"{prefix}{name}={value!r}: must be {'a whole number' if kind is int else 'a number'}")
    if not math.isfinite(value):
        raise ConfigError(f"{prefix}{name}={value!r}: must be a finite number")
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"<= {high:g}"
        raise ConfigError(f"{prefix}{name}={value!r} is out of range: use a value "
                          f"{' and '.join(p for p in (lo, hi) if p)}")
