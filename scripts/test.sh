#!/usr/bin/env bash
# Set up, then run the linters, the type checker and the whole test suite (no network).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false SLMSTACK_PROGRESS=0
.venv/bin/ruff check src tests bench examples
.venv/bin/ruff format --check src
.venv/bin/mypy
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
