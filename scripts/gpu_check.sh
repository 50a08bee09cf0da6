#!/usr/bin/env bash
# The prepared CuPy check for a machine with an NVIDIA GPU and CuPy installed:
#   1. the GPU-vs-reference tests (pytest -m gpu),
#   2. one timed CIFAR-10 training epoch of the ConvNet and ResNet-20 on the GPU, against
#      PyTorch on the same card when it is installed (python -m benchmarks.gpu_epoch),
#   3. the LeNet demo on the GPU with the bundled MNIST sample.
# Usage: bash scripts/gpu_check.sh [OUTPUT_DIR]
# Exits 1 at once, with one line, when there is no GPU or no CuPy; otherwise non-zero when
# any step failed. Logs (and gpu_epoch.json) go to OUTPUT_DIR (default runs/gpu_check).
set -u
out="${1:-runs/gpu_check}"
mkdir -p "$out" || { echo "gpu_check: cannot create $out" >&2; exit 1; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 - <<'EOF' || exit 1
import sys
try:
    import cupy
    count = cupy.cuda.runtime.getDeviceCount()
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
except Exception as error:  # ImportError, or CUDA's error when there is no driver or GPU
    sys.exit(f"gpu_check: needs CuPy and an NVIDIA GPU, found none ({type(error).__name__}: {error})")
import numba, numpy
print(f"{name} ({count} GPU); cupy {cupy.__version__}, numba {numba.__version__}, numpy {numpy.__version__}")
EOF
failed=0
python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tee "$out/gpu_tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
if grep -q "skipped" "$out/gpu_tests.log"; then
    echo "gpu_check: some GPU tests were skipped on a machine with a GPU" >&2
    failed=1
fi
python3 -m benchmarks.gpu_epoch --json "$out/gpu_epoch.json" 2>&1 | tee "$out/gpu_epoch.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
python3 -m demos.mnist_lenet --offline --backend cupy --epochs 2 --ssl-epochs 2 --finetune-epochs 1 \
    --out "$out/lenet_cupy" 2>&1 | tee "$out/lenet_cupy.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
exit "$failed"
