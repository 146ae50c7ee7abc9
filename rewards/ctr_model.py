"""A small click-through-rate model over (user query, candidate query), its trainer CLI and its loader.

    python -m rewards.ctr_model train recipes/gqr_ctr_cpu.yaml [key=value ...]

It is GQR's reward model (rewards/gqr.py ``gqr_ctr``), frozen during alignment and loaded once per reward
worker process (``load_cached``).

Click-log format (``.jsonl``, one impression per line)::

    {"query": "java enum", "candidate": "java enum switch case", "clicked": 1, "session": "17", "source": "followup"}

``query`` is what the user typed, ``candidate`` a query (or result title) shown for it, ``clicked`` 0/1;
``session`` keys the held-out split (impressions of one session never straddle it); ``source`` is free text,
reported per value in the metrics. curricula/gqr_data.py writes this format from CosoBe sessions and says what
counts as a click there.

Model [guess: the paper names a small text classifier, no architecture]: both texts are bags of hashed
features (word unigrams and bigrams, character trigrams of the normalised text; ``buckets`` hash slots, one
shared ``EmbeddingBag``), giving u and v; an MLP reads [u, v, u·v, |u − v|] plus six lexical features (word and
trigram Jaccard, whether the candidate extends the query, new-word count, length ratio, identity) and
returns one logit. Trained with binary cross-entropy (Adam); the checkpoint folder holds ``model.safetensors``,
``ctr_config.json`` (what the loader needs), ``metrics.json`` (held-out AUC overall and per source,
``sklearn.metrics.roc_auc_score``; the git commit) and ``train_config.yaml`` (the resolved config).
"""

from __future__ import annotations

import itertools
import json
import math
import random
import sys
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rewards.gqr import normalize_query

# ---------------------------------------------------------------- features (no torch)


def hashed_features(text: str, buckets: int) -> list[int]:
    """Hash slots of the word unigrams, word bigrams and character trigrams of ``normalize_query(text)``."""
    norm = normalize_query(text)
    words = norm.split()
    grams = [f"w:{w}" for w in words] + [f"b:{a} {b}" for a, b in itertools.pairwise(words)]
    padded = f" {norm} "
    grams += [f"c:{padded[i : i + 3]}" for i in range(max(len(padded) - 2, 0))]
    return [zlib.crc32(g.encode()) % (buckets - 1) + 1 for g in grams] or [0]  # slot 0: the empty text


def _trigrams(text: str) -> set[str]:
    p = f" {normalize_query(text)} "
    return {p[i : i + 3] for i in range(max(len(p) - 2, 0))}


N_LEXICAL = 6


def lexical_features(query: str, cand: str) -> list[float]:
    """[word Jaccard, trigram Jaccard, candidate ⊇ query words, log(1 + new words), log length ratio, same]."""
    qw, cw = set(normalize_query(query).split()), set(normalize_query(cand).split())
    qt, ct = _trigrams(query), _trigrams(cand)
    jw = len(qw & cw) / len(qw | cw) if qw | cw else 0.0
    jt = len(qt & ct) / len(qt | ct) if qt | ct else 0.0
    extends = float(bool(qw) and qw <= cw and cw != qw)
    ratio = math.log((len(cand) + 1) / (len(query) + 1))
    same = float(normalize_query(query) == normalize_query(cand))
    return [jw, jt, extends, math.log1p(len(cw - qw)), ratio, same]


# ---------------------------------------------------------------- config


@dataclass
class CTRModelConfig:
    buckets: int = 1 << 16  # hash slots shared by both texts
    dim: int = 32  # embedding width
    hidden: int = 64  # MLP width


@dataclass
class CTRDataConfig:
    train: str = "runs/gqr/data/ctr_train.jsonl"  # click log (format in the module header)
    test: str | None = "runs/gqr/data/ctr_test.jsonl"  # held-out log; null: split `train` by session
    heldout_fraction: float = 0.2  # share of sessions held out when `test` is null
    split_seed: int = 0  # seeds that session split
    # AUC is reported overall, per source and for these groups of sources (name -> sources)
    auc_groups: dict[str, list[str]] = field(default_factory=lambda: {"queries": ["followup", "random"]})


@dataclass
class CTRTrainConfig:
    output_dir: str = "runs/gqr/ctr"  # the checkpoint folder
    seed: int = 0
    epochs: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-5
    batch_size: int = 128
    threads: int = 2
    data: CTRDataConfig = field(default_factory=CTRDataConfig)
    model: CTRModelConfig = field(default_factory=CTRModelConfig)


