#!/usr/bin/env bash
# The checks for a machine with a GPU, in one go: what it installs, the GPU as nvidia-smi and torch see it, the test
# suite, the kernels each preset's step launches (counted on the CPU), the S7AirNet presets' time to accuracy (seed
# 0; fast also compiled; fast-gpu, made for a GPU's launches), their checkpoints verified, and the notebook's full
# run. Every step's output goes to a log in one folder, beside the benchmark JSON and the executed notebook.
# A step that fails is named at the end, and the steps after it still run: one failed test must not cost a short
# GPU session its benchmarks.
#
#     bash benchmarks/gpu_check.sh [--dry-run] [--data ROOT] [--out DIR]
#
# --data: the folder holding cifar-10-batches-bin/ or -py/ (default $CIFAR10_ROOT, else ../shared/data, else ./data)
# --out: where everything goes (default runs/gpu_check/<date and time>: a new folder each time)
# --dry-run: print every step's name and command, run none.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
DATA="${CIFAR10_ROOT:-}"
OUT="runs/gpu_check/$(date +%Y%m%d-%H%M%S)"
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --data) DATA="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        *) echo "gpu_check.sh: unknown argument $1 (use --dry-run, --data ROOT, --out DIR)" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$DATA" ]; then
    if [ -d ../shared/data ]; then DATA=../shared/data; else DATA=data; fi
fi
[ "$DRY_RUN" = 1 ] || mkdir -p "$OUT"
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac  # absolute: nbconvert resolves --output against the notebook's folder
export CIFAR10_ROOT="$(cd "$DATA" 2>/dev/null && pwd || echo "$DATA")"

FAILED=()

# step NAME COMMAND...: run COMMAND, its stdout and stderr shown and kept in $OUT/NAME.log; a failure is noted.
step() {
    local name="$1"
    shift
    if [ "$DRY_RUN" = 1 ]; then
        echo "$name: $*"
        return
    fi
    echo "=== $name: $*" | tee "$OUT/$name.log"
    local start=$SECONDS
    if "$@" 2>&1 | tee -a "$OUT/$name.log"; then  # pipefail: the command's status, not tee's
        echo "=== $name: done in $((SECONDS - start)) s" | tee -a "$OUT/$name.log"
    else
        echo "=== $name: FAILED after $((SECONDS - start)) s" | tee -a "$OUT/$name.log"
        FAILED+=("$name")
    fi
}

# benchmark NAME ARGS...: time_to_accuracy.py with ARGS, seed 0, into $OUT/NAME/ (model and report.jsonl), verified
benchmark() {
    local name="$1"
    shift
    step "$name" python3 benchmarks/time_to_accuracy.py "$@" --seed 0 --out "$OUT/$name"
    step "$name-verify" python3 benchmarks/verify_checkpoints.py "$OUT/$name/seed0.pt" --report "$OUT/$name/report.jsonl"
}

step install python3 -m pip install -q -r requirements.txt
step nvidia-smi nvidia-smi
step torch-gpu python3 -c "
import torch
print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version())
assert torch.cuda.is_available(), 'torch sees no CUDA GPU'
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f'cuda:{i} {p.name}, {p.total_memory / 2**30:.1f} GiB, compute capability {p.major}.{p.minor}')
"
step tests python3 -m pytest -q --nbval-lax -p no:cacheprovider
step launches python3 benchmarks/launches.py
benchmark fast --preset fast
benchmark fast-compiled --preset fast --compile
benchmark fast-gpu --preset fast-gpu
benchmark full --preset full
step notebook env S7_QUICK=0 jupyter nbconvert --to notebook --execute S7_Assignment.ipynb \
    --ExecutePreprocessor.timeout=-1 --output "$OUT/S7_Assignment_gpu.ipynb"
[ "$DRY_RUN" = 1 ] && exit 0
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "failed: ${FAILED[*]}; logs and results in $OUT" >&2
    exit 1
fi
echo "all steps passed; logs and results in $OUT"
