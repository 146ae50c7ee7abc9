"""``model.dtype: auto`` resolves to what is fast on this machine; bf16 where it is slow gets a warning."""

from __future__ import annotations

import pytest

import launch.setup as setup
from launch.config import RecipeConfig


@pytest.mark.parametrize("fast,expected", [(True, "bfloat16"), (False, "float32")])
def test_auto_dtype_follows_the_hardware(monkeypatch, capsys, fast, expected):
    monkeypatch.setattr(setup, "bf16_is_fast", lambda: fast)
    cfg = RecipeConfig()
    cfg.model.dtype = "auto"
    setup.resolve_dtype(cfg)
    assert cfg.model.dtype == expected
    assert f"auto -> {expected}" in capsys.readouterr().out


def test_explicit_bf16_on_a_slow_cpu_warns_and_is_kept(monkeypatch, capsys):
    monkeypatch.setattr(setup, "bf16_is_fast", lambda: False)
    cfg = RecipeConfig()
    cfg.model.dtype = "bfloat16"
    setup.resolve_dtype(cfg)
    assert cfg.model.dtype == "bfloat16" and "warning: model.dtype=bfloat16" in capsys.readouterr().out
    cfg.model.dtype = "float32"
    setup.resolve_dtype(cfg)
    assert capsys.readouterr().out == ""


def test_this_machine_answers_without_error():
    assert isinstance(setup.bf16_is_fast(), bool)
