"""Options defined once: each setting is a dataclass field whose metadata holds its help, its
kind, its range or choices; the one validator and the command line's flags are read from it.
The layers a value can come from, lowest first: the field's default, a target profile, a
--config TOML file, the command line."""
import os
from dataclasses import field, fields
from typing import get_args

from .errors import ConfigError
from .names import check_number


def option(default, help: str, *, kind=None, low=None, high=None, choices=None,
           unset: str = "", spelled: str = ""):
    """A setting: `kind` (default: the default's type), range [low, high] (`low` given as
    ("above", x) excludes x) or `choices`; `unset` says what None means ("the model's own");
    `spelled`: its flag when it is not the field's name."""
    low_open = isinstance(low, tuple)
    return field(default=default, metadata={"help": help, "kind": kind,
                                            "low": low[1] if low_open else low, "high": high,
                                            "low_open": low_open, "choices": choices,
                                            "unset": unset, "spelled": spelled})


def kind_of(f) -> type:
    kind = f.metadata.get("kind") or f.type
    kind = {"int": int, "float": float, "str": str, "bool": bool}.get(kind, kind)
    return next((t for t in get_args(kind) if t is not type(None)), kind)   # int | None


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check(obj, where: str = ""):
    """Every field of `obj` of its kind, in its range or among its choices; one ConfigError
    line naming the setting otherwise. Returns obj."""
    prefix = f"{where}: " if where else ""
    for f in fields(obj):
        m, value = f.metadata, getattr(obj, f.name)
        if not m or (value is None and (m["unset"] or f.default is None)):  # None allowed
            continue
        kind = kind_of(f)
        if kind is bool and not isinstance(value, bool):
            raise ConfigError(f"{prefix}{f.name}={value!r}: must be true or false")
        if kind is str and not isinstance(value, (str, os.PathLike)):
            raise ConfigError(f"{prefix}{f.name}={value!r}: must be a string")
        if kind in (int, float):
            check_number(f.name, value, kind, m["low"], m["high"], m["low_open"],
                         where)
        if m["choices"] and value not in m["choices"]:
            raise ConfigError(f"{prefix}unknown {f.name.replace('_', ' ')} {value!r}: choose "
                              f"one of {', '.join(map(str, m['choices']))}")
    return obj


def shown_default(f) -> str:
    if f.default is None:
        return f.metadata.get("unset") or "none"
    if isinstance(f.default, tuple):
        return ",".join(f.default) or "none"
    return str(f.default)


def add_flags(parser, cls, rename=None, skip=()) -> None:
    """One --flag per field of `cls` (dest: the field name, or rename's), its help and default
    from the field; parsed defaults stay None, so lower layers (profile, TOML) show through."""
    import argparse
    rename = rename or {}
    for f in fields(cls):
        if f.name in skip or not f.metadata:
            continue
        dest = rename.get(f.name, f.name)
        name = f.metadata["spelled"] if f.name not in rename and f.metadata["spelled"] else dest
        choices = f.metadata["choices"]
        text = f.metadata["help"] + (f"; one of {', '.join(choices)}" if choices else "") + \
            f" (default: {shown_default(f)})"
        if kind_of(f) is bool:
            parser.add_argument(flag(name), dest=dest, action=argparse.BooleanOptionalAction,
                                default=None, help=text)
        else:
            kind = kind_of(f)
            parser.add_argument(flag(name), dest=dest, default=None, help=text,
                                type=kind if kind in (int, float) else str)


def known(cls) -> set:
    return {f.name for f in fields(cls)}


def split_layers(values: dict, *classes) -> list:
    """{name: value} -> one dict per class, a name going to the first class that has it (None
    dropped); a name no class has is one error line."""
    values = {k: v for k, v in values.items() if v is not None}
    unknown = sorted(set(values) - set().union(*(known(c) for c in classes)))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
    layers, taken = [], set()
    for c in classes:
        layers.append({k: v for k, v in values.items() if k in known(c) and k not in taken})
        taken |= known(c)
    return layers


def make(cls, values: dict, where: str = "options"):
    """cls(**values), a setting it does not have being one error line (not a TypeError)."""
    unknown = sorted(set(values) - known(cls))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(known(cls)))}")
    return cls(**values)
