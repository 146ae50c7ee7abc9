"""A NaN-skipped update must leave no gradient behind, under every ZeRO stage (real DeepSpeed, gloo).

The NaN sits in the *last* micro-batch, so earlier micro-batches have already been back-propagated and,
under ZeRO-2/3, reduced into the optimizer's own partition buffers. The step after the skip must equal
the same step taken from the checkpoint written before the skip (before the fix it had about twice the
grad norm under ZeRO-2/3).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_step_after_nan_skip_equals_clean_step(tiny_model: str, tmp_path: Path, stage: int) -> None:
    cmd = [
        sys.executable,
        "-m",
        "tests.support.nan_skip_probe",
        str(stage),
        tiny_model,
        str(tmp_path / "ckpt"),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["skipped"] == 1.0
    assert result["after"] == pytest.approx(result["reference"], rel=1e-4)
