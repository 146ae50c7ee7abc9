"""Next-query personalisation data for PPlug, from query-session logs (LaMP is not available offline).

    python -m curricula.pplug_data --sessions ../shared/data/llm/cosobe_query_sessions/sessions.jsonl \\
        --out runs/pplug/data [--heldout 0.2] [--seed 0] [--k 3]

Task: given the user's current query, write the query they typed next in the same session (CosoBe logs no
user ids; a session is one user's visit, so the "user" is the session). One row per query that has a next
query: ``prompt`` (the current query in a fixed instruction), ``response`` (the next query), ``query`` (the
current query), ``history`` (the user's behaviour up to now, oldest first: earlier queries of the session and
the titles of every result the user clicked for them and for the current query), ``session``.
``prompt_retrieval`` is the common retrieval baseline: the same instruction plus the ``k`` history items most
similar to the current query (BM25, bm25s) written into the prompt.

Sessions are split once (``--heldout`` of them, by ``--seed``, the GQR split: curricula/gqr_data.py), so a
held-out user's rows never reach training. ``meta.json`` holds the settings, the split and the data file's
sha256. The data is derived from CosoBe (no licence stated: PROVENANCE.md), so it is built at run time and
never shipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from curricula.gqr_data import Session, load_sessions, split_sessions

INSTRUCTION = "Predict the next search query of this user.\nCurrent query: {query}\nNext query:"
RETRIEVAL = (
    "Predict the next search query of this user.\nThe user's related history:\n{items}\n"
    "Current query: {query}\nNext query:"
)


def history_before(s: Session, t: int) -> list[str]:
    """Earlier queries and clicked result titles up to (and including the clicks of) query ``t``."""
    out: list[str] = []
    for i, q in enumerate(s.queries[: t + 1]):
        if i < t:
            out.append(q.text)
        out += [q.titles[r] for r in q.clicked_ranks if q.titles.get(r)]
    return out


def top_k(query: str, items: list[str], k: int) -> list[str]:
    """The ``k`` items most similar to ``query`` by BM25 (fewer if the history is shorter), best first."""
    if not items or k <= 0:
        return []
    import bm25s

    unique = list(dict.fromkeys(items))
    if len(unique) <= 1:
        return unique[:k]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(unique, stopwords="en", show_progress=False), show_progress=False)
    docs, _ = retriever.retrieve(
        bm25s.tokenize([query], stopwords="en", show_progress=False),
        k=min(k, len(unique)),
        show_progress=False,
    )
    return [unique[int(i)] for i in docs[0]]


def rows(sessions: list[Session], k: int) -> list[dict[str, Any]]:
    out = []
    for s in sessions:
        for t in range(len(s.queries) - 1):
            q, nxt = s.queries[t].text, s.queries[t + 1].text
            hist = history_before(s, t)
            items = "\n".join(f"- {h}" for h in top_k(q, hist, k)) or "- (none)"
            out.append(
                {
                    "id": f"{s.sid}-{t}",
                    "prompt": INSTRUCTION.format(query=q),
                    "prompt_retrieval": RETRIEVAL.format(items=items, query=q),
                    "response": nxt,
                    "query": q,
                    "history": hist,
                    "session": s.sid,
                }
            )
    return out


def build(
    sessions_file: str | Path, out: str | Path, heldout: float = 0.2, seed: int = 0, k: int = 3
) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = split_sessions(load_sessions(sessions_file), heldout, seed)
    files = {"train": rows(train, k), "test": rows(test, k)}
    for name, rs in files.items():
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs), encoding="utf-8")
    meta = {
        "sessions_file": str(sessions_file),
        "sessions_sha256": hashlib.sha256(Path(sessions_file).read_bytes()).hexdigest(),
        "heldout": heldout,
        "seed": seed,
        "k": k,
        "train_sessions": sorted(s.sid for s in train),
        "test_sessions": sorted(s.sid for s in test),
        "rows": {name: len(rs) for name, rs in files.items()},
        "rows_with_history": {name: sum(bool(r["history"]) for r in rs) for name, rs in files.items()},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m curricula.pplug_data", description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", required=True, help="CosoBe-style sessions.jsonl")
    ap.add_argument("--out", default="runs/pplug/data")
    ap.add_argument("--heldout", type=float, default=0.2, help="share of sessions (users) held out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=3, help="history items in the retrieval baseline's prompt")
    a = ap.parse_args(argv)
    meta = build(a.sessions, a.out, a.heldout, a.seed, a.k)
    print(f"wrote {a.out}: " + ", ".join(f"{n} {v}" for n, v in meta["rows"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
