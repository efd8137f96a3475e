#!/usr/bin/env bash
# The whole end-to-end run from a fresh checkout: the vLLM venv, the tiny model, then e2e.py
# (every case, or those given: bash bench/vllm/run.sh --cases stream,sweep).
# Needs the project's .venv (make test or make demo creates it).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
bash "$HERE/setup.sh"
if [[ ! -f "$HERE/model/config.json" ]]; then
    "${VLLM_VENV:-$HERE/.venv-vllm}/bin/python" "$HERE/make_model.py" --out "$HERE/model"
fi
exec "$ROOT/.venv/bin/python" "$HERE/e2e.py" "$@"
