"""GQR data from query-session logs: the session split, the co-occurrence retriever and every file the recipes read.

    python -m curricula.gqr_data --sessions ../shared/data/llm/cosobe_query_sessions/sessions.jsonl \\
        --out runs/gqr/data [--n 4] [--k 3] [--retriever cooccurrence|embedding] [--heldout 0.2] [--seed 0]

Input: CosoBe-style sessions, one per line: ``{"session_num", "iterations": [{"query", "results": [{"rank",
"title"}], "clicks": [{"rank"}]}]}`` (../shared/data/llm/cosobe_query_sessions/PROVENANCE.md). Sessions are
split once (``--heldout`` of them, by ``--seed``); nothing of a held-out session reaches any training file or
the retriever's index. Outputs (``--out``):

- ``sft_train.jsonl`` / ``sft_test.jsonl`` (``data.format: sft``): for each query with later queries in its
  session, ``prompt`` = the GQR prompt (rewards/gqr.build_prompt) and ``response`` = those later queries
  (distinct, at most n, one per line): the logged reformulations.
- ``gqr_train.jsonl`` (prompt rows for online alignment: every train query) / ``gqr_test.jsonl`` (held-out
  eval rows: queries whose session has a later query that got a click; ``answer`` = the first such query,
  read by ``gqr_hit``). Columns: ``prompt``, ``query``, ``task``, ``answer``, ``session``.
- ``ctr_train.jsonl`` / ``ctr_test.jsonl``: the click log of rewards/ctr_model.py. What counts as a click
  (CosoBe logs no clicks on recommended queries, so these are stand-ins [guess]):
  ``source: followup`` — (query, the next query of the session), clicked = that next query got ≥ 1 result
  click (the reformulation satisfied the user); ``source: title`` — (query, a shown result's title),
  clicked = that result was clicked (real impressions, position-biased); ``source: random`` — (query, a query of
  another session of the same split), clicked = 0 (a sampled negative, one per follow-up pair).
- ``meta.json``: the settings, the split (session ids) and row counts.

Task of a row [guess]: ``clarification`` when the next query keeps every word of the query and adds some (a
refinement), else ``suggestion``. The ``completion`` task of the prompt has no rows here: the logs hold no
typed prefixes.

Side information (``--retriever``): ``cooccurrence`` (default) scores a logged query q' by
Σ_a sim(query, a) · #sessions holding both a and q', over logged queries a with IDF-weighted token
Jaccard sim(query, a) ≥ 0.2 (an exact match has sim 1; the lexical back-off is needed because most queries occur once);
``embedding`` returns the nearest logged queries by cosine of TF-IDF vectors of words and character trigrams
(a stand-in for the paper's SimCSE retriever). A training row never retrieves from its own session (else the
side information would hold the target list, which held-out rows cannot see).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewards.gqr import build_prompt, normalize_query, query_tokens


@dataclass
class LoggedQuery:
    text: str
    clicked_ranks: list[int]
    titles: dict[int, str]  # rank -> shown result title

    @property
    def clicked(self) -> bool:
        return bool(self.clicked_ranks)


@dataclass
class Session:
    sid: str
    queries: list[LoggedQuery]


_TITLE_TAG = re.compile(r"^[QA]:\s*|\s*\[(?:duplicate|closed)\]\s*$")


def load_sessions(path: str | Path) -> list[Session]:
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        s = json.loads(line)
        qs = []
        for it in s.get("iterations") or []:
            titles = {
                int(r["rank"]): _TITLE_TAG.sub("", str(r.get("title", "")))
                for r in it.get("results") or []
                if isinstance(r, dict)
            }
            clicks = sorted({int(c["rank"]) for c in it.get("clicks") or []})
            qs.append(LoggedQuery(str(it["query"]).strip(), clicks, titles))
        out.append(Session(str(s["session_num"]), qs))
    return out


def split_sessions(sessions: list[Session], heldout: float, seed: int) -> tuple[list[Session], list[Session]]:
    ids = sorted(s.sid for s in sessions)
    random.Random(seed).shuffle(ids)
    held = set(ids[: max(1, round(heldout * len(ids)))])
    return [s for s in sessions if s.sid not in held], [s for s in sessions if s.sid in held]


# ---------------------------------------------------------------- retrieval


class QueryRetriever:
    """k side-information queries for a query, from the sessions it indexes (module header)."""

    def __init__(self, sessions: list[Session], mode: str = "cooccurrence", min_sim: float = 0.2) -> None:
        if mode not in ("cooccurrence", "embedding"):
            raise ValueError(f"retriever {mode!r}: use cooccurrence or embedding")
        self.mode, self.min_sim = mode, min_sim
        surface: dict[str, Counter] = defaultdict(Counter)
        self.sessions_of: dict[str, set[str]] = defaultdict(set)  # normalised query -> session ids
        for s in sessions:
            for q in s.queries:
                key = normalize_query(q.text)
                if key:
                    surface[key][q.text] += 1
                    self.sessions_of[key].add(s.sid)
        self.text = {k: c.most_common(1)[0][0] for k, c in surface.items()}  # the commonest spelling
        self.keys = sorted(self.text)
        df = Counter(w for k in self.keys for w in set(k.split()))
        self.word_idf = {w: math.log((1 + len(self.keys)) / (1 + d)) + 1 for w, d in df.items()}
        self.members: dict[str, set[str]] = defaultdict(set)  # session id -> normalised queries
        for k, sids in self.sessions_of.items():
            for sid in sids:
                self.members[sid].add(k)
        if mode == "embedding":
            self._fit_tfidf()

    def _grams(self, text: str) -> Counter:
        norm = normalize_query(text)
        p = f" {norm} "
        return Counter([f"w:{w}" for w in norm.split()] + [f"c:{p[i : i + 3]}" for i in range(len(p) - 2)])

    def _fit_tfidf(self) -> None:
        df: Counter = Counter()
        for k in self.keys:
            df.update(set(self._grams(k)))
        self.idf = {g: math.log((1 + len(self.keys)) / (1 + d)) + 1 for g, d in df.items()}
        self.vecs = {k: self._vec(k) for k in self.keys}

    def _vec(self, text: str) -> dict[str, float]:
        v = {g: c * self.idf.get(g, 0.0) for g, c in self._grams(text).items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {g: x / norm for g, x in v.items()}

    def similarity(self, a: str, b: str) -> float:
        """IDF-weighted token Jaccard (a tag every query carries, "java", weighs little)."""
        ta, tb = query_tokens(a), query_tokens(b)
        idf = self.word_idf
        top = max(idf.values(), default=1.0)  # an unseen word is as rare as the rarest
        union = sum(idf.get(w, top) for w in ta | tb)
        return sum(idf.get(w, top) for w in ta & tb) / union if union else 0.0

    def _allowed(self, key: str, exclude_session: str | None) -> bool:
        return exclude_session is None or bool(self.sessions_of[key] - {exclude_session})

    def retrieve(self, query: str, k: int, exclude_session: str | None = None) -> list[str]:
        """Up to ``k`` logged queries (their commonest spelling), best first; never the query itself."""
        me = normalize_query(query)
        if k <= 0:
            return []
        if self.mode == "embedding":
            qv = self._vec(query)
            scores = {
                key: sum(w * self.vecs[key].get(g, 0.0) for g, w in qv.items())
                for key in self.keys
                if key != me and self._allowed(key, exclude_session)
            }
        else:
            scores = self._cooccurrence(query, me, exclude_session)
        ranked = sorted((s, key) for key, s in scores.items() if s > 0)
        ranked.sort(key=lambda t: (-t[0], t[1]))
        return [self.text[key] for _, key in ranked[:k]]

    def _cooccurrence(self, query: str, me: str, exclude_session: str | None) -> dict[str, float]:
        scores: dict[str, float] = defaultdict(float)
        for anchor in self.keys:
            sim = 1.0 if anchor == me else self.similarity(query, anchor)
            if sim < self.min_sim:
                continue
            for sid in self.sessions_of[anchor] - {exclude_session}:
                for other in self.members[sid]:
                    if other not in (anchor, me):
                        scores[other] += sim
        return scores


# ---------------------------------------------------------------- rows


def _later_queries(s: Session, t: int, n: int) -> list[LoggedQuery]:
    """The distinct queries after position t in the session (not equal to query t), at most n."""
    seen = {normalize_query(s.queries[t].text)}
    out = []
    for q in s.queries[t + 1 :]:
        key = normalize_query(q.text)
        if key and key not in seen:
            seen.add(key)
            out.append(q)
    return out[:n]


def task_of(query: str, next_query: str | None) -> str:
    """clarification when the next query keeps every word and adds some, else suggestion."""
    if next_query is None:
        return "suggestion"
    a, b = query_tokens(query), query_tokens(next_query)
    return "clarification" if a and a < b else "suggestion"


def prompt_rows(
    sessions: list[Session], retriever: QueryRetriever, n: int, k: int, exclude_own: bool, only_clicked: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(prompt rows, sft rows) of ``sessions``."""
    prompts, sft = [], []
    for s in sessions:
        for t, q in enumerate(s.queries):
            later = _later_queries(s, t, n)
            clicked = next((x.text for x in later if x.clicked), None)
            if only_clicked and clicked is None:
                continue
            task = task_of(q.text, later[0].text if later else None)
            related = retriever.retrieve(q.text, k, s.sid if exclude_own else None)
            base = {
                "id": f"s{s.sid}-q{t}",
                "prompt": build_prompt(q.text, task, related, n),
                "query": q.text,
                "task": task,
                "session": s.sid,
            }
            prompts.append({**base, "answer": clicked})
            if later:
                sft.append({**base, "response": "\n".join(x.text for x in later)})
    return prompts, sft


