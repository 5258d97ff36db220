#!/usr/bin/env bash
# Set up, then run the linters, the type checker and the whole test suite (no network).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false SLMSTACK_PROGRESS=0
# The test command starts PostgreSQL and an LLM server itself, so tests that need them fail
# (rather than skip) if they are missing.
export CI=1
# What this script makes under /tmp goes when it exits (a 320 MB light virtualenv left per run
# once filled the CI disk); only the screenshots folder (kilobytes) stays, to be looked at.
TMP_DIRS=() PG_DIR="" AS_PG=()
cleanup() {
  if [ -n "$PG_DIR" ]; then
    (cd "$PG_DIR" && "${AS_PG[@]}" pg_ctl -D data -m immediate stop >/dev/null) || true
  fi
  [ ${#TMP_DIRS[@]} -eq 0 ] || rm -rf "${TMP_DIRS[@]}"
}
trap cleanup EXIT
# PostgreSQL, for the inbox and ledger suites: a throwaway cluster on a free loopback port,
# stopped on exit (unless SLMSTACK_TEST_PG_URL already names a server to use).
if [ -z "${SLMSTACK_TEST_PG_URL:-}" ]; then
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$PG_BIN" ] && ! command -v initdb >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  export PATH="${PG_BIN:+$PG_BIN:}$PATH"
  PG_DIR=$(mktemp -d) AS_PG=()
  TMP_DIRS+=("$PG_DIR")
  if [ "$(id -u)" = 0 ]; then  # initdb refuses to run as root
    id -u postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$PG_DIR" && AS_PG=(runuser -u postgres --)
  fi
  PG_PORT=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  (cd "$PG_DIR" && "${AS_PG[@]}" initdb -D data -U postgres -A trust --no-sync >/dev/null \
    && "${AS_PG[@]}" pg_ctl -D data -l log -w -o "-h 127.0.0.1 -p $PG_PORT -k $PG_DIR -F" start >/dev/null)
  export SLMSTACK_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/postgres"
fi
# Headless Chromium and its driver from Debian's packages, for the console's browser tests
# (tests/test_console_browser.py drives them with Selenium; nothing is downloaded at run time).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
# The console's browser tests save their screenshots here (never into the repository).
export SLMSTACK_TEST_ARTIFACTS=${SLMSTACK_TEST_ARTIFACTS:-$(mktemp -d)}
# The light install: exported (ONNX) skills, workflows and the server without torch, in a
# virtualenv of its own (about 30 s from the package index); tests/test_onnx_export.py uses it.
if [ -n "${SLMSTACK_LIGHT_VENV:-}" ]; then
  LIGHT_DIR=$SLMSTACK_LIGHT_VENV
else
  LIGHT_DIR=$(mktemp -d) && TMP_DIRS+=("$LIGHT_DIR") && LIGHT_DIR=$LIGHT_DIR/light
fi
LIGHT_PY=${PYTHON:-python3.11}
command -v "$LIGHT_PY" >/dev/null || LIGHT_PY=python3
[ -x "$LIGHT_DIR/bin/python" ] || "$LIGHT_PY" -m venv "$LIGHT_DIR"
"$LIGHT_DIR/bin/python" -m pip install --disable-pip-version-check -q ".[onnx,serve,workflows]"
export SLMSTACK_LIGHT_PYTHON="$LIGHT_DIR/bin/python"
.venv/bin/ruff check src tests bench examples
.venv/bin/ruff format --check src
.venv/bin/mypy
# The examples in the package's docstrings run too (those that need a trained skill are
# marked +SKIP).
.venv/bin/python -m pytest -q -p no:cacheprovider --doctest-modules src/slmstack
# A real OpenAI-compatible server for the LLM backend tests (llama.cpp's own with SmolLM2, one
# thread, a free loopback port), up while pytest runs: see tests/llm_server.py.
PYTEST_TMP=$(mktemp -d) && TMP_DIRS+=("$PYTEST_TMP")
.venv/bin/python tests/llm_server.py run -- .venv/bin/python -m pytest -q -p no:cacheprovider \
  --basetemp "$PYTEST_TMP/t" "$@"
