"""One-shot GPU check of ``rollout.sleep_when_idle`` (vLLM sleep mode in the colocated placement), without Ray.

    python3 scripts/gpu_vllm_sleep_check.py      # SKIP (exit 0) without CUDA; never run by CI

On a tiny Llama (tests/support/tiny.py) the real ``VLLMEngine`` starts with ``sleep_when_idle=True`` and must:
free device memory on ``sleep()`` (cudaMemGetInfo before vs after), wake on ``update_weights`` (the same
weights, as a sync would push), give the same probe log-probs as before sleeping, and generate again.
Prints one PASS/FAIL line per check; exits non-zero on any failure. Not yet run on a GPU.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("SKIP: no CUDA device")
        return 0
    from safetensors.torch import load_file, save

    from rollout.engines.base import EngineSpec
    from rollout.engines.vllm_engine import VLLMEngine
    from rollout.types import GenerationRequest, SamplingParams

    spec = importlib.util.spec_from_file_location("forge_tiny", ROOT / "tests" / "support" / "tiny.py")
    assert spec is not None and spec.loader is not None
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    model = Path(tiny.build_tiny_llama(Path(tempfile.mkdtemp()) / "model", seed=0, hidden=256, layers=4))
    engine = VLLMEngine(EngineSpec(str(model), "bfloat16", 256, 2.0, True, 0, 4, sleep_when_idle=True))
    probe = list(range(3, 40))
    req = [GenerationRequest(prompt_ids=list(range(3, 20)), n=4)]
    params = SamplingParams(max_new_tokens=16, temperature=1.0)
    failures = 0

    def check(name: str, ok: bool, detail: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)

    before = engine.probe_logprobs(probe)
    check("generate", len(engine.generate(req, params)[0]) == 4, "4 samples before sleeping")
    free0 = torch.cuda.mem_get_info()[0]
    engine.sleep()
    free1 = torch.cuda.mem_get_info()[0]
    check("sleep frees memory", free1 > free0, f"free {free0 / 2**20:.0f} -> {free1 / 2**20:.0f} MiB")
    weights = {}
    for f in sorted(model.glob("*.safetensors")):
        weights |= load_file(f)
    n = engine.update_weights(save(weights))
    check("update wakes", not engine._asleep and n > 0, f"{n} tensors loaded after waking")
    after = engine.probe_logprobs(probe)
    diff = max(abs(a - b) for a, b in zip(before, after))
    check("same weights after sleep", diff < 1e-2, f"max |probe before - after| = {diff:.2e}")
    check("generate after wake", len(engine.generate(req, params)[0]) == 4, "4 samples")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