def click_rows(sessions: list[Session], seed: int) -> list[dict[str, Any]]:
    """The click log of ``sessions`` (sources followup, title, random; module header)."""
    rng = random.Random(seed)
    pool = [(s.sid, q.text) for s in sessions for q in s.queries]
    out = []
    for s in sessions:
        for t, q in enumerate(s.queries):
            for rank, title in sorted(q.titles.items()):
                if title:
                    row = {"query": q.text, "candidate": title, "clicked": int(rank in q.clicked_ranks)}
                    out.append(row | {"session": s.sid, "source": "title"})
            if t + 1 < len(s.queries):
                nxt = s.queries[t + 1]
                out.append(
                    {"query": q.text, "candidate": nxt.text, "clicked": int(nxt.clicked)}
                    | {"session": s.sid, "source": "followup"}
                )
                others = [text for sid, text in pool if sid != s.sid]
                if others:
                    neg = rng.choice(others)
                    out.append(
                        {
                            "query": q.text,
                            "candidate": neg,
                            "clicked": 0,
                            "session": s.sid,
                            "source": "random",
                        }
                    )
    return out


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def build(
    sessions_file: str | Path,
    out: str | Path,
    n: int = 4,
    k: int = 3,
    retriever: str = "cooccurrence",
    heldout: float = 0.2,
    seed: int = 0,
) -> dict[str, Any]:
    """Write every GQR data file into ``out`` (module header); returns the contents of meta.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sessions = load_sessions(sessions_file)
    train, test = split_sessions(sessions, heldout, seed)
    index = QueryRetriever(train, retriever)  # held-out sessions are never indexed
    files = {}
    files["gqr_train"], files["sft_train"] = prompt_rows(train, index, n, k, True, False)
    files["gqr_test"], files["sft_test"] = prompt_rows(test, index, n, k, False, True)
    files["ctr_train"], files["ctr_test"] = click_rows(train, seed), click_rows(test, seed)
    for name, rows in files.items():
        _write(out / f"{name}.jsonl", rows)
    meta = {
        "sessions_file": str(sessions_file),
        "n": n,
        "k": k,
        "retriever": retriever,
        "heldout": heldout,
        "seed": seed,
        "train_sessions": sorted(s.sid for s in train),
        "test_sessions": sorted(s.sid for s in test),
        "rows": {name: len(rows) for name, rows in files.items()},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m curricula.gqr_data", description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", required=True, help="CosoBe-style sessions.jsonl")
    ap.add_argument("--out", default="runs/gqr/data")
    ap.add_argument("--n", type=int, default=4, help="queries per list")
    ap.add_argument("--k", type=int, default=3, help="side-information queries per prompt")
    ap.add_argument("--retriever", choices=["cooccurrence", "embedding"], default="cooccurrence")
    ap.add_argument("--heldout", type=float, default=0.2, help="share of sessions held out")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    meta = build(a.sessions, a.out, a.n, a.k, a.retriever, a.heldout, a.seed)
    print(f"wrote {a.out}: " + ", ".join(f"{k} {v}" for k, v in meta["rows"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
