#!/usr/bin/env bash
# Set up, then run the main job: the support-desk stack end to end. The first run trains
# every skill from examples/support-desk/data (a few minutes on 2 cores, plus about 4 for
# the complaint summariser's LoRA adapter; cached after),
# then prints each query's route, answer and decision trace, and ends with what the run
# cost (from the ledger) beside the same traffic at GPT-4's prices.
#
# With a local OpenAI-compatible LLM server running, name it to add an LLM tier: the
# messages whose intent is unclear go to it instead of to a person, and the cost summary
# shows that tier's share of the requests and of the cost. Without the variable (or
# --llm) no LLM is called; a named server that does not answer stops the demo.
#   SLMSTACK_DEMO_LLM_URL=http://127.0.0.1:8080/v1 bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/python examples/support-desk/run.py "$@"
