"""SePO's offline scoring pass: ``python -m launch.score_tokens RECIPE.yaml [key=value ...] [--force]``.

Reads a ``sepo`` recipe (rollout/strategies/sepo.py), tokenises its preference rows exactly as training will
(same renderer, template, EOS and ``rollout.max_model_len`` truncation), and scores every response token with
two frozen models, the oracle π^o and its reference π_ref^o (``strategy.options.oracle`` /
``oracle_reference``: HF, checkpoint or run folders):

    r̂_t = log π^o(y_t | x, y_<t) − log π_ref^o(y_t | x, y_<t)

then keeps the top-k tokens of the chosen response and the bottom-k of the rejected one,
k = max(1, int(ratio · |y|)). Output in ``strategy.options.masks``:

- ``manifest.json``: oracle and reference folders, ratio, tokenizer folder, ``max_model_len``, shard size, row
  counts, ``complete`` once every shard is written;
- ``<split>-NNNNN.jsonl``: one line per row, ``{"id", "responses": [{"len", "ids_sha1", "reward", "selected"}]}``
  with responses best first (chosen, then rejected), ``selected`` = 0-based positions within the response.

Shards are scored by Ray actors (``score_workers``, each holding both models) and written atomically as they
finish, so an interrupted pass resumes where it stopped; a folder scored with other settings (oracle, ratio,
tokenizer, length limit, rows) is refused unless ``--force`` clears it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from launch.config import ConfigError, RecipeConfig, component_options, recipe_cli

Row = tuple[str, list[int], list[list[int]]]  # (row id, prompt ids, response ids best first)


def row_token_rewards(
    oracle: Any, reference: Any, rows: list[Row], batch_size: int
) -> list[list[list[float]]]:
    """r̂ for every response token of ``rows`` → per row, per response, a list of len(response) floats.

    Both models see ``prompt + response``; the log-prob of response token t comes from the logits at the
    position before it (trainer.learner.token_logprobs, the learners' own layout), so r̂[i] belongs to
    ``response_ids[i]`` exactly."""
    import torch

    from trainer.batch import collate
    from trainer.learner import token_logprobs

    seqs = [(r, j, p, resp) for r, (_, p, resps) in enumerate(rows) for j, resp in enumerate(resps)]
    out: list[list[list[float]]] = [[[] for _ in resps] for _, _, resps in rows]
    pad = 0
    for i in range(0, len(seqs), batch_size):
        chunk = seqs[i : i + batch_size]
        col = collate([c[2] for c in chunk], [c[3] for c in chunk], pad)
        ids, att = col.input_ids, col.attention_mask
        with torch.no_grad():
            lp_o, _ = token_logprobs(oracle, ids.to(_device(oracle)), att.to(_device(oracle)))
            lp_r, _ = token_logprobs(reference, ids.to(_device(reference)), att.to(_device(reference)))
        diff = lp_o.float().cpu() - lp_r.float().cpu()
        for b, (r, j, p, resp) in enumerate(chunk):
            out[r][j] = diff[b, len(p) : len(p) + len(resp)].tolist()
    return out


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def score_records(oracle: Any, reference: Any, rows: list[Row], ratio: float, batch_size: int) -> list[dict]:
    """The stored records of ``rows`` (see the module docstring)."""
    from rollout.strategies.sepo import response_record

    rewards = row_token_rewards(oracle, reference, rows, batch_size)
    return [
        {
            "id": uid,
            "responses": [
                response_record(ids, rw, ratio, rank) for rank, (ids, rw) in enumerate(zip(resps, rws))
            ],
        }
        for (uid, _, resps), rws in zip(rows, rewards)
    ]


def load_frozen(path: str, dtype: str, device: str = "cpu") -> Any:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per model per actor would flood the console

    m = AutoModelForCausalLM.from_pretrained(path, torch_dtype=getattr(torch, dtype)).to(device)
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


class ScoreWorker:
    """A Ray actor holding the oracle and its reference; scores one shard of rows per call."""

    def __init__(self, oracle: str, reference: str, dtype: str, threads: int, batch_size: int) -> None:
        import torch

        torch.set_num_threads(threads)
        device = "cuda" if torch.cuda.is_available() else "cpu"  # the actor asked for a GPU (score_gpus)
        self.oracle = load_frozen(oracle, dtype, device)
        self.reference = load_frozen(reference, dtype, device)
        self.batch_size = batch_size

    def score(self, rows: list[Row], ratio: float) -> list[dict]:
        return score_records(self.oracle, self.reference, rows, ratio, self.batch_size)


def _tokenised_rows(cfg: RecipeConfig, split: str) -> tuple[list[Row], int, str]:
    """(rows, rows skipped, tokenizer folder) of ``split``, tokenised as the sepo strategy will at training."""
    from transformers import AutoTokenizer

    from curricula.data import load_prompts
    from launch.prepare_model import resolve_model_path
    from rollout.strategies.base import StrategyContext
    from rollout.strategies.offline import _DataRows
    from rollout.templates import PromptRenderer

    model_path = resolve_model_path(cfg.model.path, os.path.expanduser(cfg.model.cache_dir))
    tok = AutoTokenizer.from_pretrained(model_path)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    renderer = PromptRenderer(
        tok, cfg.prompt.system_prompt, cfg.prompt.template, cfg.prompt.use_chat_template
    )
    ctx = StrategyContext(
        renderer, tok, None, None, cfg.seed, pad, cfg.rollout.max_model_len, None, cfg.data.skip_invalid
    )
    try:
        ds = load_prompts(cfg.data, split, cfg.prompt.template)
    except ValueError as e:
        raise ConfigError(f"data: {e}") from None
    if ds is None:
        return [], 0, model_path
    data = _DataRows(ctx, max_responses=None)
    rows: dict[str, Row] = {}
    for s in data.samples(list(ds)):
        uid = s.prompt.uid
        rows.setdefault(uid, (uid, list(s.prompt_ids), []))[2].append(list(s.response_ids))
    return list(rows.values()), data.tok.skipped, model_path


def _check_tokenizers(policy: str, *frozen: str) -> None:
    """SePO needs one vocabulary: the oracle's token rewards index the policy's tokens."""
    from transformers import AutoTokenizer

    vocab = AutoTokenizer.from_pretrained(policy).get_vocab()
    for path in frozen:
        if AutoTokenizer.from_pretrained(path).get_vocab() != vocab:
            raise ConfigError(
                f"strategy.options: {path!r} has another tokenizer than model.path {policy!r}: the token "
                "rewards must index the policy's tokens (weak-to-strong needs a shared tokenizer)"
            )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def score_tokens(cfg: RecipeConfig, force: bool = False) -> Path:
    """Run the scoring pass of a ``sepo`` recipe; returns the masks folder."""
    import ray

    from launch.components import load_registries
    from launch.prepare_model import model_folder
    from launch.ray_utils import get_all, init_ray

    reg = load_registries()
    if cfg.strategy.name != "sepo":
        raise ConfigError(f"strategy.name: {cfg.strategy.name!r}: launch.score_tokens scores sepo recipes")
    o = component_options(reg.strategies["sepo"].options, cfg.strategy.options, "strategy.options", "recipe")
    oracle, reference = model_folder(o.oracle), model_folder(o.oracle_reference)
    for key, path in (("oracle", oracle), ("oracle_reference", reference)):
        if not (Path(path) / "config.json").is_file():
            raise ConfigError(
                f"strategy.options.{key}: {path!r} is not a model, checkpoint or run folder (train it first: "
                "see the sepo recipes' header)"
            )
    splits = ["train"] + (["eval"] if o.score_eval else [])
    tokenised = {s: _tokenised_rows(cfg, s) for s in splits}
    policy = tokenised["train"][2]
    _check_tokenizers(policy, oracle, reference)
    out = Path(o.masks).expanduser()
    settings = {
        "oracle": str(Path(oracle).resolve()),
        "oracle_reference": str(Path(reference).resolve()),
        "ratio": o.ratio,
        "tokenizer": str(Path(policy).resolve()),
        "max_model_len": cfg.rollout.max_model_len,
        "shard_rows": o.shard_rows,
        "score_dtype": o.score_dtype,
        "rows": {s: len(tokenised[s][0]) for s in splits},
        "skipped_too_long": {s: tokenised[s][1] for s in splits},
        "data": cfg.data.source,
        "template": cfg.prompt.template,
    }
    manifest = out / "manifest.json"
    if manifest.is_file():
        old = json.loads(manifest.read_text())
        same = {k: old.get(k) for k in settings} == settings
        if not same and not force:
            diff = sorted(k for k in settings if old.get(k) != settings[k])
            raise ConfigError(
                f"strategy.options.masks: {str(out)!r} was scored with other settings ({', '.join(diff)}); "
                "pass --force to rescore, or point masks at another folder"
            )
        if not same or force:
            for f in out.glob("*.jsonl"):
                f.unlink()
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(manifest, json.dumps({**settings, "complete": False}, indent=2) + "\n")

    todo: list[tuple[Path, list[Row]]] = []
    for split in splits:
        rows = tokenised[split][0]
        for k, i in enumerate(range(0, len(rows), o.shard_rows)):
            path = out / f"{split}-{k:05d}.jsonl"
            if not path.is_file():  # finished shards are kept: the pass resumes
                todo.append((path, rows[i : i + o.shard_rows]))
    total = sum(len(r) for _, r in todo)
    print(f"score_tokens: {total} rows in {len(todo)} shards to score → {out}", flush=True)
    if todo:
        init_ray(cfg.ray.address, o.score_workers * o.score_threads, cfg.ray.num_cpus, cfg.ray.temp_dir, True)
        actor = ray.remote(num_cpus=o.score_threads, num_gpus=o.score_gpus)(ScoreWorker)
        workers = [
            actor.remote(oracle, reference, o.score_dtype, o.score_threads, o.score_batch_size)
            for _ in range(o.score_workers)
        ]
        names = [f"score_worker_{i}" for i in range(len(workers))]
        t0, done = time.perf_counter(), 0
        try:
            for i in range(0, len(todo), len(workers)):
                wave = todo[i : i + len(workers)]
                refs = [w.score.remote(rows, o.ratio) for w, (_, rows) in zip(workers, wave)]
                for (path, rows), recs in zip(wave, get_all(refs, names[: len(refs)], "score", None)):
                    _atomic_write(path, "".join(json.dumps(r) + "\n" for r in recs))
                    done += len(rows)
                print(f"  {done}/{total} rows ({time.perf_counter() - t0:.0f} s)", flush=True)
        finally:
            for w in workers:
                ray.kill(w)
    _atomic_write(manifest, json.dumps({**settings, "complete": True}, indent=2) + "\n")
    print(f"score_tokens: masks complete in {out}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    return recipe_cli(
        argv, __doc__, lambda cfg, flags: score_tokens(cfg, force="--force" in flags), ("--force",)
    )


if __name__ == "__main__":
    sys.exit(main())
