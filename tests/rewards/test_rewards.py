"""Built-in reward plugins (math, format) and the plugin resolver."""

from __future__ import annotations

import pytest

from rewards.registry import REWARDS, RewardPluginError, register_reward, resolve_reward


def _math(completions: list[str], answers: list[str | None]) -> list[float | None]:
    fn = resolve_reward("math")
    return fn(["q"] * len(completions), completions, answer=answers)


@pytest.mark.parametrize(
    ("completion", "answer", "expected"),
    [
        ("So the total is \\boxed{68}.", "68", 1.0),
        ("The answer is $\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}", 1.0),
        ("\\boxed{0.5}", "\\frac{1}{2}", 1.0),
        ("47 + 21 = 68", "68", 1.0),
        ("The answer is 68.", "68", 1.0),
        ("The answer is 1,234.", "1234", 1.0),
        ("The answer is 1,234.", "1,234", 1.0),
        ("She earns $18 and spends $5, so she keeps 13 dollars.", "13", 1.0),
        ("First 12, then 30, finally 42", "42", 1.0),  # the last number counts
        ("First 42, then 30, finally 12", "42", 0.0),
        ("\\boxed{x^2 + 1}", "x^2+1", 1.0),
        ("\\boxed{67}", "68", 0.0),
        ("The answer is 69.", "68", 0.0),
        ("", "68", 0.0),
        ("I do not know.", "68", 0.0),
        ("-5", "-5", 1.0),
    ],
)
def test_math_answer_shapes(completion: str, answer: str, expected: float) -> None:
    assert _math([completion], [answer]) == [expected]


# The strict check (the default): a numeric reference needs a number in final form.
STRICT_82 = [
    ("82", 1.0),
    ("The answer is 82.", 1.0),
    ("\\boxed{82}", 1.0),
    ("82.0", 1.0),
    ("= 82", 1.0),
    ("37 + 45 = 82", 1.0),  # work shown, final answer a number
    ("So we get $82$ apples.", 1.0),
    ("37 + 45", 0.0),  # the question's own expression: math-verify alone proves it equal to 82
    ("\\boxed{37+45}", 0.0),
    ("37+45=?", 0.0),
    ("The answer is 37 + 45.", 0.0),
    ("\\boxed{45 + 37}", 0.0),
    ("\\boxed{2 \\times 41}", 0.0),
    ("\\boxed{82 + 0}", 0.0),
    ("\\boxed{82}\\boxed{37+45}", 0.0),  # hedging with two answers
    ("81", 0.0),
]


@pytest.mark.parametrize(("completion", "expected"), STRICT_82)
def test_math_strict_numeric_reference(completion: str, expected: float) -> None:
    assert _math([completion], ["82"]) == [expected]


@pytest.mark.parametrize(
    ("completion", "answer", "expected"),
    [
        # fractions: any final form of the same number
        ("\\boxed{\\frac{3}{4}}", "\\frac{3}{4}", 1.0),
        ("3/4", "\\frac{3}{4}", 1.0),
        ("0.75", "\\frac{3}{4}", 1.0),
        ("\\boxed{\\dfrac{6}{8}}", "\\frac{3}{4}", 1.0),
        ("\\boxed{1\\frac{1}{2}}", "\\frac{3}{2}", 1.0),
        ("\\boxed{\\frac{1}{2} + \\frac{1}{4}}", "\\frac{3}{4}", 0.0),
        ("\\boxed{1 - \\frac{1}{4}}", "0.75", 0.0),
        # negative numbers (a Unicode minus too)
        ("The answer is -5.", "-5", 1.0),
        ("\\boxed{-\\frac{3}{4}}", "-\\frac{3}{4}", 1.0),
        ("\u22125", "-5", 1.0),
        ("\\boxed{3 - 8}", "-5", 0.0),
        # thousands separators, percentages, scientific notation
        ("The answer is 1,234.", "1234", 1.0),
        ("\\boxed{1,234}", "1,234", 1.0),
        ("\\boxed{1000 + 234}", "1234", 0.0),
        ("That is 15%.", "15", 1.0),
        ("\\boxed{1.5 \\times 10^3}", "1500", 1.0),
        ("\\boxed{15 \\times 10^2}", "1500", 0.0),
        ("\\boxed{2^3}", "8", 0.0),
        ("\\boxed{\\sqrt{4}}", "2", 0.0),
        # symbolic references keep symbolic equivalence
        ("\\boxed{1 + x^2}", "x^2+1", 1.0),
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", 1.0),
        ("\\boxed{\\frac{\\sqrt{12}}{4}}", "\\frac{\\sqrt{3}}{2}", 1.0),
        ("\\boxed{3\\sqrt{2}}", "\\sqrt{18}", 1.0),
        ("\\boxed{90^\\circ}", "90^\\circ", 1.0),
    ],
)
def test_math_strict_forms(completion: str, answer: str, expected: float) -> None:
    assert _math([completion], [answer]) == [expected]


