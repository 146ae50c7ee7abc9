"""Lexical retrieval for prompt building (Cog-Rethinker's demonstrations, RAG-style strategies): BM25 via
``bm25s`` (a maintained, numpy-only implementation), rebuilt lazily when the corpus changes.

Tokenisation is bm25s's default (lower-cased words of two or more characters, English stop words removed),
so "12 + 34" keeps "12" and "34". A document whose BM25 score is 0 (no shared term) is never returned:
a demonstration that shares nothing with the query is noise, and the caller counts the miss.
"""

from __future__ import annotations

from collections.abc import Sequence


class BM25Index:
    """Top-k BM25 search over a list of texts; ``search`` returns ``(position, score)`` pairs, best first."""

    def __init__(self, texts: Sequence[str] = (), stopwords: str | None = "en") -> None:
        self.stopwords = stopwords
        self._texts: list[str] = list(texts)
        self._retriever = None  # built on the first search after a change

    def __len__(self) -> int:
        return len(self._texts)

    def reset(self, texts: Sequence[str]) -> None:
        self._texts = list(texts)
        self._retriever = None

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        import bm25s

        return bm25s.tokenize(texts, stopwords=self.stopwords, return_ids=False, show_progress=False)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        if k <= 0 or not self._texts:
            return []
        q = self._tokenize([query])
        if not q[0]:
            return []
        if self._retriever is None:
            import bm25s

            self._retriever = bm25s.BM25()
            # bm25s cannot index an empty token list: such a document gets a placeholder no query contains
            docs = [toks or ["\x00"] for toks in self._tokenize(self._texts)]
            self._retriever.index(docs, show_progress=False)
        docs, scores = self._retriever.retrieve(q, k=min(k, len(self._texts)), show_progress=False)
        return [(int(d), float(s)) for d, s in zip(docs[0], scores[0]) if s > 0]
