#!/usr/bin/env bash
# Set up, then run the main job: train the support-desk intent skill on the example data
# and classify a few queries (label, confidence, time).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
SLM=.venv/bin/slmstack
$SLM train classify examples/support-desk/data/intents.csv --strategy head --out runs/intent
$SLM predict runs/intent \
  "my router keeps dropping the wifi connection" \
  "do you ship to Canada?" \
  "I was charged twice and nobody answers my emails" \
  "how do I change the email on my account"
