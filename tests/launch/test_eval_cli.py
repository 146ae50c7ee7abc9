"""``python -m launch.eval``: target and data resolution (fast), and real runs on the tiny model (slow)."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from launch.eval import KNOWN_DATASETS, EvalError, data_root, load_data, main, resolve_target
from launch.passk import pass_at_k

ROOT = Path(__file__).resolve().parents[2]
PROBLEMS = [("What is 1 + 2?", "3"), ("What is 3 + 4?", "7"), ("What is 10 + 5?", "15")]


def _fields(**kw) -> argparse.Namespace:
    base = {"prompt_field": None, "answer_field": None, "answer_extractor": None}
    return argparse.Namespace(**(base | kw))


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run_layout(root: Path, model_src: Path | None = None) -> Path:
    """run/checkpoints/{latest, step_000001/model, step_000002/model}; latest names step_000002."""
    for step in ("step_000001", "step_000002"):
        model = root / "checkpoints" / step / "model"
        if model_src is not None:
            shutil.copytree(model_src, model)
        else:
            model.mkdir(parents=True)
            (model / "config.json").write_text("{}")
    (root / "checkpoints" / "latest").write_text("step_000002\n")
    return root


def test_resolve_target_layouts(tmp_path):
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    t = resolve_target(str(hf))
    assert (t.kind, t.model_path, t.recipe) == ("model", str(hf), None)

    run = _run_layout(tmp_path / "run")
    (run / "recipe.yaml").write_text("prompt: {template: 'Q: {text} A:'}\nrollout: {max_new_tokens: 6}\n")
    want = str(run / "checkpoints" / "step_000002" / "model")
    for arg in (run, run / "checkpoints", run / "checkpoints" / "step_000002", Path(want)):
        t = resolve_target(str(arg))
        assert (t.kind, t.model_path) == ("checkpoint", want), arg
        assert t.recipe.prompt.template == "Q: {text} A:" and t.recipe_path == str(run / "recipe.yaml")
    older = resolve_target(str(run / "checkpoints" / "step_000001"))
    assert older.model_path.endswith("step_000001/model")

    (run / "checkpoints" / "latest").write_text("step_000009\n")
    with pytest.raises(EvalError, match="step_000009, which holds no model"):
        resolve_target(str(run))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvalError, match="not a model, checkpoint or run"):
        resolve_target(str(tmp_path / "empty"))
    with pytest.raises(EvalError, match=r"recipe \.yaml or builtin"):
        resolve_target(str(tmp_path / "missing"))


def test_file_fields_are_detected(tmp_path):
    f = _jsonl(tmp_path / "p.jsonl", [{"problem": "What is 2 + 2?", "answer": 4, "id": 7}])
    name, ds, info = load_data(str(f), _fields())
    assert (name, info["fields"], info["extractor"]) == ("p", ["problem", "answer"], "identity")
    assert (ds[0].text, ds[0].answer, ds[0].uid) == ("What is 2 + 2?", "4", "7")
    g = _jsonl(tmp_path / "test.jsonl", [{"question": "Q", "answer": "so 1 + 1 = 2\n#### 1,002"}])
    name, ds, info = load_data(str(g), _fields())
    assert (name, info["extractor"], ds[0].answer) == (f"{tmp_path.name}/test", "gsm8k", "1002")
    h = _jsonl(tmp_path / "h.jsonl", [{"input": "Q", "target": "1"}])
    with pytest.raises(EvalError, match="--prompt-field and --answer-field"):
        load_data(str(h), _fields())
    _, ds, _ = load_data(str(h), _fields(prompt_field="input", answer_field="target"))
    assert ds[0].answer == "1"
    with pytest.raises(EvalError, match="not a known dataset"):
        load_data("gsm9k", _fields())


@pytest.mark.parametrize("name", sorted(KNOWN_DATASETS))
def test_known_datasets_load_with_answers(name):
    if not (data_root() / KNOWN_DATASETS[name].file).is_file():
        pytest.skip(f"shared data {name} not present")
    _, ds, _ = load_data(name, _fields())
    assert len(ds) >= 30 and all(p.text.strip() and p.answer for p in ds)
    if name == "gsm8k":
        assert all("####" not in p.answer and p.answer.lstrip("-").replace(".", "").isdigit() for p in ds)


def test_usage_errors_exit_2(tmp_path, capsys):
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    assert main([str(hf)]) == 2
    assert "--data is required" in capsys.readouterr().err
    assert main([str(hf), "--data", "nope"]) == 2


def _check_report(report: dict, k: int, n_problems: int) -> dict:
    d = report["datasets"]["probs"]
    for key in ("pass@1", "avg@k", "pass@k"):
        assert 0.0 <= d[key] <= 1.0, key
    assert d["k"] == k and d["problems"] == d["scored"] == n_problems and len(d["rows"]) == n_problems
    for row in d["rows"]:
        assert row["n"] == len(row["samples"]) == k and row["greedy"]["correct"] in (True, False)
        assert row["c"] == sum(s["correct"] for s in row["samples"])
        assert row["pass@k"] == pytest.approx(pass_at_k(k, row["c"], k))
        assert "copied_expression" in row["greedy"]
    rows = d["rows"]
    assert d["avg@k"] == pytest.approx(sum(r["c"] / k for r in rows) / len(rows))
    assert d["pass@1"] == pytest.approx(sum(r["greedy"]["correct"] for r in rows) / len(rows))
    assert d["monitors"]["greedy"].keys() == {"copied_expression"}
    assert report["git_commit"] and {"torch", "vllm", "transformers"} <= report["versions"].keys()
    return d


@pytest.mark.slow
def test_eval_hf_engine_on_a_run_checkpoint(tiny_model, tmp_path):
    """A run folder resolves to checkpoints/latest's model; the run's recipe gives template and max tokens."""
    probs = _jsonl(tmp_path / "probs.jsonl", [{"question": q, "answer": a} for q, a in PROBLEMS])
    run = _run_layout(tmp_path / "run", Path(tiny_model))
    (run / "recipe.yaml").write_text("prompt: {template: 'Q: {text} A:'}\nrollout: {max_new_tokens: 6}\n")
    out = tmp_path / "res.json"
    args = [str(run), "--data", str(probs), "--k", "2", "--engine", "hf", "--threads", "2", "--out", str(out)]
    assert main(args) == 0
    report = json.loads(out.read_text())
    s = report["settings"]
    assert s["kind"] == "checkpoint" and s["model_path"] == str(run / "checkpoints" / "step_000002" / "model")
    assert (s["template"], s["max_new_tokens"], s["recipe"]) == ("Q: {text} A:", 6, str(run / "recipe.yaml"))
    d = _check_report(report, k=2, n_problems=3)
    assert all(len(r["samples"]) == 2 for r in d["rows"])


@pytest.mark.slow
def test_eval_vllm_engine_command_line(tiny_model, tmp_path):
    """The default engine, as a command (vLLM runs in that process, not in the test's)."""
    probs = _jsonl(tmp_path / "probs.jsonl", [{"question": q, "answer": a} for q, a in PROBLEMS[:2]])
    out = tmp_path / "res.json"
    cmd = [sys.executable, "-m", "launch.eval", tiny_model, "--data", str(probs), "--k", "2"]
    cmd += ["--max-new-tokens", "6", "--dtype", "float32", "--kv-cache-gb", "0.125", "--threads", "1"]
    proc = subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pass@1" in proc.stdout and "probs" in proc.stdout
    report = json.loads(out.read_text())
    assert report["settings"]["engine"] == "vllm" and report["settings"]["kind"] == "model"
    _check_report(report, k=2, n_problems=2)
