"""Run one Learner through clean step / NaN-skipped step / clean step and print the grad norms as JSON.

Used by tests/trainer/test_learner_nan_skip.py in a fresh process per ZeRO stage: DeepSpeed caches its
process groups, so a second Learner in the same process cannot be built after the first shut down.

    python -m tests.support.nan_skip_probe STAGE MODEL_DIR CKPT_DIR
"""

from __future__ import annotations

import json
import socket
import sys

import torch

from trainer.batch import LossTerm, TrainBatch, collate
from trainer.learner import Learner, LearnerSpec


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch(advantages: torch.Tensor) -> TrainBatch:
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(4, 90, (5,), generator=g).tolist() for _ in range(4)]
    responses = [torch.randint(4, 90, (n,), generator=g).tolist() for n in (9, 7, 5, 3)]
    col = collate(prompts, responses, 0)
    terms = [
        LossTerm("policy_gradient", 1.0, col.response_mask, {"advantages": advantages}),
        LossTerm("kl", 0.1, col.response_mask),
    ]
    return TrainBatch(col.input_ids, col.attention_mask, terms)


def main(stage: int, model: str, ckpt: str) -> dict[str, float]:
    spec = LearnerSpec(
        model_path=model,
        dtype="float32",
        zero_stage=stage,
        lr=1e-3,
        micro_batch_size=2,
        need_ref=True,
        threads=1,
    )
    learner = Learner(0, 1, "127.0.0.1", _port(), spec)
    try:
        clean = _batch(torch.tensor([1.0, -1.0, 0.5, -0.5]))
        learner.train(clean)
        learner.save(ckpt)
        reference = learner.train(clean)["grad_norm"]
        learner.load(ckpt)
        # NaN in the last row: the first micro-batch is already back-propagated when the NaN is seen
        poisoned = _batch(torch.tensor([1.0, -1.0, 0.5, float("nan")]))
        skipped = learner.train(poisoned)["nan_skipped"]
        after = learner.train(clean)["grad_norm"]
        return {"reference": reference, "skipped": skipped, "after": after}
    finally:
        learner.shutdown()


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(int(sys.argv[1]), sys.argv[2], sys.argv[3])), flush=True)
