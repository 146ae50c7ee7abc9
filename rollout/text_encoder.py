"""A frozen text encoder (mean-pooled last hidden states of a local HF model) with an on-disk cache.

Used where a method needs fixed text embeddings computed once: PPlug's history items and inputs. The cache
file is keyed by the model id (a hash of its config.json and its weight files' names and sizes, plus the
pooling) and by a hash of the texts it holds, so a different model or different data never reads stale
vectors; a run over the same data and model loads the file instead of encoding again.

No hub access: the model is a local folder (``launch.prepare_model`` converts the bundled SmolLM2 once).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

POOLING = "mean-last-hidden-v1"


def model_key(model_path: str) -> str:
    """A content key of a local HF model folder: config.json bytes, weight file names and sizes, pooling."""
    p = Path(model_path)
    cfg = p / "config.json"
    if not cfg.is_file():
        raise FileNotFoundError(f"text encoder: {p} has no config.json (expected a local HF model folder)")
    h = hashlib.sha256(cfg.read_bytes())
    for w in sorted(p.glob("*.safetensors")):
        h.update(f"{w.name}:{w.stat().st_size}".encode())
    h.update(POOLING.encode())
    return h.hexdigest()[:16]


def texts_key(texts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for t in sorted(set(texts)):
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


class TextEncoder:
    """``encode(texts) -> [N, d]`` float32; ``precompute(texts)`` fills (or loads) the disk cache first."""

    def __init__(
        self, model_path: str, cache_dir: str | Path, max_tokens: int = 128, batch_size: int = 32
    ) -> None:
        self.model_path = model_path
        self.cache_dir = Path(cache_dir).expanduser()
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.key = model_key(model_path)
        self._vectors: dict[str, torch.Tensor] = {}
        self._model = None
        self._tok = None
        self.cache_file: Path | None = None
        self.loaded_from_cache = False

    def _load_model(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # runs in the driver: no weight-loading bar on the run's console
        self._tok = AutoTokenizer.from_pretrained(self.model_path)
        if self._tok.pad_token_id is None:
            self._tok.pad_token = self._tok.eos_token
        self._model = AutoModel.from_pretrained(self.model_path, dtype=torch.float32, use_safetensors=True)
        self._model.eval()

    @torch.no_grad()
    def _encode_uncached(self, texts: Sequence[str]) -> torch.Tensor:
        self._load_model()
        out = []
        for i in range(0, len(texts), self.batch_size):
            chunk = list(texts[i : i + self.batch_size])
            enc = self._tok(
                chunk, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
            )
            hidden = self._model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append((hidden * m).sum(1) / m.sum(1).clamp(min=1.0))
        return torch.cat(out) if out else torch.zeros(0, 0)

    def precompute(self, texts: Iterable[str]) -> Path:
        """Encode every text once, or load the cache file written for this model and these texts."""
        unique = sorted(set(texts))
        path = self.cache_dir / f"encodings-{self.key}-{texts_key(unique)}.pt"
        self.cache_file = path
        if path.is_file():
            saved = torch.load(path, weights_only=True)
            self._vectors.update(dict(zip(saved["texts"], saved["vectors"], strict=True)))
            self.loaded_from_cache = True
            return path
        vecs = self._encode_uncached(unique) if unique else torch.zeros(0, 0)
        self._vectors.update(dict(zip(unique, vecs, strict=True)))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"texts": unique, "vectors": vecs, "model": self.model_path, "pooling": POOLING}, tmp)
        tmp.replace(path)  # atomic: a killed run never leaves a half-written cache behind
        (path.with_suffix(".json")).write_text(
            json.dumps({"model": self.model_path, "model_key": self.key, "texts": len(unique)})
        )
        return path

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Vectors for ``texts`` (cached ones reused; new ones encoded and kept in memory only)."""
        new = sorted({t for t in texts if t not in self._vectors})
        if new:
            self._vectors.update(dict(zip(new, self._encode_uncached(new), strict=True)))
        if not texts:
            return torch.zeros(0, self.dim)
        return torch.stack([self._vectors[t] for t in texts])

    @property
    def dim(self) -> int:
        if self._vectors:
            return int(next(iter(self._vectors.values())).shape[-1])
        self._load_model()
        return int(self._model.config.hidden_size)