def test_math_lenient_is_an_explicit_option() -> None:
    fn = resolve_reward("math")
    restated = ["37 + 45", "\\boxed{37+45}", "The answer is 37 + 45."]
    assert fn(["What is 37 + 45?"] * 3, restated, answer=["82"] * 3) == [0.0, 0.0, 0.0]
    assert fn(["What is 37 + 45?"] * 3, restated, answer=["82"] * 3, strict=False) == [1.0, 1.0, 1.0]


# MATH-500 references that are expressions, with rewrites a grader must accept and restatements it must not.
MATH500_FORMS = [
    ("test/intermediate_algebra/1217.json", "\\boxed{-1 + x - x^2 + x^3 - x^4 + x^5}", 1.0),
    ("test/algebra/2253.json", "\\boxed{\\frac{3}{4}\\sqrt{3}}", 1.0),
    ("test/precalculus/990.json", "\\boxed{-5i + 6}", 1.0),
    ("test/algebra/2036.json", "\\boxed{\\sqrt{117}}", 1.0),
    ("test/algebra/2584.json", "\\boxed{4\\frac{2}{3}}", 1.0),
    ("test/algebra/2584.json", "\\boxed{\\frac{7}{3} + \\frac{7}{3}}", 0.0),
    ("test/prealgebra/1558.json", "\\boxed{\\frac{5}{4}}", 1.0),
    ("test/prealgebra/1558.json", "\\boxed{1 + 0.25}", 0.0),
]


def _jsonl(path):
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def math500():
    from tests.conftest import SHARED_DATA

    path = SHARED_DATA / "llm" / "math500" / "test.jsonl"
    if not path.is_file():
        pytest.skip("shared MATH-500 data not present")
    return {r["unique_id"]: r for r in _jsonl(path)}


@pytest.mark.parametrize(("uid", "completion", "expected"), MATH500_FORMS)
def test_math_strict_math500_expression_references(math500, uid, completion, expected) -> None:
    assert _math([completion], [math500[uid]["answer"]]) == [expected]


def test_math_strict_accepts_reference_solutions(math500) -> None:
    """Every MATH-500 and GSM8K worked solution, read as a completion, still scores 1 under the strict check
    (only the one MATH-500 solution that boxes two answers is rejected), so strictness costs no real answers."""
    from curricula.data import ANSWER_EXTRACTORS
    from tests.conftest import SHARED_DATA

    rows = list(math500.values())
    got = _math([r["solution"] for r in rows], [r["answer"] for r in rows])
    rejected = [r["unique_id"] for r, v in zip(rows, got) if v != 1.0]
    assert len(rejected) <= 4, rejected
    assert (
        "test/number_theory/459.json" in rejected
    )  # "\\boxed{15\\frac{39}{40}}, or \\boxed{\\frac{639}{40}}"
    gsm = _jsonl(SHARED_DATA / "llm" / "gsm8k" / "test.jsonl")[:200]
    refs = [ANSWER_EXTRACTORS["gsm8k"](r["answer"]) for r in gsm]
    assert sum(v == 1.0 for v in _math([r["answer"] for r in gsm], refs)) >= 198


def test_copied_expression_guard() -> None:
    fn = resolve_reward("copied_expression")
    q = "What is 37 + 45? Give the final answer as a number."
    got = fn(
        [q] * 7,
        ["37 + 45", "\\boxed{45+37}", "The answer is 37 + 45.", "37 + 45 = 82", "82", "", "\\boxed{12 + 3}"],
    )
    assert got == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    # a product question: "37 × 45" and "37*45" are both copies
    assert fn(["What is 37 * 45?"] * 2, ["\\boxed{37 \\times 45}", "37*45"]) == [1.0, 1.0]


