"""bf16 vs fp32 learner cost on this machine: SmolLM2-135M forward + backward of one 8 × 60-token batch.

    .venv/bin/python bench/dtype_probe.py [--threads 1] [--repeats 2]

Why: without bf16 matrix instructions (AVX512-BF16 / AMX) torch runs bf16 matmuls through slow paths; this is the
measurement behind ``model.dtype: auto`` (launch/setup.py). Arms: all weights trainable (full fine-tuning) and the
frozen LM behind a PPlug side module, each in fp32 and bf16; same batch, same threads. Prints seconds per pass.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    import torch
    from transformers import AutoModelForCausalLM

    from launch.prepare_model import resolve_model_path
    from launch.setup import bf16_is_fast
    from trainer import side_modules
    from trainer.learner import token_logprobs
    from trainer.side_modules import SideModuleSpec

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    path = resolve_model_path("builtin:smollm2-135m-instruct")
    print(f"capability {torch.backends.cpu.get_cpu_capability()}, bf16 fast here: {bf16_is_fast()}")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 1000, (8, 60), generator=g)
    feats = {
        "history": torch.randn(8, 3, 576),
        "history_mask": torch.ones(8, 3),
        "query": torch.randn(8, 576),
    }
    for dtype in (torch.float32, torch.bfloat16):
        for side in (False, True):
            lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
            m = (side_modules.build(lm, SideModuleSpec("pplug", {})) if side else lm).to(dtype)
            for r in range(a.repeats):
                t0 = time.perf_counter()
                lp, _ = token_logprobs(m, ids, torch.ones_like(ids), features=feats if side else None)
                t1 = time.perf_counter()
                lp[:, 1:].sum().backward()
                t2 = time.perf_counter()
                arm = "frozen LM + side module" if side else "full fine-tuning"
                print(f"{dtype!s:15} {arm:24} pass {r}: forward {t1 - t0:6.2f} s  backward {t2 - t1:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
