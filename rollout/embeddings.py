"""Dense passage embeddings from a local HF model: mean-pooled last hidden states, L2-normalised, cached on disk,
and the ``dense`` retriever of rollout/retrievers.py (cosine similarity = dot product of unit vectors).

Any model folder that ``transformers.AutoModel`` loads works (a causal LM such as the bundled SmolLM2-135M
loads as its base model without the LM head); nothing is downloaded: the folder must exist
(``python -m launch.prepare_model`` builds the bundled one offline). A causal LM is not a trained retriever:
its mean-pooled states are a weak, untuned baseline, which is what bench/chronoqa.py reports them as.

Cache: ``<cache_dir>/<model-name>-<key>.npy`` with ``key`` = sha256 of the model id (the resolved folder and
the name, size and mtime of its weight files, so a retrained checkpoint at the same path is a new key), the
pooling settings (max_length) and the texts themselves. A hit skips the model entirely.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_CACHE_DIR = "~/.cache/forge-rl/embeddings"


def model_id(model_path: str) -> str:
    """A string that changes when the model's weights change: folder + (name, size, mtime) of weight files."""
    p = Path(model_path).expanduser().resolve()
    files = sorted(f for f in p.iterdir() if f.suffix in (".safetensors", ".bin") or f.name == "config.json")
    stats = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return json.dumps({"path": str(p), "files": stats})


def cache_key(model_path: str, texts: Sequence[str], max_length: int) -> str:
    h = hashlib.sha256()
    h.update(model_id(model_path).encode())
    h.update(f"\x00mean-pool\x00max_length={max_length}\x00".encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\x00")  # separator: ("ab", "c") and ("a", "bc") hash differently
    return h.hexdigest()[:24]


class MeanPoolEncoder:
    """Mean of the last hidden states over the attention mask, L2-normalised; fp32 on CPU."""

    def __init__(
        self, model_path: str, max_length: int = 256, batch_size: int = 16, threads: int | None = None
    ):
        import torch
        from transformers import AutoModel, AutoTokenizer

        if not (Path(model_path).expanduser() / "config.json").is_file():
            raise FileNotFoundError(
                f"{model_path}: no config.json (a local HF folder is needed; `python -m launch.prepare_model` "
                "builds the bundled one)"
            )
        if threads:
            torch.set_num_threads(threads)
        self.model_path, self.max_length, self.batch_size = model_path, max_length, batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        if self.tokenizer.pad_token_id is None:  # causal LMs often have none; padding is masked out anyway
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"
        self.model = AutoModel.from_pretrained(model_path, dtype=torch.float32, use_safetensors=True).eval()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), hidden] float32 unit vectors. Texts are sorted by length for batching (less padding)."""
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                idx = order[s : s + self.batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state  # [B, T, H]
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = pooled.float().numpy()
        return out


def cached_embeddings(
    encoder: Any, texts: Sequence[str], cache_dir: str | None = DEFAULT_CACHE_DIR
) -> tuple[np.ndarray, dict[str, Any]]:
    """``encoder.encode(texts)``, read from / written to the disk cache; returns (array, info)."""
    if cache_dir is None:
        return encoder.encode(texts), {"cache": None}
    key = cache_key(encoder.model_path, texts, encoder.max_length)
    folder = Path(os.path.expanduser(cache_dir))
    f = folder / f"{Path(encoder.model_path).name}-{key}.npy"
    if f.is_file():
        return np.load(f), {"cache": str(f), "hit": True}
    arr = encoder.encode(texts)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(f".tmp-{os.getpid()}.npy")
    np.save(tmp, arr)
    os.replace(tmp, f)  # atomic: a concurrent reader never sees half an array
    return arr, {"cache": str(f), "hit": False}


class DenseRetriever:
    """Top-k by cosine similarity of :class:`MeanPoolEncoder` embeddings (pool embeddings cached on disk)."""

    name = "dense"

    def __init__(
        self,
        model_path: str,
        cache_dir: str | None = DEFAULT_CACHE_DIR,
        batch_size: int = 16,
        max_length: int = 256,
        threads: int | None = None,
    ) -> None:
        self.encoder = MeanPoolEncoder(model_path, max_length, batch_size, threads)
        self.cache_dir = cache_dir
        self._docs: np.ndarray | None = None
        self.info: dict[str, Any] = {}

    def fit(self, docs: Sequence[str]) -> None:
        self._docs, self.info = cached_embeddings(self.encoder, docs, self.cache_dir)

    def rank(self, queries: Sequence[str], k: int) -> list[list[int]]:
        if self._docs is None:
            raise RuntimeError("DenseRetriever.rank before fit")
        q, _ = cached_embeddings(self.encoder, queries, self.cache_dir)
        sims = q @ self._docs.T  # [Q, N] cosine similarities
        k = min(k, sims.shape[1])
        # stable sort on -sim: ties keep pool order, so rankings are reproducible
        return [list(map(int, np.argsort(-row, kind="stable")[:k])) for row in sims]
