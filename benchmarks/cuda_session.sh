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
# within $LIMIT s (default 540) of the start. Three H200 runs (benchmarks/RESULTS.md) measured all of
# it but the first step and the trace:
#   1. `uae encode` with uae_demo, this checkout vs the baseline (benchmarks.encode_vs_baseline), each
#      side with its own default loader workers (this checkout: one per core but one on a GPU), then
#      both with 12 workers
#   1a. a cProfile and a torch.profiler trace of `uae encode` with 12 workers (benchmarks.encode_profile)
#   0. where the loader's time goes (benchmarks.loader_pipeline): one core's decode rate, each worker
#      count's start and steady rate, the transport ceiling, before and after CUDA is initialised
#   2. `uae eval` with uae_demo, 12 workers: end to end vs the model's compute-only images/s, with the
#      float-transport variant and the same images packed into a uint8 .npy (uae pack; read by the
#      workers and by the main process) (benchmarks.eval_throughput); 2b. the same over 4x as many files (hard
#      links), so the loader's start weighs a quarter as much
#   1b. `uae encode` vs the baseline with 8 shards, which this checkout writes in the background
#   3. the loader alone at the B config's sizes (224 in, 256 reference), uint8 vs float32 pixels from
#      12 workers (benchmarks.loader_transport)
#   4. `uae eval` with the B architecture (random weights), 12 workers
#   5. draft vs full decoding in `uae encode`, 12 workers (benchmarks.encode_throughput)
# With ALL=1 also what the first run measured: 4-worker eval/encode, half-precision loading
# (loading_cuda_check.py), generation (generation_cuda_check.py), the latent-diffusion step
# (ldm_cuda_check.py) and `uae bench` of the B config in bf16 at batch 64 with its ablations.
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
    if (($(date +%s) - T0 + budget > ${LIMIT:-540})); then
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

W=${WORKERS:-12}
if [ -n "$BASE" ]; then
    mark "encode: this checkout vs $BASE, each side's default workers"
    step 100 python3 -m benchmarks.encode_vs_baseline --baseline "$BASE" --images $N --device $DEV --rounds ${REP:-3} --num-workers default --folder "$IMAGES" --out "$R/encode_vs_baseline_default_workers"
    mark "encode: this checkout vs $BASE, $W workers"
    step 100 python3 -m benchmarks.encode_vs_baseline --baseline "$BASE" --images $N --device $DEV --rounds ${REP:-3} --num-workers $W --folder "$IMAGES" --out "$R/encode_vs_baseline_w$W"
fi
mark "profile of uae encode, $W workers"
step 60 sh -c "python3 -m benchmarks.encode_profile '$IMAGES' --num-workers $W --device $DEV --trace '$R/encode_trace_w$W.json' > '$R/encode_profile_w$W.txt' 2>&1"
mark "loader pipeline: serial decode, worker start and steady rate, transport ceiling"
step 80 python3 -m benchmarks.loader_pipeline --images $N --device $DEV --repeats 2 --workers "$([ "$DEV" = cuda ] && echo 4,8,12,15 || echo 1,2)" --folder "$IMAGES" --out "$R/loader_pipeline"
mark "eval: uae_demo, $W workers"
step 90 python3 -m benchmarks.eval_throughput --images $N --device $DEV --repeats ${REP:-2} --num-workers $W --folder "$IMAGES" --out "$R/eval_demo_w$W"
mark "eval: uae_demo, $W workers, 4x the files (hard links)"
MANY=$(mktemp -d)
python3 -c 'import os, sys; [os.link(f.path, f"{sys.argv[2]}/l{k}_{f.name}") for k in range(4) for f in os.scandir(sys.argv[1]) if f.name.endswith(".jpg")]' "$IMAGES" "$MANY"
step 70 python3 -m benchmarks.eval_throughput --images $((4 * N)) --device $DEV --repeats ${REP:-2} --num-workers $W --folder "$MANY" --variants eval,eval_preloaded --out "$R/eval_demo_x4_w$W"
rm -rf "$MANY"
if [ -n "$BASE" ]; then
    mark "encode: this checkout vs $BASE, 8 shards (background writes), $W workers"
    step 100 python3 -m benchmarks.encode_vs_baseline --baseline "$BASE" --images $N --device $DEV --rounds ${REP:-3} --num-workers $W --shard-size $((N / 8)) --folder "$IMAGES" --out "$R/encode_vs_baseline_8shards_w$W"
fi
mark "loader alone, 224 / 256 px, uint8 vs float32, $W workers"
step 60 python3 -m benchmarks.loader_transport --images $N --device $DEV --repeats ${REP:-3} --num-workers $W --folder "$IMAGES" --out "$R/loader_w$W"
mark "eval: B architecture (random weights), $W workers"
step 150 python3 -m benchmarks.eval_throughput --model $BIG --random-init --images $N --device $DEV --repeats ${REP:-2} --num-workers $W --folder "$IMAGES" --out "$R/eval_b_w$W"
mark "encode: draft vs full, $W workers"
step 50 python3 -m benchmarks.encode_throughput --images $N --device $DEV --repeats ${REP:-2} --num-workers $W --folder "$IMAGES" --out "$R/encode_w$W"
if [ "${ALL:-0}" = 1 ]; then
    mark "eval and encode: uae_demo, 4 workers"
    step 120 python3 -m benchmarks.eval_throughput --images $N --device $DEV --repeats ${REP:-3} --folder "$IMAGES" --out "$R/eval_demo_w4"
    step 90 python3 -m benchmarks.encode_throughput --images $N --device $DEV --repeats ${REP:-3} --folder "$IMAGES" --out "$R/encode_w4"
    mark "half-precision loading"
    LC=$(mktemp -d)
    step 60 env OUT="$LC" python3 benchmarks/loading_cuda_check.py
    cp "$LC"/*.json "$R/" 2>/dev/null
    rm -rf "$LC"
    mark "generation"
    mkdir -p "$R/generation"
    step 150 env OUT="$R/generation" python3 benchmarks/generation_cuda_check.py
    mark "latent-diffusion training step"
    step 90 env OUT="$R" python3 benchmarks/ldm_cuda_check.py
    mark "uae bench, B config, bf16"
    [ "$DEV" = cuda ] && step 150 python3 -m uae.cli bench --device $DEV --precision bf16 --batch-size 64 --peers rae-equiv --ablations sdpa,compile --peak-tflops 989 --out-dir "$R/bench"
fi
mark "done"
rm -rf "$IMAGES"