def test_math_missing_answer_gives_no_signal() -> None:
    fn = resolve_reward("math")
    assert fn(["q", "q"], ["5", "5"]) == [None, None]  # no answer column at all
    assert _math(["5", "5", "5"], [None, "", "5"]) == [None, None, 1.0]


def test_math_runs_in_a_thread() -> None:
    # math-verify's default signal-based timeouts fail outside the main thread; ours are disabled.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as ex:
        assert ex.submit(_math, ["\\boxed{3}", "4"], ["3", "3"]).result() == [1.0, 0.0]


def test_format_reward() -> None:
    fn = resolve_reward("format")
    assert fn(["q"] * 3, ["so \\boxed{5}", "5", "\\boxed{}"]) == [1.0, 0.0, 0.0]
    assert fn(["q"] * 2, ["<answer>5</answer>", "5"], pattern=r"<answer>.+</answer>") == [1.0, 0.0]
    assert fn(["q"] * 2, ["<a>5</a>", "x <a>5</a>"], pattern=r"<a>\d+</a>", fullmatch=True) == [1.0, 0.0]


def test_builtins_registered_without_math_verify() -> None:
    import subprocess
    import sys

    code = "import sys, rewards.registry as r; print(sorted(r.REWARDS), 'math_verify' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    gqr = "'gqr_ctr', 'gqr_hit', 'gqr_malformed', 'gqr_short', 'gqr_valid'"  # GQR's CTR model loads torch lazily
    assert (
        out.strip()
        == f"['chronoqa', 'copied_expression', 'env_return', 'env_won', 'format', {gqr}, 'math', 'overlong'] False False"
    )


def test_register_reward() -> None:
    @register_reward("_test_const")
    def const(prompts, completions, **_):
        return [0.5] * len(completions)

    try:
        assert resolve_reward("_test_const") is const
        with pytest.raises(ValueError, match="already registered"):
            register_reward("_test_const")(lambda p, c, **k: [])
    finally:
        del REWARDS["_test_const"]


PLUGIN = """
def score(prompts, completions, **columns):
    return [float(len(c)) for c in completions]

not_a_function = 3
"""


def test_resolve_by_module_path(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_reward_mod.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    fn = resolve_reward("my_reward_mod:score")
    assert fn(["q"], ["abc"]) == [3.0]


def test_resolve_by_file_path(tmp_path, monkeypatch) -> None:
    (tmp_path / "plug.py").write_text(PLUGIN)
    assert resolve_reward(f"{tmp_path}/plug.py:score")(["q"], ["ab"]) == [2.0]
    monkeypatch.chdir(tmp_path)
    assert resolve_reward("plug.py:score")(["q"], ["a"]) == [1.0]  # relative to the current directory
    assert resolve_reward("./plug.py:score") is resolve_reward("plug.py:score")  # module loaded once


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("my/file.py:score", r"reward plugin 'my/file.py:score': file not found"),
        (
            "nonexistent_pkg_xyz.mod:fn",
            r"cannot import module 'nonexistent_pkg_xyz.mod': ModuleNotFoundError",
        ),
        ("rewards.math:nope", r"module 'rewards.math' has no attribute 'nope'"),
        ("{tmp}/plug.py:missing", r"file '.*plug.py' has no attribute 'missing'"),
        ("{tmp}/plug.py:not_a_function", r"'not_a_function' is not callable \(int\)"),
        ("{tmp}/broken.py:fn", r"importing .*broken.py failed: ZeroDivisionError"),
        ("no_such_reward", r"not a registered reward \(registered: .*format, .*math.*\)"),
    ],
)
def test_resolve_errors(tmp_path, spec: str, message: str) -> None:
    (tmp_path / "plug.py").write_text(PLUGIN)
    (tmp_path / "broken.py").write_text("x = 1 / 0\n")
    with pytest.raises(RewardPluginError, match=message) as e:
        resolve_reward(spec.format(tmp=tmp_path))
    assert "\n" not in str(e.value)
