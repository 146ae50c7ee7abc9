#!/usr/bin/env bash
# README command 2: set up (if needed) and run the whole test suite, slow real-component tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$PWD/.cache/torch_extensions}"
export TOKENIZERS_PARALLELISM=false
ruff check .
exec python -m pytest -q "$@"
