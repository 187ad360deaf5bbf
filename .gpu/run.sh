#!/bin/bash
# One device session: issue 18 targets 2 and 3 on CUDA, then the CUDA checks. Everything under $OUT/r, tarred.
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 MPLBACKEND=Agg
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD
R=/tmp/r; mkdir -p $R
T0=$(date +%s)
el() { tar -C /tmp -czf $OUT/results.tgz r 2>/dev/null; E=$(( $(date +%s) - T0 )); echo "=== $E s: $*"; }
# run "$budget_s" cmd...: skipped when the step could not end before 440 s
step() { local b=$1; shift; E=$(( $(date +%s) - T0 )); if (( E + b > 480 )); then echo "SKIPPED (time): $*"; return; fi; timeout $b "$@"; echo "rc=$?"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
nproc
python3 -c "import torch, lightning, timm, torchmetrics, uae; print(torch.__version__, lightning.__version__, timm.__version__, torchmetrics.__version__, torch.cuda.is_available())" || exit 4
el images
python3 - <<'EOF'
import time; t=time.time()
from concurrent.futures import ProcessPoolExecutor
from benchmarks.synthetic_images import write_images
# 4096 distinct images, written by 8 processes (seeds differ per chunk)
with ProcessPoolExecutor(8) as ex:
    fs=[ex.submit(write_images, f"/tmp/img/p{k}", 512, (500, 375), "jpg", k) for k in range(8)]
    [f.result() for f in fs]
print("images written", time.time()-t)
EOF
# one flat folder of 4096 (symlinks would be followed; move instead)
mkdir -p /tmp/imgs; for k in 0 1 2 3 4 5 6 7; do for f in /tmp/img/p$k/*.jpg; do mv "$f" /tmp/imgs/p${k}_$(basename $f); done; done
ls /tmp/imgs | wc -l
el encode demo
step 90 python3 -m benchmarks.encode_throughput --model uae_demo --images 4096 --device cuda --repeats 3 --folder /tmp/imgs --out $R/enc_demo
el eval demo, 4 workers
step 120 python3 -m benchmarks.eval_throughput --model uae_demo --images 4096 --device cuda --repeats 3 --folder /tmp/imgs --out $R/eval_demo_w4
el eval B random, 4 workers
step 120 python3 -m benchmarks.eval_throughput --model uae_base_p14_dinov2 --random-init --images 4096 --device cuda --repeats 2 --folder /tmp/imgs --out $R/eval_b_w4
el eval demo, 12 workers
step 80 python3 -m benchmarks.eval_throughput --model uae_demo --images 4096 --device cuda --repeats 2 --num-workers 12 --folder /tmp/imgs --out $R/eval_demo_w12
el encode demo 12 workers
step 50 python3 -m benchmarks.encode_throughput --model uae_demo --images 4096 --device cuda --repeats 2 --num-workers 12 --folder /tmp/imgs --out $R/enc_demo_w12
el loading check
step 60 env OUT=/tmp/lc python3 benchmarks/loading_cuda_check.py; cp /tmp/lc/*.json $R/ 2>/dev/null
el generation check
mkdir -p $R/gen; step 150 env OUT=$R/gen python3 benchmarks/generation_cuda_check.py
el ldm check
step 90 env OUT=$R python3 benchmarks/ldm_cuda_check.py
el done
tar -C /tmp -czf $OUT/results.tgz r
