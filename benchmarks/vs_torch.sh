#!/bin/sh
# prge's P-RGE step vs PyTorch on CPU: makes the virtual environment build/torch-venv once
# (CPU-only torch 2.13: the machines' pip finds the +cpu wheel), then runs vs_torch.py in it.
# Arguments go to vs_torch.py (--prge FILE, --threads N, --steps N, --json-out FILE).
set -eu
cd "$(dirname "$0")/.."
VENV=build/torch-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch, transformers, gguf" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'torch==2.13.0+cpu' transformers gguf numpy accelerate
fi
exec "$VENV/bin/python" benchmarks/vs_torch.py "$@"
