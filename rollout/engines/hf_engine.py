"""HF-transformers engine: the same interface as the vLLM engine, for models vLLM cannot serve and for
the fastest unit tests. Not a substitute for vLLM in the loop (3-10x slower on CPU)."""

from __future__ import annotations

import torch

from rollout.engines.base import EngineSpec
from rollout.types import Completion, GenerationRequest, SamplingParams


class HFEngine:
    def __init__(self, spec: EngineSpec) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.spec = spec
        # fp32 on CPU: HF generate in bf16 is ~4x slower there (CPU_NOTES.md).
        dtype = torch.float32 if not torch.cuda.is_available() else getattr(torch, spec.dtype)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = (
            AutoModelForCausalLM.from_pretrained(spec.model_path, dtype=dtype, use_safetensors=True)
            .to(self.device)
            .eval()
        )
        self.tokenizer = AutoTokenizer.from_pretrained(spec.model_path)
        self.eos = self.tokenizer.eos_token_id
        self.gen = torch.Generator(device="cpu").manual_seed(spec.seed)

    @torch.no_grad()
    def _sample_one(self, prompt_ids: list[int], p: SamplingParams) -> Completion:
        ids = torch.tensor([prompt_ids], device=self.device)
        past = None
        out_ids: list[int] = []
        lps: list[float] = []
        finish = "length"
        for _ in range(p.max_new_tokens):
            o = self.model(input_ids=ids, past_key_values=past, use_cache=True)
            past = o.past_key_values
            logits = o.logits[0, -1].float()
            probs = torch.softmax(logits, -1)  # temperature 0 (greedy): the untempered distribution
            if p.temperature <= 0:
                tok = int(torch.argmax(logits))
            else:
                probs = torch.softmax(logits / p.temperature, -1)
                if p.top_k > 0:
                    kth = torch.topk(probs, p.top_k).values[-1]
                    probs = torch.where(probs >= kth, probs, torch.zeros_like(probs))
                if p.top_p < 1.0:
                    sp, si = torch.sort(probs, descending=True)
                    keep = (sp.cumsum(0) - sp) < p.top_p
                    probs = torch.zeros_like(probs).scatter(0, si[keep], sp[keep])
                probs = probs / probs.sum()
                tok = int(torch.multinomial(probs.cpu(), 1, generator=self.gen))
            out_ids.append(tok)
            # The log-prob under the distribution actually sampled from (temperature, top-k/top-p applied),
            # as the vLLM engine reports with logprobs_mode=processed_logprobs: the behaviour policy.
            lps.append(float(torch.log(probs[tok])))
            ids = torch.tensor([[tok]], device=self.device)
            if tok == self.eos:
                finish = "stop"
                break
            text = self.tokenizer.decode(out_ids, skip_special_tokens=True)
            if p.stop and any(s in text for s in p.stop):
                finish = "stop"
                break
        return Completion(out_ids, lps, finish, self.tokenizer.decode(out_ids, skip_special_tokens=True))

    def generate(self, requests: list[GenerationRequest], defaults: SamplingParams) -> list[list[Completion]]:
        return [
            [self._sample_one(list(r.prompt_ids), r.params or defaults) for _ in range(r.n)] for r in requests
        ]

    def update_weights(self, blob: bytes) -> int:
        from safetensors.torch import load

        weights = load(blob)
        missing = set(weights) - set(self.model.state_dict())
        if missing:
            raise KeyError(f"weight update has keys the model lacks: {sorted(missing)[:5]}")
        self.model.load_state_dict(weights, strict=False)
        return len(weights)

    @torch.no_grad()
    def probe_logprobs(self, token_ids: list[int]) -> list[float]:
        ids = torch.tensor([token_ids], device=self.device)
        lp = torch.log_softmax(self.model(input_ids=ids).logits[0, :-1].float(), -1)
        return lp.gather(-1, ids[0, 1:, None]).squeeze(-1).tolist()
