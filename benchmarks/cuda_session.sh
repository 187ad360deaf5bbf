#!/bin/bash
# Every CUDA measurement this repository still owes, in one run of at most 10 minutes on one GPU.
#
#   bash benchmarks/cuda_session.sh [RESULTS_DIR] [BASELINE_CHECKOUT]
#
# Run from the repository root with uae importable (an editable install, or PYTHONPATH=.). RESULTS_DIR
# (default: cuda_results) receives every JSON the steps write and, after each step, a tarball of them
# all ($RESULTS_TGZ, default RESULTS_DIR/results.tgz), so a run cut short still leaves what it measured. BASELINE_CHECKOUT is an older checkout of uae
# (its uae/ and checkpoints/, e.g. `git worktree add /tmp/uae-before 6cd89f0`) for the `uae encode`
# A/B against the code of that commit; without it that step is skipped.
#
# DRY=1 runs the same steps on the CPU with 64 images and one round each (a check of this script, not
# a measurement).
#
# Order (most wanted first); each step has a time budget and is skipped when it could not finish
# within 560 s of the start:
#   1. `uae encode` with uae_demo: draft vs full decoding (benchmarks.encode_throughput), and this
#      checkout vs the baseline (benchmarks.encode_vs_baseline)
#   2. `uae eval` with uae_demo and with the B architecture (random weights): end to end vs the model's
#      compute-only images/s (benchmarks.eval_throughput), 4 and 12 loader workers
#   3. half-precision loading (benchmarks/loading_cuda_check.py)
#   4. generation: golden fixtures on the GPU, full-size bf16 drift and speed (generation_cuda_check.py)
#   5. the latent-diffusion training step on the GPU (ldm_cuda_check.py)
#   6. `uae bench` of the B config in bf16 at batch 64 with the SDPA / torch.compile ablations
set -u
if [ "${DRY:-0}" = 1 ]; then DEV=cpu N=64 REP=1 BIG=uae_test; export QUICK=1; else DEV=cuda N=4096 REP="" BIG=uae_base_p14_dinov2; fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 MPLBACKEND=Agg
R=$(realpath -m "${1:-cuda_results}")
BASE=${2:-}
TGZ=$(realpath -m "${RESULTS_TGZ:-$R/results.tgz}")
mkdir -p "$R"
T0=$(date +%s)
IMAGES=$(mktemp -d)
mark() {
    tar -C "$R" --exclude="$(basename "$TGZ")*" -czf "$TGZ.part" . 2>/dev/null && mv "$TGZ.part" "$TGZ"
    echo "=== $(($(date +%s) - T0)) s: $*"
}
step() { # step BUDGET_S COMMAND...: run under a time limit, or skip when it could not end in time
    local budget=$1
    shift
    if (($(date +%s) - T0 + budget > 560)); then
        echo "SKIPPED (time): $*"
        return
    fi
    timeout "$budget" "$@"
    echo "rc=$?"
}

nvidia-smi 2>/dev/null --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, lightning, timm, uae; print(torch.__version__, lightning.__version__, timm.__version__, torch.cuda.is_available())" || exit 4

mark "$N JPEGs of 500x375"
python3 - "$IMAGES" "$N" <<'EOF'
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.synthetic_images import write_images

root, n = Path(sys.argv[1]), int(sys.argv[2])
with ProcessPoolExecutor(8) as ex:  # 8 x 512 distinct images (a seed per part), then one flat folder
    for f in [ex.submit(write_images, root / f"p{k}", n // 8, (500, 375), "jpg", k) for k in range(8)]:
        f.result()
for part in sorted(root.glob("p*")):
    for p in part.glob("*.jpg"):
        p.rename(root / f"{part.name}_{p.name}")
    part.rmdir()
print(len(list(root.glob("*.jpg"))), "images")
EOF

mark "encode: draft vs full"
step 90 python3 -m benchmarks.encode_throughput --images $N --device $DEV --repeats ${REP:-3} --folder "$IMAGES" --out "$R/encode_w4"
if [ -n "$BASE" ]; then
    mark "encode: this checkout vs $BASE"
    step 100 python3 -m benchmarks.encode_vs_baseline --baseline "$BASE" --images $N --device $DEV --rounds ${REP:-3} --folder "$IMAGES" --out "$R/encode_vs_baseline"
fi
mark "eval: uae_demo, 4 workers"
step 120 python3 -m benchmarks.eval_throughput --images $N --device $DEV --repeats ${REP:-3} --folder "$IMAGES" --out "$R/eval_demo_w4"
mark "eval: B architecture (random weights), 4 workers"
step 120 python3 -m benchmarks.eval_throughput --model $BIG --random-init --images $N --device $DEV --repeats ${REP:-2} --folder "$IMAGES" --out "$R/eval_b_w4"
mark "eval and encode: uae_demo, 12 workers"
step 80 python3 -m benchmarks.eval_throughput --images $N --device $DEV --repeats ${REP:-2} --num-workers 12 --folder "$IMAGES" --out "$R/eval_demo_w12"
step 50 python3 -m benchmarks.encode_throughput --images $N --device $DEV --repeats ${REP:-2} --num-workers 12 --folder "$IMAGES" --out "$R/encode_w12"
mark "half-precision loading"
LC=$(mktemp -d)
step 60 env OUT="$LC" python3 benchmarks/loading_cuda_check.py
cp "$LC"/*.json "$R/" 2>/dev/null
mark "generation"
mkdir -p "$R/generation"
step 150 env OUT="$R/generation" python3 benchmarks/generation_cuda_check.py
mark "latent-diffusion training step"
step 90 env OUT="$R" python3 benchmarks/ldm_cuda_check.py
mark "uae bench, B config, bf16"
[ "$DEV" = cuda ] && step 150 python3 -m uae.cli bench --device $DEV --precision bf16 --batch-size 64 --peers rae-equiv --ablations sdpa,compile --peak-tflops 989 --out-dir "$R/bench"
mark "done"
rm -rf "$IMAGES" "$LC"
