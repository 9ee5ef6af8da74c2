#!/usr/bin/env bash
# The checks for the day a GPU is lent: the GPU as nvidia-smi and torch see it, the test suite, both presets'
# time to accuracy (seeds 0 and 1) and the notebook's full run on the GPU. Every step's output goes to a log
# in the output folder (default runs/gpu_check), beside the benchmark JSON and the executed notebook.
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${1:-runs/gpu_check}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"  # absolute: nbconvert resolves --output against the notebook's folder
export CIFAR10_ROOT="${CIFAR10_ROOT:-$(cd .. && pwd)/shared/data}"

# step NAME COMMAND...: run COMMAND, its stdout and stderr shown and kept in $OUT/NAME.log; stop on failure.
step() {
    local name="$1"
    shift
    echo "=== $name: $*" | tee "$OUT/$name.log"
    local start=$SECONDS
    "$@" 2>&1 | tee -a "$OUT/$name.log"  # pipefail: the command's status, not tee's
    echo "=== $name: done in $((SECONDS - start)) s" | tee -a "$OUT/$name.log"
}

step nvidia-smi nvidia-smi
step torch-gpu python3 -c "
import torch
print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version())
assert torch.cuda.is_available(), 'torch sees no CUDA GPU'
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f'cuda:{i} {p.name}, {p.total_memory / 2**30:.1f} GiB, compute capability {p.major}.{p.minor}')
"
step tests python3 -m pytest --nbval-lax
step time-to-accuracy-fast python3 benchmarks/time_to_accuracy.py --preset fast --seed 0 1 --out "$OUT/fast"
step time-to-accuracy-full python3 benchmarks/time_to_accuracy.py --preset full --seed 0 1 --out "$OUT/full"
step notebook env S7_QUICK=0 jupyter nbconvert --to notebook --execute S7_Assignment.ipynb \
    --ExecutePreprocessor.timeout=-1 --output "$OUT/S7_Assignment_gpu.ipynb"
echo "all steps passed; logs and results in $OUT"
