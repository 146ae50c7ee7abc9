"""Row formats for ``data.format``: how a dataset row becomes a :class:`~rollout.types.Prompt`.

- ``prompt`` (default): a problem to generate for (``prompt_field``, ``answer_field``, ``solution_field``).
- ``preference``: a prompt with a chosen and a rejected response (``chosen_field``, ``rejected_field``).
- ``ranked``: a prompt with k ≥ 2 responses and their scores (``responses_field``, ``scores_field``); the
  responses are ranked by score, best first.
- ``sft``: a prompt with one target response (``response_field``).

Responses are either strings (the prompt then comes from ``prompt_field``) or chat message lists in the
UltraFeedback / TRL conversational layout ``[{"role": "user", ...}, {"role": "assistant", ...}]``: the
prompt is every message but the last, which must be the assistant's reply; all responses of a row must
share that prompt. The offline strategies read ``Prompt.columns["responses"]`` (best first),
``columns["scores"]`` and, for chat rows, ``columns["messages"]`` (the prompt messages).

A bad row (missing side, empty response, fewer than two responses, mismatched prompts or roles) is an
error naming the file and row, or, with ``data.skip_invalid: true``, skipped and counted
(``PromptDataset.skipped``, logged as ``data/skipped_rows``) — never dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rollout.types import Prompt

if TYPE_CHECKING:
    from launch.config import DataConfig


class RowError(ValueError):
    """One bad row; the message names the file and the row."""


RowParser = Callable[[dict[str, Any], "DataConfig", str], Prompt]
FORMATS: dict[str, RowParser | None] = {"prompt": None}  # prompt rows: curricula.data.rows_to_prompts


def register_format(name: str) -> Callable[[RowParser], RowParser]:
    def deco(fn: RowParser) -> RowParser:
        FORMATS[name] = fn
        return fn

    return deco


def _split_chat(value: Any, field: str) -> tuple[list[dict[str, str]] | None, str]:
    """(prompt messages or None, response text) of a response given as a string or a message list."""
    if isinstance(value, str):
        return None, value
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        last = value[-1]
        if last.get("role") != "assistant":
            raise RowError(
                f"field {field!r}: the last message has role {last.get('role')!r}, not 'assistant'"
            )
        prompt = [{"role": str(m.get("role")), "content": str(m.get("content", ""))} for m in value[:-1]]
        if not prompt:
            raise RowError(f"field {field!r}: no prompt message before the assistant's reply")
        return prompt, str(last.get("content") or "")
    raise RowError(
        f"field {field!r}: expected a string or a list of chat messages, got {type(value).__name__}"
    )


def _responses(row: dict[str, Any], fields: Sequence[str], cfg: DataConfig, uid: str) -> Prompt:
    values = []
    for f in fields:
        if f not in row or row[f] is None:
            raise RowError(f"missing field {f!r} (fields: {', '.join(map(str, row))})")
        values.append(row[f])
    return _build(row, list(zip(fields, values)), cfg, uid)


def _build(row: dict[str, Any], named: list[tuple[str, Any]], cfg: DataConfig, uid: str) -> Prompt:
    messages: list[dict[str, str]] | None = None
    texts: list[str] = []
    for i, (field, value) in enumerate(named):
        prompt_msgs, text = _split_chat(value, field)
        if not text.strip():
            raise RowError(f"field {field!r}: empty response")
        if i == 0:
            messages = prompt_msgs
        elif prompt_msgs != messages:
            raise RowError(f"field {field!r}: its prompt messages differ from those of {named[0][0]!r}")
        texts.append(text)
    if messages is not None:
        user = [m["content"] for m in messages if m["role"] == "user"]
        prompt_text = user[-1] if user else messages[-1]["content"]
    else:
        if cfg.prompt_field not in row or not str(row[cfg.prompt_field] or "").strip():
            raise RowError(
                f"no prompt: field {cfg.prompt_field!r} is missing or empty and responses are strings"
            )
        prompt_text = str(row[cfg.prompt_field])
    # Every other field stays readable (as in the prompt format): side modules and rewards read them.
    columns: dict[str, Any] = {k: v for k, v in row.items() if k != "id"} | {"responses": texts}
    if messages is not None:
        columns["messages"] = messages
    return Prompt(uid, prompt_text, None, None, columns)


@register_format("preference")
def preference_row(row: dict[str, Any], cfg: DataConfig, uid: str) -> Prompt:
    p = _responses(row, [cfg.chosen_field, cfg.rejected_field], cfg, uid)
    p.columns["scores"] = [1.0, 0.0]
    return p


@register_format("sft")
def sft_row(row: dict[str, Any], cfg: DataConfig, uid: str) -> Prompt:
    return _responses(row, [cfg.response_field], cfg, uid)


@register_format("ranked")
def ranked_row(row: dict[str, Any], cfg: DataConfig, uid: str) -> Prompt:
    for f in (cfg.responses_field, cfg.scores_field):
        if f not in row or row[f] is None:
            raise RowError(f"missing field {f!r} (fields: {', '.join(map(str, row))})")
    resp, scores = row[cfg.responses_field], row[cfg.scores_field]
    if not isinstance(resp, list) or not isinstance(scores, list):
        raise RowError(f"fields {cfg.responses_field!r} and {cfg.scores_field!r} must be lists")
    if len(resp) < 2:
        raise RowError(
            f"field {cfg.responses_field!r}: a ranked list needs at least 2 responses, got {len(resp)}"
        )
    if len(scores) != len(resp):
        raise RowError(f"{len(resp)} responses but {len(scores)} scores")
    try:
        vals = [float(s) for s in scores]
    except (TypeError, ValueError):
        raise RowError(f"field {cfg.scores_field!r}: scores must be numbers") from None
    order = sorted(range(len(resp)), key=lambda i: -vals[i])  # best first; ties keep the row's order
    p = _build(row, [(f"{cfg.responses_field}[{i}]", resp[i]) for i in order], cfg, uid)
    p.columns["scores"] = [vals[i] for i in order]
    return p


def parse_rows(
    rows: Sequence[dict[str, Any]], cfg: DataConfig, origin: str, stem: str
) -> tuple[list[Prompt], int]:
    """(prompts, number of skipped rows) for a non-``prompt`` format; errors name ``origin`` and the row."""
    parse = FORMATS[cfg.format]
    assert parse is not None
    out: list[Prompt] = []
    skipped = 0
    for i, row in enumerate(rows):
        uid = str(row["id"]) if row.get("id") is not None else f"{stem}-{i}"
        try:
            out.append(parse(row, cfg, uid))
        except RowError as e:
            if not cfg.skip_invalid:
                raise ValueError(
                    f"{origin} row {i}: {e} (or set data.skip_invalid=true to skip such rows)"
                ) from None
            skipped += 1
    return out, skipped
