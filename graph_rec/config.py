"""Typed model settings shared by every ``python -m graph_rec train MODEL`` runner.

Each model declares one dataclass (its fields documented once, beside the field). This module turns that
dataclass into the three ways a user sets a value, applied in this order (later wins):

1. the dataclass defaults (and, for some models, a per-dataset file such as ``configs/graphlearner/cora.json``);
2. ``--config FILE`` (a JSON object of field names, ``_comment`` ignored);
3. ``--set KEY=VALUE`` (repeatable, VALUE parsed as JSON, bare words stay strings);
4. a field's own flag (``--lr 0.01``; every field has one, dashes for underscores).

Unknown keys, wrong types and values outside a field's ``choices`` fail before any compute, naming the key and
where it came from (the file, or "overridden by --set").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

_SCALARS = (bool, int, float, str)


class ConfigError(ValueError):
    """A bad setting (unknown key, wrong type, value outside its choices, unreadable file): the CLI prints the
    message as one line and exits with status 2 before any compute."""


def field_types(cls: type) -> dict[str, type]:
    """Field name -> its scalar type (int, float, str or bool), resolved from the annotations."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in fields(cls):
        t = hints[f.name]
        if t not in _SCALARS:
            raise TypeError(
                f"{cls.__name__}.{f.name}: config fields must be int, float, str or bool, not {t}"
            )
        out[f.name] = t
    return out


def choices_of(f: dataclasses.Field) -> tuple[Any, ...] | None:
    """A field restricted to a few values says so with ``field(default=..., metadata={"choices": (...)})``."""
    return f.metadata.get("choices")


def config_from_dict(
    cls: type, raw: dict[str, Any], source: str, overrides: dict[str, Any] | None = None
) -> Any:
    """Build and type-check ``cls`` from ``raw`` plus ``overrides``; ``source`` names the file in every error."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    raw = {k: v for k, v in raw.items() if k != "_comment"}
    raw = {**raw, **overrides}

    def where(*keys: str) -> str:  # blame the command-line override, not the file, when it is at fault
        return f"{source} (overridden by --set)" if any(k in overrides for k in keys) else source

    types = field_types(cls)
    unknown = sorted(set(raw) - set(types))
    if unknown:
        raise ConfigError(f"{where(*unknown)}: unknown keys {unknown}; valid keys are {sorted(types)}")
    for f in fields(cls):
        name, expected = f.name, types[f.name]
        if name not in raw:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError(f"{source}: required key {name!r} is missing")
            continue
        value = raw[name]
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = raw[name] = float(value)
        # bool is a subclass of int: reject True for an int field, accept it for a bool field
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            raise ConfigError(f"{where(name)}: {name}={value!r} should be {expected.__name__}")
        allowed = choices_of(f)
        if allowed is not None and value not in allowed:
            raise ConfigError(f"{where(name)}: {name}={value!r}; choose one of {list(allowed)}")
    return cls(**raw)


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``["lr=5e-4", "objective=joint"]`` -> values parsed as JSON (bare words stay strings)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. --set epochs=3")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A JSON object of config fields; a missing file or a non-object fails naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        raw = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"--config {path}: not JSON ({e})") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"--config {path}: a config file holds one JSON object of field names")
    return raw


def add_field_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--field-name`` flag per field (default None: "not given", so lower layers show through)."""
    group = parser.add_argument_group(f"{cls.__name__} fields (also settable by --config / --set)")
    for f in fields(cls):
        t = field_types(cls)[f.name]
        flag = "--" + f.name.replace("_", "-")
        default = "required" if f.default is MISSING else repr(f.default)
        kw: dict[str, Any] = {"dest": f"cfg_{f.name}", "default": None, "help": f"default {default}"}
        if t is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        else:
            group.add_argument(
                flag,
                type=t,
                choices=choices_of(f),
                metavar=None if choices_of(f) else t.__name__.upper(),
                **kw,
            )


def flag_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The field flags the user gave (``cfg_*`` attributes that are not None)."""
    return {
        f.name: getattr(args, f"cfg_{f.name}")
        for f in fields(cls)
        if getattr(args, f"cfg_{f.name}", None) is not None
    }


def resolve(
    cls: type,
    base: dict[str, Any],
    base_source: str,
    config_file: str | None,
    assignments: list[str] | None,
    flags: dict[str, Any],
) -> Any:
    """Layers 1-4 of the module docstring, merged and validated."""
    raw = dict(base)
    source = base_source
    if config_file:
        raw.update(read_config_file(config_file))
        source = str(config_file)
    overrides = {**parse_assignments(assignments), **flags}  # a field's own flag wins over --set
    return config_from_dict(cls, raw, source, overrides)
