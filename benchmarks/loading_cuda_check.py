"""Half-precision models on CUDA: ``from_pretrained(torch_dtype=..., device="cuda")`` (a check to run by hand;
CI has no GPU).

Run from a checkout on a machine with a GPU::

    OUT=outputs python benchmarks/loading_cuda_check.py

For ``uae_demo`` (its embedded weights) and the B config (random weights, saved once to ``$OUT``), each
of float32, float16 and bfloat16 is loaded straight to the GPU and run on the same images; printed and
written to ``$OUT/loading_cuda_check.json``: load seconds, ``model.dtype`` / ``model.device``, the output
dtype, the largest difference to the float32 model's reconstruction, images/s at batch 16, and whether
an input of the wrong dtype gives the one-line ``InputError``. Expected: no errors, half-precision
outputs within ~1e-2 of float32 (``uae_demo``), bfloat16 within ~5e-2.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import uae  # noqa: E402
from uae.errors import InputError  # noqa: E402

OUT = Path(os.environ.get("OUT", "/tmp"))
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DEV = "cuda" if torch.cuda.is_available() else "cpu"  # on the CPU: a dry run of this script


def _sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def check(source: str, name: str) -> dict:
    torch.manual_seed(0)
    ref = None
    rows = {}
    for label, dtype in DTYPES.items():
        _sync()
        t0 = time.perf_counter()
        model = uae.UAE.from_pretrained(source, torch_dtype=dtype, device=DEV)
        _sync()
        load_s = time.perf_counter() - t0
        size = model.config.img_size
        x = torch.rand(16, 3, size, size, generator=torch.Generator().manual_seed(1)).to(DEV)
        with torch.no_grad():
            out = model(x.to(dtype)).sample
            _sync()
            t0 = time.perf_counter()
            for _ in range(5):
                model(x.to(dtype))
            _sync()
            ips = 5 * x.shape[0] / (time.perf_counter() - t0)
        if ref is None:
            ref = out.float()
        try:
            model(x.double() if dtype != torch.float64 else x.float())
            wrong_dtype = "no error"
        except InputError as e:
            wrong_dtype = str(e)
        rows[label] = {
            "load_s": load_s,
            "dtype": str(model.dtype),
            "device": str(model.device),
            "output_dtype": str(out.dtype),
            "max_abs_vs_float32": float((out.float() - ref).abs().max()),
            "finite": bool(torch.isfinite(out).all()),
            "images_per_s": ips,
            "wrong_input_dtype": wrong_dtype,
        }
        print(name, label, json.dumps(rows[label]), flush=True)
        del model
        if DEV == "cuda":
            torch.cuda.empty_cache()
    return rows


def main() -> int:
    if DEV == "cpu":
        print("no CUDA GPU: a dry run on the CPU (uae_demo only)")
    OUT.mkdir(parents=True, exist_ok=True)
    demo = OUT / "uae_demo_saved"
    uae.create_model("uae_demo", pretrained=True).save_pretrained(demo)
    results = {
        "uae_demo": check(str(demo), "uae_demo"),
        "device": torch.cuda.get_device_name() if DEV == "cuda" else "cpu",
    }
    if DEV == "cuda" and os.environ.get("QUICK") != "1":
        base = OUT / "uae_base_p14_dinov2_random"
        if not (base / "model.safetensors").is_file():
            torch.manual_seed(0)
            uae.create_model("uae_base_p14_dinov2").save_pretrained(base)
        results["uae_base_p14_dinov2"] = check(str(base), "uae_base_p14_dinov2")
    (OUT / "loading_cuda_check.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
