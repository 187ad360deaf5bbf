"""Generation on a CUDA machine: exactness, bf16 drift, speed (a check to run by hand; CI has no GPU).

Run from a checkout on a machine with a GPU (the golden fixtures under tests/ are read)::

    OUT=outputs python benchmarks/generation_cuda_check.py      # QUICK=1: skip the full-size part

What it measures (printed and written to ``$OUT/gpu_check.json``):

* the tiny golden fixtures of tests/fixtures/generation sampled by :class:`uae.GenerationPipeline` on the GPU,
  float32 (TF32 off) and bf16 autocast, against the original code's CPU samples and images;
* full size on re-drawn random weights (DiT-DH-XL + DiT-DH-S autoguidance + the ViT-XL RAE tokenizer, 4 grid
  points, 2 images): CUDA float32 vs CPU float32, bf16 vs float32;
* images/s of 50-point autoguided sampling + decoding at batch 64 in bf16, peak memory, hours for FID-50k;
* ``uae generate`` on the GPU (class mode, and a sample folder written twice: identical files?).
"""

import json
import math
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, "tests")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

from generation_fixtures import SHIFT, max_err, model, reference  # noqa: E402
from test_generation_sampling import authors_64token_tokenizer, rae_tokenizer  # noqa: E402

import uae  # noqa: E402
from uae.generation import Guidance, SamplerConfig  # noqa: E402
from uae.generation.pipeline import GenerationPipeline  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
QUICK = os.environ.get("QUICK") == "1"
OUT = os.environ.get("OUT", "/tmp")
R = {"device": torch.cuda.get_device_name() if DEV == "cuda" else "cpu", "torch": torch.__version__}
print(R, flush=True)

# A. fixtures on the device, fp32 and bf16
ref = reference("rae")
labels, noise = ref["sample.labels"].tolist(), ref["sample.noise"]
pipe = GenerationPipeline(
    rae_tokenizer(),
    model("rae"),
    guide_model=model("rae_guidance"),
    sampler=SamplerConfig(num_steps=6, shift=SHIFT),
).to(DEV)
for amp in (False, True):
    cfg = pipe(labels, noise=noise, guidance=2.0, t_min=0.1, t_max=0.9, amp=amp)
    ag = pipe(labels, noise=noise, guidance=1.42, guidance_method="autoguidance", amp=amp)
    R[f"rae_fixture_amp{amp}"] = {
        "euler_cfg_latent": max_err(cfg.latents, ref["sample.euler_cfg"]),
        "euler_cfg_image": max_err(cfg.images, ref["decode.image"].clamp(0, 1)),
        "euler_ag_latent": max_err(ag.latents, ref["sample.euler_ag"]),
    }
ref = reference("authors")
pa = GenerationPipeline(
    authors_64token_tokenizer(),
    model("authors"),
    sampler=SamplerConfig(method="rk4", num_steps=5, shift=SHIFT),
).to(DEV)
for amp in (False, True):
    out = pa(
        ref["sample.labels"].tolist(), noise=ref["sample.noise"], guidance=2.0, t_min=0.1, t_max=0.9, amp=amp
    )
    R[f"authors_fixture_amp{amp}"] = {
        "rk4_cfg_latent": max_err(out.latents, ref["sample.rk4_cfg"]),
        "rk4_cfg_image": max_err(out.images, ref["decode.image"].clamp(0, 1)),
    }
print(json.dumps(R, indent=1), flush=True)


# B. full size, every tensor re-drawn (the zero-initialised adaLN would make the velocity 0)
def redraw(m: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(m.named_parameters()):
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return m.eval()


if not QUICK:
    tok = uae.create_model("rae_base_p14_dinov2_vitxl", latent_stats="per_position").eval()
    with torch.no_grad():
        tok.set_latent_stats(torch.randn(768, 16, 16) * 0.3, torch.rand(768, 16, 16) + 0.5)
    redraw(tok.decoder, 1)
    gen = redraw(uae.create_model("dit_dh_xl"), 2)
    guide = redraw(uae.create_model("dit_dh_s"), 3)
    R["params_M"] = {
        "dit_dh_xl": sum(p.numel() for p in gen.parameters()) / 1e6,
        "dit_dh_s": sum(p.numel() for p in guide.parameters()) / 1e6,
    }
    full = GenerationPipeline(
        tok,
        gen,
        guide_model=guide,
        sampler=SamplerConfig(num_steps=4, shift=SHIFT),
        guidance=Guidance(1.42, "autoguidance"),
    )
    t = time.perf_counter()
    cpu = full([207, 388], seed=0)
    R["full_cpu_fp32_s_4pts_batch2"] = time.perf_counter() - t
    full.to(DEV)
    f32 = full([207, 388], seed=0, amp=False)
    b16 = full([207, 388], seed=0, amp=True)
    R["full_size_4pts"] = {
        "cuda_fp32_vs_cpu_latent": max_err(f32.latents, cpu.latents),
        "cuda_fp32_vs_cpu_image": max_err(f32.images, cpu.images),
        "bf16_vs_fp32_latent": max_err(b16.latents, f32.latents),
        "bf16_vs_fp32_image": max_err(b16.images, f32.images),
        "latent_absmax": float(cpu.latents.abs().max()),
        "finite": bool(torch.isfinite(b16.latents).all()),
    }
    print(json.dumps(R, indent=1), flush=True)
    if DEV == "cuda":
        for bs in (64,):
            labels = list(range(bs))
            full(labels[:8], steps=3, amp=True)  # warm-up
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            t = time.perf_counter()
            full(labels, steps=50, amp=True)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t
            R[f"speed_bf16_50pts_ag_batch{bs}"] = {
                "images_per_s": bs / dt,
                "seconds": dt,
                "peak_GiB": torch.cuda.max_memory_allocated() / 2**30,
                "fid50k_hours_one_gpu": 50000 / (bs / dt) / 3600,
            }
            print(json.dumps(R, indent=1), flush=True)

# C. the command on the device (tiny random models, device auto -> cuda, bf16)
env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
torch.manual_seed(0)
redraw(uae.create_model("dit_dh_test"), 5).save_pretrained("/tmp/g_tiny")
uae.create_model("uae_test").save_pretrained("/tmp/t_tiny")
cmd = [sys.executable, "-m", "uae.cli", "generate", "--model", "/tmp/g_tiny", "--tokenizer", "/tmp/t_tiny"]
r = subprocess.run(
    [*cmd, "--class", "1", "2", "--num", "2", "--steps", "4", "--out", f"{OUT}/gen", "--no-progress"],
    env=env,
    capture_output=True,
    text=True,
)
R["cli_class_mode"] = {"rc": r.returncode, "out": r.stdout[-300:], "err": r.stderr[-500:]}
runs = []
for k in range(2):
    r = subprocess.run(
        [
            *cmd,
            "--num-samples",
            "12",
            "--batch-size",
            "4",
            "--steps",
            "4",
            "--out",
            f"/tmp/s{k}",
            "--no-progress",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    runs.append(r.returncode)
same = all(
    open(f"/tmp/s0/{i:06d}.png", "rb").read() == open(f"/tmp/s1/{i:06d}.png", "rb").read() for i in range(12)
)
R["cli_sample_folder_twice_identical"] = {"rc": runs, "identical": same}
print(json.dumps(R, indent=1), flush=True)
with open(f"{OUT}/gpu_check.json", "w") as f:
    json.dump(R, f, indent=1)
