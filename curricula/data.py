"""Prompt datasets: ``load_prompts(cfg.data, split) -> PromptDataset`` (a sequence of ``rollout.types.Prompt``).

Sources (``data.source``):

- ``arithmetic``: generated "What is 47 + 38?" problems, deterministic from ``data.arithmetic.seed``. The
  eval split uses ``seed + 1``, holds ``max(64, num_problems // 10)`` problems, none of them in the train set.
- a file: ``.jsonl`` (one object per line), ``.json`` (a list of objects, or JSON lines) or ``.parquet``.
  ``prompt_field`` → ``Prompt.text``, ``answer_field`` → ``answer`` (through ``answer_extractor``),
  ``solution_field`` → ``solution``; every field but ``id`` is also in ``Prompt.columns`` (rewards get them
  all as keyword lists). ``prompt_field: null`` is for rows without a text column (countdown's
  ``{"target": 98, "nums": [44, 19, 35]}``): the problem text is ``prompt.template`` filled from the row's
  columns (``load_prompts(..., template=...)``), so the template must not use ``{text}``. The uid is the row's ``id``
  field if it has one, else ``<file stem>-<row>``. The eval split is the sibling file with ``test`` in
  place of ``train`` in its name (``train.jsonl`` → ``test.jsonl``), or None when there is none.
- ``hf:NAME`` or ``hf:NAME:CONFIG``: ``datasets.load_dataset(NAME, CONFIG, split=data.split)``. With no
  network this works only for local folders and datasets already in the Hugging Face cache. The eval
  split is ``test`` (else ``validation``), or None.

``max_rows`` keeps the first rows of the train split. Rows are numbered from 0 in messages and uids.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from rollout.types import Prompt

if TYPE_CHECKING:
    from launch.config import ArithmeticConfig, DataConfig

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- answer extractors


def _identity(answer: str) -> str:
    return str(answer).strip()


def _gsm8k(answer: str) -> str:
    # GSM8K answers are worked solutions ending in "#### 1,234": keep the final number, without commas.
    text = str(answer)
    if "####" not in text:
        return ""
    return text.rsplit("####", 1)[1].strip().replace(",", "")


ANSWER_EXTRACTORS: dict[str, Callable[[str], str]] = {"identity": _identity, "gsm8k": _gsm8k}


# ---------------------------------------------------------------- the dataset


class PromptDataset(Sequence[Prompt]):
    """An immutable, indexable list of prompts with a name (for logs) and the count of skipped bad rows."""

    def __init__(self, prompts: list[Prompt], name: str, skipped: int = 0) -> None:
        self._prompts = list(prompts)
        self.name = name
        self.skipped = skipped

    def __len__(self) -> int:
        return len(self._prompts)

    @overload
    def __getitem__(self, i: int) -> Prompt: ...

    @overload
    def __getitem__(self, i: slice) -> list[Prompt]: ...

    def __getitem__(self, i: int | slice) -> Prompt | list[Prompt]:
        return self._prompts[i]

    def __repr__(self) -> str:
        return f"PromptDataset({self.name!r}, {len(self)} prompts)"


# ---------------------------------------------------------------- arithmetic


_OPS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
}


def _arith_problems(
    cfg: ArithmeticConfig, n: int, seed: int, exclude: set[tuple[int, str, int]]
) -> list[tuple[int, str, int]]:
    bad = [op for op in cfg.ops if op not in _OPS]
    if bad or not cfg.ops:
        raise ValueError(f"data.arithmetic.ops: {bad or cfg.ops} not among {list(_OPS)}")
    if cfg.min_value > cfg.max_value:
        raise ValueError(f"data.arithmetic: min_value {cfg.min_value} > max_value {cfg.max_value}")
    span = cfg.max_value - cfg.min_value + 1
    space = span * span * len(set(cfg.ops)) - len(exclude)
    unique = n <= space  # distinct problems while the space allows; a tiny space repeats problems
    rng = random.Random(seed)
    out: list[tuple[int, str, int]] = []
    seen = set(exclude)
    while len(out) < n:
        prob = (
            rng.randint(cfg.min_value, cfg.max_value),
            rng.choice(cfg.ops),
            rng.randint(cfg.min_value, cfg.max_value),
        )
        if prob in exclude or (unique and prob in seen):
            continue
        seen.add(prob)
        out.append(prob)
    return out


def _arithmetic(cfg: ArithmeticConfig, split: str) -> PromptDataset:
    train = _arith_problems(cfg, cfg.num_problems, cfg.seed, set())
    if split == "train":
        probs, seed = train, cfg.seed
    else:
        seed = cfg.seed + 1
        span = cfg.max_value - cfg.min_value + 1
        left = span * span * len(set(cfg.ops)) - len(set(train))
        n = min(max(64, cfg.num_problems // 10), left)
        probs = _arith_problems(cfg, n, seed, set(train))
    prompts = [
        Prompt(
            uid=f"arith-{seed}-{i}",
            text=f"What is {a} {op} {b}?",
            answer=str(_OPS[op](a, b)),
            columns={"a": a, "op": op, "b": b},
        )
        for i, (a, op, b) in enumerate(probs)
    ]
    return PromptDataset(prompts, f"arithmetic-{split}")


# ---------------------------------------------------------------- files


def _read_json_lines(path: Path, text: str) -> list[Any]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    return rows


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a .jsonl / .json / .parquet file as dicts."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        rows: list[Any] = pq.read_table(path).to_pylist()
    elif suffix in (".jsonl", ".json"):
        text = path.read_text(encoding="utf-8")
        rows = []
        if suffix == ".json":
            try:
                rows = json.loads(text)
            except json.JSONDecodeError:
                rows = _read_json_lines(path, text)  # a .json file holding JSON lines
            else:
                if isinstance(rows, dict):
                    rows = [rows]
        else:
            rows = _read_json_lines(path, text)
    else:
        raise ValueError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .json or .parquet)")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{path} row {i}: expected a JSON object, got {type(row).__name__}")
    return rows


def to_dataset(
    rows: Sequence[dict[str, Any]], cfg: DataConfig, origin: str, stem: str, name: str
) -> PromptDataset:
    """Rows → a dataset in ``cfg.format`` (curricula/formats.py); errors name ``origin`` and the row."""
    if cfg.format == "prompt":
        return PromptDataset(rows_to_prompts(rows, cfg, origin, stem), name)
    from curricula.formats import parse_rows

    prompts, skipped = parse_rows(rows, cfg, origin, stem)
    if skipped:
        log.warning("%s: skipped %d invalid rows (data.skip_invalid)", origin, skipped)
    return PromptDataset(prompts, name, skipped)


def rows_to_prompts(rows: Sequence[dict[str, Any]], cfg: DataConfig, origin: str, stem: str) -> list[Prompt]:
    """Map dataset rows to prompts with the field names of ``cfg``; errors name ``origin`` and the row."""
    if cfg.answer_extractor not in ANSWER_EXTRACTORS:
        raise ValueError(
            f"data.answer_extractor: unknown {cfg.answer_extractor!r}; use one of {sorted(ANSWER_EXTRACTORS)}"
        )
    extract = ANSWER_EXTRACTORS[cfg.answer_extractor]
    wanted = [f for f in (cfg.prompt_field, cfg.answer_field, cfg.solution_field) if f]
    # prompt_field null: the text comes from prompt.template and the columns (load_prompts fills it in)
    prompts: list[Prompt] = []
    uids: set[str] = set()
    for i, row in enumerate(rows):
        for f in wanted:
            if f not in row:
                raise ValueError(f"{origin} row {i}: no field {f!r} (fields: {', '.join(map(str, row))})")
        text = "" if cfg.prompt_field is None else row[cfg.prompt_field]
        if cfg.prompt_field is not None and isinstance(text, (dict, list)):
            raise ValueError(
                f"{origin} row {i}: field {cfg.prompt_field!r} holds a {type(text).__name__}, not text "
                "(chat message lists belong to data.format: sft/preference rows)"
            )
        if cfg.prompt_field is not None and (text is None or not str(text).strip()):
            raise ValueError(f"{origin} row {i}: field {cfg.prompt_field!r} is empty")
        answer = None
        if cfg.answer_field and row[cfg.answer_field] is not None:
            answer = extract(row[cfg.answer_field]) or None  # "" means no usable answer: no reward signal
        solution = row[cfg.solution_field] if cfg.solution_field else None
        uid = str(row["id"]) if "id" in row and row["id"] is not None else f"{stem}-{i}"
        if uid in uids:
            raise ValueError(
                f"{origin} row {i}: duplicate id {uid!r} (ids key curriculum state; make them unique)"
            )
        uids.add(uid)
        columns = {k: v for k, v in row.items() if k != "id"}  # all of them, the mapped fields too
        prompts.append(Prompt(uid, str(text), answer, None if solution is None else str(solution), columns))
    return prompts


def _eval_sibling(path: Path) -> Path | None:
    if "train" not in path.name:
        return None
    sibling = path.with_name(path.name.replace("train", "test"))
    return sibling if sibling.is_file() else None


def _from_file(cfg: DataConfig, split: str) -> PromptDataset | None:
    path = Path(cfg.source).expanduser()
    if split != "train":
        sibling = _eval_sibling(path)
        if sibling is None:
            return None
        path = sibling
    if not path.is_file():
        raise ValueError(f"data.source: file {str(path)!r} not found")
    rows = read_rows(path)
    if split == "train" and cfg.max_rows is not None:
        rows = rows[: cfg.max_rows]
    return to_dataset(rows, cfg, str(path), path.stem, path.name)


# ---------------------------------------------------------------- Hugging Face datasets


def _load_hf(name: str, config: str | None, split: str) -> Any:
    import datasets

    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(
            f"data.source: cannot load hf:{name}{':' + config if config else ''} split {split!r}: "
            f"{type(e).__name__}: {msg} (without network only local folders and cached datasets load)"
        ) from None


def _from_hf(cfg: DataConfig, split: str) -> PromptDataset | None:
    name, _, config = cfg.source[len("hf:") :].partition(":")
    if split == "train":
        ds = _load_hf(name, config or None, cfg.split)
        if cfg.max_rows is not None:
            ds = ds.select(range(min(cfg.max_rows, len(ds))))
        hf_split = cfg.split
    else:
        ds = None
        for hf_split in ("test", "validation"):
            try:
                ds = _load_hf(name, config or None, hf_split)
                break
            except ValueError as e:
                log.info("no %s split: %s", hf_split, e)
        if ds is None:
            return None
    stem = name.rstrip("/").rsplit("/", 1)[-1]
    origin = f"hf:{name}[{hf_split}]"
    return to_dataset(list(ds), cfg, origin, f"{stem}-{hf_split}", origin)


# ---------------------------------------------------------------- entry point


def load_prompts(cfg: DataConfig, split: str = "train", template: str = "{text}") -> PromptDataset | None:
    """The ``train`` or ``eval`` prompts of ``cfg.source``; None for ``eval`` when the source has no eval split.

    ``template`` (the recipe's ``prompt.template``) builds the problem text when ``cfg.prompt_field`` is null."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be train or eval, not {split!r}")
    if cfg.source == "arithmetic":
        ds = _arithmetic(cfg.arithmetic, split)
        if split == "train" and cfg.max_rows is not None:
            ds = PromptDataset(ds[: cfg.max_rows], ds.name)
        return ds
    ds = _from_hf(cfg, split) if cfg.source.startswith("hf:") else _from_file(cfg, split)
    if ds is not None and cfg.prompt_field is None and cfg.format == "prompt":
        ds = PromptDataset(text_from_template(ds, template), ds.name, ds.skipped)
    return ds


def text_from_template(prompts: Sequence[Prompt], template: str) -> list[Prompt]:
    """Prompts whose text is ``template`` filled from their columns (datasets without a text column)."""
    if "{text}" in template:
        raise ValueError(
            f"data.prompt_field is null, so prompt.template must build the problem from columns (e.g. "
            f"'Use {{nums}} to make {{target}}.') and cannot use {{text}}; it is {template!r}"
        )
    out = []
    for i, p in enumerate(prompts):
        try:
            text = template.format(**p.columns)
        except KeyError as e:
            raise ValueError(
                f"{getattr(prompts, 'name', 'data')} row {i}: prompt.template uses {{{e.args[0]}}} but the row has "
                f"no such column (columns: {', '.join(map(str, p.columns))})"
            ) from None
        except (IndexError, ValueError) as e:
            raise ValueError(f"prompt.template {template!r}: {e}") from None
        out.append(replace(p, text=text))
    return out
