#!/usr/bin/env bash
# One short check (< 8 minutes) on a machine with a CUDA GPU; everything goes to stdout.
#   bash benchmarks/gpu.sh
# 1. the GPU(s); 2. ResNet18 training images/s at 112 and 224 px, fp32 NCHW vs bf16 channels_last,
# through the real pipeline and from in-memory batches; 3. the quickstart study on GPU 0.
set -euo pipefail
exec 2>&1
cd "$(dirname "$0")/.."

if ! python -c "import facenet.train, search.cli" >/dev/null 2>&1 || ! command -v facesearch >/dev/null; then
    echo "== installing the package"
    python -m pip install -q -e . || python -m pip install -q --no-deps --no-build-isolation -e .   # offline fallback
fi

echo "== GPUs"
nvidia-smi -L

echo "== ResNet18 training speed (benchmarks/gpu_speed.py)"
start=$SECONDS
python benchmarks/gpu_speed.py --device cuda --res 112,224
echo "gpu_speed.py took $((SECONDS - start)) s"

echo "== quickstart study on GPU 0"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$SECONDS
facesearch data synth "$work/data" --identities 200 --images-per-identity 12 --size 40 --seed 0
FACESEARCH_DATA="$work/data" FACESEARCH_RUNS="$work/runs" \
    facesearch study run studies/quickstart.yaml --gpus 0 --storage "$work/studies.journal"
echo "quickstart study took $((SECONDS - start)) s"
