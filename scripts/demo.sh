#!/usr/bin/env bash
# Set up, then run the main job: the support-desk stack end to end. The first run trains
# every skill from examples/support-desk/data (a few minutes on 2 cores, cached after),
# then prints each query's route, answer and decision trace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/python examples/support-desk/run.py "$@"
