"""Passage retrievers for retrieval-augmented prompts and their evaluation (ChronoQA, launch/chronoqa.py):
a registry of retrievers that rank a fixed pool of passages for a batch of queries.

Contract (:class:`Retriever`): ``fit(docs)`` indexes the pool once, ``rank(queries, k)`` returns for each
query the positions of its top ``k`` docs, best first. Registered here:

- ``bm25``: BM25 via ``bm25s`` (a maintained, numpy-only implementation; k1 = 1.5, b = 0.75, Lucene idf)
  over tokens from :data:`TOKENIZERS`.
- ``dense``: cosine similarity of mean-pooled hidden states of a local HF model (rollout/embeddings.py,
  imported only when asked for: it needs torch and transformers).

Tokenisation for Chinese (``cjk_bigram``, the default): every run of CJK characters becomes its overlapping
character bigrams (a one-character run stays a unigram), every run of Latin letters or digits one
lower-cased word. Why bigrams rather than a word segmenter (``jieba``, also offered when installed):
overlapping bigrams are the classic robust indexing unit for Chinese IR (no dictionary, so no segmentation
errors on the names and new words that news questions are about, e.g. "COTODAMA歌词音箱"), they need no
extra dependency or dictionary load, and they are deterministic across versions. bench/chronoqa.py measures
both on ChronoQA (bench/RESULTS_chronoqa.md).

rollout/retrieval.py's ``BM25Index`` (Cog-Rethinker's demonstrations) keeps bm25s's English tokeniser; this
module is for fixed pools ranked in batches.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol


class Retriever(Protocol):
    name: str

    def fit(self, docs: Sequence[str]) -> None:
        """Index the pool (positions 0..len(docs)-1)."""
        ...

    def rank(self, queries: Sequence[str], k: int) -> list[list[int]]:
        """Per query, the positions of its top ``min(k, len(docs))`` docs, best first."""
        ...


# ---------------------------------------------------------------- tokenisers

# CJK unified ideographs (+ extension A and compatibility ideographs); Latin letters and digits as words.
_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[a-z0-9]+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def cjk_bigrams(text: str) -> list[str]:
    """Overlapping CJK character bigrams plus lower-cased Latin/digit words.

    >>> cjk_bigrams("苹果停产iPhone 6系列")
    ['苹果', '果停', '停产', 'iphone', '6', '系列']
    """
    out: list[str] = []
    for run in _TOKEN.findall(text.lower()):
        if _CJK.match(run):
            out += [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]
        else:
            out.append(run)
    return out


def jieba_words(text: str) -> list[str]:
    """jieba's search-mode segmentation (words and their sub-words), punctuation and spaces dropped."""
    try:
        import jieba
    except ImportError as e:
        raise ImportError("the 'jieba' tokeniser needs the jieba package: pip install jieba") from e
    jieba.setLogLevel(60)  # its dictionary-loading banner goes to stderr otherwise
    return [w for w in (t.strip().lower() for t in jieba.cut_for_search(text)) if w and _TOKEN.search(w)]


TOKENIZERS: dict[str, Callable[[str], list[str]]] = {"cjk_bigram": cjk_bigrams, "jieba": jieba_words}


# ---------------------------------------------------------------- BM25


class BM25Retriever:
    """BM25 (bm25s) over :data:`TOKENIZERS` tokens. A query sharing no token with the pool gets an arbitrary
    order (all scores 0); that is reported as a miss by the metrics, not hidden."""

    name = "bm25"

    def __init__(self, tokenizer: str = "cjk_bigram", k1: float = 1.5, b: float = 0.75) -> None:
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {tokenizer!r}; known: {', '.join(TOKENIZERS)}")
        self.tokenize = TOKENIZERS[tokenizer]
        self.k1, self.b = k1, b
        self._bm25: Any = None
        self._n = 0

    def fit(self, docs: Sequence[str]) -> None:
        import bm25s

        self._bm25 = bm25s.BM25(k1=self.k1, b=self.b)
        self._bm25.index([self.tokenize(d) for d in docs], show_progress=False)
        self._n = len(docs)

    def rank(self, queries: Sequence[str], k: int) -> list[list[int]]:
        if self._bm25 is None:
            raise RuntimeError("BM25Retriever.rank before fit")
        # bm25s gives unknown query tokens no weight; a query with no known token scores 0 everywhere
        docs, _ = self._bm25.retrieve(
            [self.tokenize(q) for q in queries], k=min(k, self._n), show_progress=False
        )
        return [[int(d) for d in row] for row in docs]


def _dense(**kw: Any) -> Retriever:
    from rollout.embeddings import DenseRetriever  # torch + transformers: only when asked for

    return DenseRetriever(**kw)


# Retriever name → factory(**options). Options: bm25 (tokenizer, k1, b); dense (model_path, cache_dir,
# batch_size, max_length, threads).
RETRIEVERS: dict[str, Callable[..., Retriever]] = {"bm25": BM25Retriever, "dense": _dense}


def make_retriever(name: str, **options: Any) -> Retriever:
    if name not in RETRIEVERS:
        raise ValueError(f"unknown retriever {name!r}; known: {', '.join(RETRIEVERS)}")
    return RETRIEVERS[name](**options)
