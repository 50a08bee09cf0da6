#!/usr/bin/env bash
# The prepared CuPy check for a machine with an NVIDIA GPU and CuPy installed:
# GPU-vs-reference tests, then the LeNet demo on the GPU with the bundled MNIST sample.
# Usage: bash scripts/gpu_check.sh [OUTPUT_DIR]
set -u
out="${1:-runs/gpu_check}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import cupy, numba, numpy; print('cupy', cupy.__version__, 'numba', numba.__version__, 'numpy', numpy.__version__)"
python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tee "$out/gpu_tests.log"
status=${PIPESTATUS[0]}
python3 -m demos.mnist_lenet --offline --backend cupy --epochs 2 --ssl-epochs 2 --finetune-epochs 1 \
    --out "$out/lenet_cupy" 2>/dev/null \
    | tee "$out/lenet_cupy.log"
exit "$status"
