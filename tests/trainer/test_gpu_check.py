"""scripts/gpu_check.py on a CUDA machine: learner (ZeRO 0/2/3, NCCL, bf16) + HF engine weight sync, no Ray."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("forge_gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.gpu
def test_gpu_check():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (torch.cuda.is_available() is False)")
    pytest.importorskip("deepspeed")
    assert _load_script().main([]) == 0, "scripts/gpu_check.py reported a FAIL (see its output above)"