def load_train_config(path: str | None, overrides: Sequence[str] = ()) -> CTRTrainConfig:
    from omegaconf import OmegaConf

    merged = OmegaConf.structured(CTRTrainConfig)
    if path:
        merged = OmegaConf.merge(merged, OmegaConf.load(path))
    if overrides:
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


# ---------------------------------------------------------------- data


def read_click_log(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a click log; a row missing ``query``/``candidate``/``clicked`` is an error naming the line."""
    rows = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        r = json.loads(line)
        for k in ("query", "candidate", "clicked"):
            if k not in r:
                raise ValueError(
                    f"{path} line {i}: no field {k!r} (click-log rows need query, candidate, clicked)"
                )
        rows.append(r)
    return rows


def split_by_session(
    rows: list[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held-out): whole sessions held out (rows without ``session`` are their own session)."""
    keys = sorted({str(r.get("session", f"row{i}")) for i, r in enumerate(rows)})
    random.Random(seed).shuffle(keys)
    held = set(keys[: max(1, round(fraction * len(keys)))])
    train = [r for i, r in enumerate(rows) if str(r.get("session", f"row{i}")) not in held]
    test = [r for i, r in enumerate(rows) if str(r.get("session", f"row{i}")) in held]
    return train, test


# ---------------------------------------------------------------- model (torch imported here only)


def _torch_module(cfg: CTRModelConfig):
    import torch
    from torch import nn

    class CTRNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.EmbeddingBag(cfg.buckets, cfg.dim, mode="mean")
            self.mlp = nn.Sequential(
                nn.Linear(4 * cfg.dim + N_LEXICAL, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1)
            )

        def forward(self, q_ids, q_off, c_ids, c_off, lex):  # flat ids + offsets per text; lex [B, 6]
            u, v = self.emb(q_ids, q_off), self.emb(c_ids, c_off)
            return self.mlp(torch.cat([u, v, u * v, (u - v).abs(), lex], dim=-1)).squeeze(-1)  # [B]

    return CTRNet()


def _bag(slots: Sequence[list[int]]):
    import torch

    offs = [0]
    for s in slots[:-1]:
        offs.append(offs[-1] + len(s))
    flat = [i for s in slots for i in s]
    return torch.tensor(flat, dtype=torch.long), torch.tensor(offs, dtype=torch.long)


def _collate(feats: Sequence[tuple[list[int], list[int], list[float]]]):
    """(q_ids, q_off, c_ids, c_off, lex) of per-pair (query slots, candidate slots, lexical features)."""
    import torch

    q_ids, q_off = _bag([f[0] for f in feats])
    c_ids, c_off = _bag([f[1] for f in feats])
    return q_ids, q_off, c_ids, c_off, torch.tensor([f[2] for f in feats], dtype=torch.float32)


def _inputs(pairs: Sequence[tuple[str, str]], buckets: int):
    feats = [
        (hashed_features(q, buckets), hashed_features(c, buckets), lexical_features(q, c)) for q, c in pairs
    ]
    return _collate(feats)


class CTRModel:
    """A trained model: ``predict([(query, candidate), ...]) -> [P(click)]``, one batched forward per chunk."""

    def __init__(self, net: Any, cfg: CTRModelConfig) -> None:
        self.net, self.cfg = net.eval(), cfg

    def predict(self, pairs: Sequence[tuple[str, str]], chunk: int = 4096) -> list[float]:
        import torch

        out: list[float] = []
        with torch.no_grad():
            for i in range(0, len(pairs), chunk):
                logits = self.net(*_inputs(pairs[i : i + chunk], self.cfg.buckets))
                out += torch.sigmoid(logits).tolist()
        return out

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.contiguous() for k, v in self.net.state_dict().items()}, str(folder / "model.safetensors")
        )
        (folder / "ctr_config.json").write_text(json.dumps({"model": asdict(self.cfg)}, indent=1) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> CTRModel:
        from safetensors.torch import load_file

        folder = Path(folder).expanduser()
        cfg = CTRModelConfig(**json.loads((folder / "ctr_config.json").read_text())["model"])
        net = _torch_module(cfg)
        net.load_state_dict(load_file(str(folder / "model.safetensors")))
        return cls(net, cfg)


_CACHE: dict[str, CTRModel] = {}


def load_cached(folder: str | Path) -> CTRModel:
    """The model of ``folder``, loaded once per process (the reward worker keeps it between batches)."""
    key = str(Path(folder).expanduser().resolve())
    if key not in _CACHE:
        _CACHE[key] = CTRModel.load(key)
    return _CACHE[key]


# ---------------------------------------------------------------- training and evaluation


def auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """ROC AUC (sklearn); None when only one class is present."""
    from sklearn.metrics import roc_auc_score

    if len(set(int(y) for y in labels)) < 2:
        return None
    return float(roc_auc_score([int(y) for y in labels], list(scores)))


def evaluate(
    model: CTRModel, rows: list[dict[str, Any]], extra_groups: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """AUC over all rows, per ``source`` and per group of sources, with row and click counts."""
    probs = model.predict([(r["query"], r["candidate"]) for r in rows])
    out: dict[str, Any] = {"rows": len(rows), "clicks": sum(int(r["clicked"]) for r in rows)}
    out["auc"] = auc([r["clicked"] for r in rows], probs)
    groups = {src: [src] for src in sorted({str(r.get("source", "")) for r in rows} - {""})}
    groups |= {name: list(srcs) for name, srcs in (extra_groups or {}).items()}
    for name, srcs in groups.items():
        idx = [i for i, r in enumerate(rows) if str(r.get("source", "")) in srcs]
        out[f"auc/{name}"] = auc([rows[i]["clicked"] for i in idx], [probs[i] for i in idx])
        out[f"rows/{name}"] = len(idx)
    return out


def fit(rows: list[dict[str, Any]], cfg: CTRTrainConfig, log=print) -> CTRModel:
    """Train a fresh model on ``rows`` (shuffled mini-batches, BCE with logits, Adam)."""
    import torch

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    net = _torch_module(cfg.model)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    pos = sum(int(r["clicked"]) for r in rows)
    weight = torch.tensor((len(rows) - pos) / max(pos, 1))  # balance the classes
    rng = random.Random(cfg.seed)
    order = list(range(len(rows)))
    feats = [  # hashed once: (query slots, candidate slots, lexical features)
        (
            hashed_features(r["query"], cfg.model.buckets),
            hashed_features(r["candidate"], cfg.model.buckets),
            lexical_features(r["query"], r["candidate"]),
        )
        for r in rows
    ]
    for epoch in range(cfg.epochs):
        rng.shuffle(order)
        total = 0.0
        net.train()
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            logits = net(*_collate([feats[j] for j in idx]))
            y = torch.tensor([float(rows[j]["clicked"]) for j in idx])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        log(f"ctr epoch {epoch + 1}/{cfg.epochs}: train loss {total / max(len(rows), 1):.4f}")
    return CTRModel(net, cfg.model)


def _git_commit() -> str | None:
    import subprocess

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return r.stdout.strip() or None


def train(cfg: CTRTrainConfig, log=print) -> dict[str, Any]:
    """Train on ``cfg.data``, write the checkpoint folder, return its metrics (held-out AUC)."""
    from omegaconf import OmegaConf

    rows = read_click_log(cfg.data.train)
    if cfg.data.test:
        test = read_click_log(cfg.data.test)
    else:
        rows, test = split_by_session(rows, cfg.data.heldout_fraction, cfg.data.split_seed)
    train_sessions = {str(r.get("session")) for r in rows if "session" in r}
    leaked = train_sessions & {str(r.get("session")) for r in test if "session" in r}
    if leaked:
        raise ValueError(f"{len(leaked)} sessions are in both the train and the held-out click log")
    model = fit(rows, cfg, log)
    metrics = {
        "heldout": evaluate(model, test, cfg.data.auc_groups),
        "train": evaluate(model, rows, cfg.data.auc_groups),
        "git_commit": _git_commit(),
    }
    out = Path(cfg.output_dir)
    model.save(out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (out / "train_config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    h = metrics["heldout"]
    log(f"ctr model -> {out}: held-out AUC {h['auc']} ({h['rows']} rows, {h['clicks']} clicks)")
    return metrics


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[0] != "train":
        print("usage: python -m rewards.ctr_model train CONFIG.yaml [key=value ...]", file=sys.stderr)
        return 2
    train(load_train_config(argv[1], argv[2:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
