"""ChronoQA answer checking: the normaliser, the match rules, the ``chronoqa`` reward plugin and the registry of
answer checks that ``python -m launch.eval --task chronoqa`` offers (``--answer-check``).

Normalisation (:func:`normalize_answer`): Unicode NFKC (full-width letters and digits become ASCII), lower
case, and every punctuation character (Unicode category P*) and whitespace removed. Symbols (S*: ``$``, ``+``)
are kept: they carry meaning in numbers.

Checks (:data:`ANSWER_CHECKS`, prediction and reference normalised first):

- ``exact``: the prediction equals the reference.
- ``contains`` (the default): the reference occurs inside the prediction, so "答案是COTODAMA歌词音箱。"
  counts for "COTODAMA歌词音箱". Lenient on purpose (small models wrap answers in sentences); it can
  accept a prediction that lists several candidates, which ``exact`` does not.
- yes/no references (``是的``, ``不是``, ``否``, ... — 1,045 judgement questions): containment is wrong here
  ("不是的" contains "是的"), so ``contains`` compares polarity instead: the prediction's polarity is that
  of its first yes/no marker, where at one position the longer marker wins ("不是" before "是");
  ``exact`` wants a bare yes/no word of the right polarity.
- ``judge``: an LLM judge. Not available: see :func:`judge_check`'s error.

The ``chronoqa`` reward (``eval.answer_check: {name: chronoqa}``, kwarg ``mode``: contains | exact) makes
the same verdict a training-time held-out check: 1.0 / 0.0, None without a reference.

>>> normalize_answer(" ＣＯＴＯＤＡＭＡ 歌词音箱！")
'cotodama歌词音箱'
>>> contains_match("答案：COTODAMA歌词音箱。", "COTODAMA歌词音箱"), contains_match("不是的。", "是的")
(True, False)
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from rewards.registry import register_reward

AnswerCheck = Callable[[str, str], bool]  # (prediction, reference) -> correct


def normalize_answer(text: str) -> str:
    t = unicodedata.normalize("NFKC", str(text)).lower()
    return "".join(c for c in t if not c.isspace() and not unicodedata.category(c).startswith("P"))


# Yes/no markers. A reference equal (normalised) to one of them is a judgement answer: polarity is compared.
# Single characters that start unrelated words ("对于", "不久") are left out on purpose.
YES = ("是的", "是", "正确", "yes", "true")
NO = ("不是", "否", "不对", "没有", "并非", "错误", "no", "false")
# Leftmost marker wins; at one position the longer one ("不是" before "是"); English ones as whole words.
_POLARITY = re.compile(
    "|".join(rf"\b{m}\b" if m.isascii() else m for m in sorted((*YES, *NO), key=len, reverse=True))
)


def polarity(text: str) -> bool | None:
    """True (yes), False (no) or None: the first yes/no marker in the text (NFKC, lower case).

    >>> polarity("不是的，它更晚。"), polarity("Yes."), polarity("I know it")
    (False, True, None)
    """
    m = _POLARITY.search(unicodedata.normalize("NFKC", str(text)).lower())
    return None if m is None else m.group(0) in YES


def _judgement(reference: str) -> bool | None:
    r = normalize_answer(reference)
    return True if r in YES else False if r in NO else None


def exact_match(prediction: str, reference: str) -> bool:
    want = _judgement(reference)
    if want is not None:
        return normalize_answer(prediction) in (YES if want else NO)
    return normalize_answer(prediction) == normalize_answer(reference)


def contains_match(prediction: str, reference: str) -> bool:
    want = _judgement(reference)
    if want is not None:
        return polarity(prediction) is want
    ref = normalize_answer(reference)
    return bool(ref) and ref in normalize_answer(prediction)


class JudgeUnavailable(RuntimeError):
    """The ``judge`` answer check was asked for, but the project cannot serve a judge model to an eval."""


def judge_check(prediction: str, reference: str) -> bool:
    """The LLM-judge hook. It raises: nothing in the project serves a judge model to an evaluation yet."""
    raise JudgeUnavailable(
        "answer check 'judge' needs an LLM judge, which forge-rl cannot serve yet: `aux_models` "
        "(launch/config.py) are loaded only on the learners, for the losses that declare their roles "
        "(trainer/losses.py), and no eval or reward path loads a judge model or has a judge prompt and "
        "verdict parser. Missing: a `judge` role loaded as an engine (rollout/engines) beside the evaluated "
        "model, plus the prompt and parser. Use --answer-check contains (default) or exact."
    )


# Name → check; a registry so the CLI validates the name before any model is loaded.
ANSWER_CHECKS: dict[str, AnswerCheck] = {
    "contains": contains_match,
    "exact": exact_match,
    "judge": judge_check,
}


def resolve_check(name: str) -> AnswerCheck:
    """The check ``name``; the judge fails here, before any generation, with what is missing."""
    if name not in ANSWER_CHECKS:
        raise ValueError(f"unknown answer check {name!r}; known: {', '.join(ANSWER_CHECKS)}")
    if ANSWER_CHECKS[name] is judge_check:
        judge_check("", "")
    return ANSWER_CHECKS[name]


@register_reward("chronoqa")
def chronoqa_answer(
    completions: list[str], answer: list[str | None], mode: str = "contains", **columns: object
) -> list[float | None]:
    """1.0 when the completion matches the reference under ``mode`` (contains | exact), else 0.0; None
    without a reference.

    >>> chronoqa_answer(["是的，它更早。", "2019年"], ["是的", "2020年"])
    [1.0, 0.0]
    """
    check = resolve_check(mode)
    return [None if a is None else float(check(c, a)) for c, a in zip(completions, answer)]


def _check_kwargs(kwargs: dict) -> None:
    mode = kwargs.get("mode", "contains")
    if mode not in ANSWER_CHECKS or mode == "judge":
        raise ValueError(f"mode: {mode!r} is not one of contains, exact")


chronoqa_answer.check_kwargs = _check_kwargs  # type: ignore[attr-defined]
