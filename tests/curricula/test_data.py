"""Prompt datasets: generated arithmetic, files (jsonl/json/parquet), hf: sources, and their errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from curricula.data import ANSWER_EXTRACTORS, PromptDataset, load_prompts
from launch.config import ArithmeticConfig, DataConfig

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "llm"


def test_extractors() -> None:
    assert ANSWER_EXTRACTORS["identity"](" 42 ") == "42"
    assert ANSWER_EXTRACTORS["gsm8k"]("She has 3 + 4 = <<3+4=7>>7.\n#### 1,234") == "1234"
    assert ANSWER_EXTRACTORS["gsm8k"]("no marker") == ""


def test_arithmetic_deterministic_and_disjoint() -> None:
    cfg = DataConfig(arithmetic=ArithmeticConfig(num_problems=300, ops=["+", "-", "*"], seed=7))
    train = load_prompts(cfg)
    again = load_prompts(cfg)
    assert isinstance(train, PromptDataset) and len(train) == 300
    assert list(train) == list(again)
    p = train[0]
    assert p.uid == "arith-7-0" and p.text.startswith("What is ") and p.text.endswith("?")
    a, op, b = p.columns["a"], p.columns["op"], p.columns["b"]
    assert p.answer == str({"+": a + b, "-": a - b, "*": a * b}[op])
    assert len({q.text for q in train}) == 300  # distinct while the space allows
    ev = load_prompts(cfg, "eval")
    assert len(ev) == 64 and ev[0].uid == "arith-8-0"
    assert not {q.text for q in ev} & {q.text for q in train}
    big = DataConfig(arithmetic=ArithmeticConfig(num_problems=2000))
    assert len(load_prompts(big, "eval")) == 200


def test_arithmetic_options() -> None:
    assert len(load_prompts(DataConfig(max_rows=5))) == 5
    small = DataConfig(arithmetic=ArithmeticConfig(num_problems=50, min_value=1, max_value=3))
    assert len(load_prompts(small)) == 50  # 9 distinct problems: repeats allowed
    assert len(load_prompts(small, "eval")) == 0  # nothing left that is not in train
    with pytest.raises(ValueError, match=r"data.arithmetic.ops: \['/'\]"):
        load_prompts(DataConfig(arithmetic=ArithmeticConfig(ops=["/"])))


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


ROWS = [
    {"problem": "What is 1 + 1?", "answer": "#### 2", "level": 1},
    {"problem": "What is 2 + 2?", "answer": "#### 4", "level": 2},
    {"problem": "What is 3 + 3?", "answer": "#### 6", "level": 3},
]


def test_jsonl_fields_columns_and_eval_sibling(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "my_train.jsonl", ROWS)
    _write_jsonl(tmp_path / "my_test.jsonl", ROWS[:1])
    cfg = DataConfig(
        source=str(tmp_path / "my_train.jsonl"), prompt_field="problem", answer_extractor="gsm8k"
    )
    ds = load_prompts(cfg)
    assert len(ds) == 3 and ds.name == "my_train.jsonl"
    assert ds[1].uid == "my_train-1" and ds[1].text == "What is 2 + 2?" and ds[1].answer == "4"
    # Every field is a column (rewards get them all), the mapped ones too, raw.
    assert (
        ds[1].columns == {"problem": "What is 2 + 2?", "answer": "#### 4", "level": 2}
        and ds[1].solution is None
    )
    ev = load_prompts(cfg, "eval")
    assert len(ev) == 1 and ev[0].uid == "my_test-0"
    cfg.max_rows = 2
    assert len(load_prompts(cfg)) == 2
    (tmp_path / "my_test.jsonl").unlink()
    assert load_prompts(cfg, "eval") is None


def test_json_list_solution_and_ids(tmp_path: Path) -> None:
    rows = [{"id": f"q{i}", "q": r["problem"], "sol": r["answer"], "ans": i} for i, r in enumerate(ROWS)]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    cfg = DataConfig(
        source=str(tmp_path / "d.json"), prompt_field="q", answer_field="ans", solution_field="sol"
    )
    ds = load_prompts(cfg)
    assert [p.uid for p in ds] == ["q0", "q1", "q2"]
    assert ds[2].answer == "2" and ds[2].solution == "#### 6" and set(ds[2].columns) == {"q", "ans", "sol"}
    assert load_prompts(cfg, "eval") is None  # no 'train' in the name: no eval split
    (tmp_path / "d.json").write_text(json.dumps(rows + rows[:1]))
    with pytest.raises(ValueError, match=r"row 3: duplicate id 'q0'"):
        load_prompts(cfg)


def test_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "train.parquet")
    cfg = DataConfig(source=str(tmp_path / "train.parquet"), prompt_field="problem", answer_extractor="gsm8k")
    ds = load_prompts(cfg)
    assert [p.answer for p in ds] == ["2", "4", "6"] and ds[0].columns["level"] == 1


def test_errors_name_file_row_and_fields(tmp_path: Path) -> None:
    f = tmp_path / "train.jsonl"
    _write_jsonl(f, [*ROWS[:2], {"answer": "#### 3"}])
    with pytest.raises(
        ValueError, match=rf"{re.escape(str(f))} row 2: no field 'problem' \(fields: answer\)"
    ):
        load_prompts(DataConfig(source=str(f), prompt_field="problem"))
    with pytest.raises(
        ValueError,
        match=rf"{re.escape(str(f))} row 0: no field 'question' \(fields: problem, answer, level\)",
    ):
        load_prompts(DataConfig(source=str(f)))
    f.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(f))} line 2: invalid JSON"):
        load_prompts(DataConfig(source=str(f), prompt_field="problem"))
    with pytest.raises(ValueError, match=r"unsupported file type '\.csv'"):
        (tmp_path / "x.csv").write_text("a\n")
        load_prompts(DataConfig(source=str(tmp_path / "x.csv")))
    with pytest.raises(ValueError, match="not found"):
        load_prompts(DataConfig(source=str(tmp_path / "missing.jsonl")))


def test_hf_local_folder(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    folder = tmp_path / "mini"
    folder.mkdir()
    _write_jsonl(folder / "train.jsonl", ROWS)
    _write_jsonl(folder / "test.jsonl", ROWS[:2])
    cfg = DataConfig(source=f"hf:{folder}", prompt_field="problem", answer_extractor="gsm8k", max_rows=2)
    ds = load_prompts(cfg)
    assert len(ds) == 2 and ds[0].uid == "mini-train-0" and ds[0].answer == "2"
    assert len(load_prompts(cfg, "eval")) == 2
    with pytest.raises(ValueError, match=r"cannot load hf:.*nothing_here"):
        load_prompts(DataConfig(source=f"hf:{tmp_path / 'nothing_here'}"))


@pytest.mark.skipif(not (SHARED / "gsm8k").is_dir(), reason="shared GSM8K copy not present")
def test_real_gsm8k() -> None:
    cfg = DataConfig(source=str(SHARED / "gsm8k" / "train.jsonl"), answer_extractor="gsm8k")
    train = load_prompts(cfg)
    assert len(train) == 7473
    assert train[0].answer == "72" and train[0].text.startswith("Natalia sold clips")
    assert train[0].uid == "train-0" and set(train[0].columns) == {"question", "answer"}
    assert all(p.answer and p.answer.lstrip("-").replace(".", "").isdigit() for p in train)
    test = load_prompts(cfg, "eval")
    assert len(test) == 1319 and test[0].answer == "18"
