"""Reward plugins: the registry of built-in rewards and the resolver for ``rewards.functions[].name``.

A reward plugin is a plain function called with keywords only, as TRL calls its reward functions::

    fn(prompts=[...], completions=[...], completion_ids=[...], answer=[...], <column>=[...], **recipe_kwargs)
        -> list[float | None]

- ``prompts[i]`` is the problem text (before any chat template), ``completions[i]`` the model's reply,
  ``completion_ids[i]`` its generated token ids, ``answer[i]`` the reference answer (``None`` where the row
  has none); every dataset column (``Prompt.columns``) comes as a list aligned with the batch; then the
  recipe's ``kwargs`` for this function (plain values, not lists).
- So a TRL-style ``def reward(completions, **kwargs)`` works as written, and so does
  ``def reward(prompts, completions, answer, **kw)``. A function without ``**kwargs`` receives only the
  names it declares. ``check_signature`` runs before any actor starts: a required parameter that nothing
  supplies (a misspelt column, ``completion`` for ``completions``) fails there, naming plugin and parameter.
- Return one value per completion: a number (``True``/``False`` count as 1/0), or ``None`` for
  "no reward signal" (the sample is left out of the loss). NaN, a wrong length or a non-number is
  treated as a plugin failure by :class:`rewards.scorer.RewardScorer`.

Example, a plugin in ``my_rewards.py`` named as ``my_rewards.py:short`` in a recipe:

>>> def short(prompts, completions, max_chars=20, **columns):
...     return [1.0 if len(c) <= max_chars else 0.0 for c in completions]
>>> short(["What is 2 + 3?"], ["5", "It is five, because two plus three is five."], answer=["5", "5"])
[1.0, 0.0]

A plugin may carry ``fn.check_kwargs(kwargs)`` (raise ValueError on bad recipe kwargs): the recipe check
calls it before any actor starts, so a missing option fails at load time with its key.

``resolve_reward(spec)`` accepts a registered name (``math``, ``format``), an import path
``pkg.mod:fn`` or a file path ``path/to/file.py:fn`` (relative to the current directory).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

RewardFn = Callable[..., list[float | None]]

REWARDS: dict[str, RewardFn] = {}


class RewardPluginError(ValueError):
    """A reward spec that cannot be resolved; the message is one line naming the spec and the problem."""


def register_reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator: register ``fn`` as the built-in reward ``name``."""

    def deco(fn: RewardFn) -> RewardFn:
        if name in REWARDS and REWARDS[name] is not fn:
            raise ValueError(f"reward {name!r} is already registered ({REWARDS[name].__module__})")
        REWARDS[name] = fn
        return fn

    return deco


def _is_file_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


def _load_file_module(spec: str, target: str) -> Any:
    path = Path(target).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    path = path.resolve()
    if not path.is_file():
        raise RewardPluginError(f"reward plugin {spec!r}: file not found ({path})")
    # A stable, unique module name per file so the module is executed once per process and
    # pickling/dataclasses inside the plugin can find it in sys.modules.
    mod_name = f"_forge_reward_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    mspec = importlib.util.spec_from_file_location(mod_name, path)
    if mspec is None or mspec.loader is None:
        raise RewardPluginError(f"reward plugin {spec!r}: cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(mspec)
    sys.modules[mod_name] = module
    try:
        mspec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[mod_name]
        raise RewardPluginError(
            f"reward plugin {spec!r}: importing {path} failed: {type(e).__name__}: {e}"
        ) from e
    return module


def resolve_reward(spec: str) -> RewardFn:
    """The reward function for a registered name, ``pkg.mod:fn`` or ``path/to/file.py:fn``."""
    if spec in REWARDS:
        return REWARDS[spec]
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise RewardPluginError(
            f"reward plugin {spec!r}: not a registered reward (registered: {', '.join(sorted(REWARDS))}) "
            "nor an import path pkg.mod:fn or path/to/file.py:fn"
        )
    if _is_file_path(target):
        module = _load_file_module(spec, target)
        where = f"file {target!r}"
    else:
        try:
            module = importlib.import_module(target)
        except Exception as e:
            raise RewardPluginError(
                f"reward plugin {spec!r}: cannot import module {target!r}: {type(e).__name__}: {e}"
            ) from e
        where = f"module {target!r}"
    if not hasattr(module, attr):
        raise RewardPluginError(f"reward plugin {spec!r}: {where} has no attribute {attr!r}")
    fn = getattr(module, attr)
    if not callable(fn):
        raise RewardPluginError(f"reward plugin {spec!r}: {attr!r} is not callable ({type(fn).__name__})")
    return fn


# Names the scorer always supplies, besides the dataset columns and the recipe kwargs.
ALWAYS_SUPPLIED = ("prompts", "completions", "completion_ids", "answer")


def _signature(fn: RewardFn) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins / C callables have none: call them with everything
        return None


def call_reward(fn: RewardFn, prompts: list[str], completions: list[str], kwargs: dict[str, Any]) -> Any:
    """``fn`` called with keywords (TRL's convention); without ``**kwargs`` only the names it declares."""
    args = {"prompts": prompts, "completions": completions, **kwargs}
    sig = _signature(fn)
    if sig is not None and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        args = {k: v for k, v in args.items() if k in sig.parameters}
    return fn(**args)


def check_signature(spec: str, fn: RewardFn, available: set[str] | list[str]) -> None:
    """Raise ``RewardPluginError`` naming the plugin and the parameter when ``fn`` cannot be called with the
    names in ``available`` (``ALWAYS_SUPPLIED``, the dataset's columns and the recipe kwargs)."""
    sig = _signature(fn)
    if sig is None:
        return
    have = set(available) | set(ALWAYS_SUPPLIED)
    for name, p in sig.parameters.items():
        if p.kind is p.POSITIONAL_ONLY:
            raise RewardPluginError(
                f"reward plugin {spec!r}: parameter {name!r} is positional-only; plugins are called with "
                "keywords (prompts=, completions=, columns...)"
            )
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is not p.empty or name in have:
            continue
        raise RewardPluginError(
            f"reward plugin {spec!r}: required parameter {name!r} is not supplied; available: "
            f"{', '.join(sorted(have))} (dataset columns and recipe kwargs included)"
        )


def reward_key(spec: str) -> str:
    """Short name of a spec for metrics and ``Sample.reward_details``: the registered name or the function name."""
    return spec if spec in REWARDS or ":" not in spec else spec.rpartition(":")[2]


# Built-ins register themselves on import; they import their heavy dependencies (math_verify)
# inside the functions, so this stays cheap. Imported last: they import register_reward from here.
from rewards import chronoqa as _chronoqa  # noqa: E402, F401
from rewards import env as _env  # noqa: E402, F401
from rewards import format as _format  # noqa: E402, F401
from rewards import gqr as _gqr  # noqa: E402, F401
from rewards import guards as _guards  # noqa: E402, F401
from rewards import math as _math  # noqa: E402, F401
from rewards import overlong as _overlong  # noqa: E402, F401
