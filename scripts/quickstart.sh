#!/usr/bin/env bash
# README command 1: set up on a fresh machine and run the default recipe (GRPO, SmolLM2-135M, addition).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$PWD/.cache/torch_extensions}"
exec python -m launch.train recipes/grpo_default.yaml "$@"
