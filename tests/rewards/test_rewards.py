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

    code = "import sys, rewards.registry as r; print(sorted(r.REWARDS), 'math_verify' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['format', 'math'] False"


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
