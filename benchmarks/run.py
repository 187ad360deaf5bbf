"""Throughput and memory of uae, side by side with peer tokenizers, in one run on the same inputs.

Run from the repository root::

    python -m benchmarks.run --model uae_base_p14_dinov2 --device cpu --batch-size 2
    python -m benchmarks.run --device cuda --precision bf16 --batch-size 64 --ablations sdpa,compile

What is measured (see ``benchmarks/README.md`` for the definitions and targets):

* uae ``encode`` / ``decode`` / ``reconstruct`` images/s: median of ``--repeats`` timed runs after
  ``--warmup`` untimed runs, with ``torch.cuda.synchronize`` around every timed run on GPU;
* the encode-side pieces (ViT encoder, band projector, band modulator) timed separately, giving the
  band projector + modulator share of the encode time;
* training-step images/s of stage 1 (encoder frozen, L1) and stage 3 (all trainable, high-band noise,
  L1 + a patch-discriminator hinge GAN step), with the plain model and AdamW;
* peak memory of every measurement (CUDA: ``max_memory_allocated``; CPU: the process's peak resident
  set size, reset before each measurement through ``/proc/self/clear_refs``);
* model FLOPs per image (``torch.utils.flop_counter``) and FLOP utilisation against a peak;
* peers on the same inputs: diffusers ``AutoencoderKL`` (SD-VAE config, random init), diffusers
  ``AutoencoderRAE`` (same encoder/decoder sizes), uae without band split and modulator, and the bare
  timm DINOv2 encoder (the lower bound for encode); each reported as a ratio to uae.

Results go to ``<out-dir>/<name>.json`` and ``<out-dir>/<name>.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import json
import logging
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger("benchmarks.run")

OPS = ("encode", "decode", "reconstruct")
PEERS = ("sd-vae", "rae", "rae-equiv", "dinov2")
ABLATIONS = ("sdpa", "compile")
PEER_LABELS = {
    "sd-vae": "SD-VAE (diffusers AutoencoderKL, random init)",
    "rae": "RAE (diffusers AutoencoderRAE, same encoder/decoder sizes, random init)",
    "rae-equiv": "uae without band split + modulator (same encoder/decoder modules)",
    "dinov2": "bare timm DINOv2 encoder (encode lower bound)",
}
#: Projector + modulator share of the encode side must stay below this (README target 1).
SHARE_TARGET = 0.05
#: encode+decode FLOP utilisation target on a CUDA GPU with bf16 autocast at batch 64 (README target 3).
MFU_TARGET = 0.40
#: The paper's B configuration, where the projector + modulator share target applies.
B_CONFIG = "uae_base_p14_dinov2"

#: Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s. Matched as
#: substrings of ``torch.cuda.get_device_name()`` in this order; the first hit wins.
KNOWN_PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200 NVL", 835.0),
    ("H200", 989.4),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # SXM
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10", 125.0),
)


# ---------------------------------------------------------------------------------------------------
# environment, timing and memory
# ---------------------------------------------------------------------------------------------------
def cpu_model_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (falls back to :func:`platform.processor`)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - missing optional package
        return None


def environment(device: torch.device) -> dict[str, Any]:
    """Where the numbers come from: device name, library versions, threads, load."""
    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "timm": _version("timm"),
        "diffusers": _version("diffusers"),
        "transformers": _version("transformers"),
        "device": device.type,
        "device_name": f"CPU: {cpu_model_name()} ({torch.get_num_threads()} threads)",
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    with contextlib.suppress(OSError, AttributeError):
        info["load_average_start"] = [round(v, 2) for v in os.getloadavg()]
    with contextlib.suppress(Exception):
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(
    fn: Callable[[], Any],
    device: torch.device,
    repeats: int,
    warmup: int,
    cpu_times: list[float] | None = None,
) -> list[float]:
    """Wall-clock seconds of each of ``repeats`` timed calls of ``fn`` after ``warmup`` untimed calls.

    Args:
        cpu_times: If given, receives the process CPU seconds (all threads) of each timed call.
    """
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - c0)
    return times


def _proc_status_mib(key: str) -> float | None:
    with contextlib.suppress(OSError):
        m = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
        if m:
            return int(m.group(1)) / 1024
    return None


def _trim_heap() -> None:
    """Return freed heap memory to the OS (glibc ``malloc_trim``), so RSS reflects live memory."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _proc_status_mib("VmHWM") is not None


class PeakMemory:
    """Peak memory during a ``with`` block.

    CUDA: ``torch.cuda.max_memory_allocated`` (tensors only, not the allocator's cache). CPU: the
    process's peak resident set size (``VmHWM``, reset on entry via ``/proc/self/clear_refs`` after
    glibc's ``malloc_trim`` returned freed heap memory), which includes the weights and the Python heap; without ``clear_refs`` the
    process-lifetime ``ru_maxrss`` is reported instead (``kind`` says which).

    Attributes:
        peak_mib: Peak during the block.
        base_mib: Memory in use at entry (weights, inputs); ``peak_mib - base_mib`` is the working set.
        kind: What was measured.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mib = float("nan")
        self.base_mib = float("nan")
        self.kind = ""

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            gc.collect()
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base_mib = torch.cuda.memory_allocated(self.device) / 2**20
            self.kind = "cuda_max_memory_allocated"
        else:
            _trim_heap()
            self.base_mib = _proc_status_mib("VmRSS") or float("nan")
            self.kind = "cpu_peak_rss" if _reset_peak_rss() else "cpu_ru_maxrss_process_lifetime"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.kind == "cpu_peak_rss":
            self.peak_mib = _proc_status_mib("VmHWM") or float("nan")
        else:
            self.peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``bf16`` / ``fp16``; a no-op for ``fp32``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype)


def measure(
    fn: Callable[[], Any],
    images: int,
    device: torch.device,
    precision: str,
    repeats: int,
    warmup: int,
    grad: bool = False,
) -> dict[str, Any]:
    """Time ``fn`` (one call processes ``images`` images) and record its peak memory.

    Returns:
        ``images_per_s`` (from the median time), ``cpu_per_wall``, ``images_per_cpu_s``, ``median_ms``,
        ``min_ms``, ``max_ms``, ``times_ms``, ``peak_mem_mib``, ``base_mem_mib``, ``mem_kind``.
    """
    mode = contextlib.nullcontext() if grad else torch.inference_mode()
    cpu: list[float] = []
    with PeakMemory(device) as mem, mode, autocast_context(device, precision):
        times = time_fn(fn, device, repeats, warmup, cpu)
    med = statistics.median(times)
    return {
        "images_per_s": images / med,
        # CPU seconds used per wall second (up to the thread count; lower = the process was not
        # scheduled all the time, e.g. on a shared machine) and images per CPU second.
        "cpu_per_wall": sum(cpu) / sum(times),
        "images_per_cpu_s": images * len(cpu) / sum(cpu) if sum(cpu) > 0 else None,
        "median_ms": med * 1e3,
        "min_ms": min(times) * 1e3,
        "max_ms": max(times) * 1e3,
        "times_ms": [round(t * 1e3, 3) for t in times],
        "batch_size": images,
        "peak_mem_mib": round(mem.peak_mib, 1),
        "base_mem_mib": round(mem.base_mib, 1),
        "mem_kind": mem.kind,
    }


def count_flops(fn: Callable[[], Any], device: torch.device, precision: str) -> int:
    """Model FLOPs of one call of ``fn`` (``torch.utils.flop_counter``; FFTs and elementwise ops are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with (
        torch.inference_mode(),
        autocast_context(device, precision),
        FlopCounterMode(display=False) as counter,
    ):
        fn()
    return int(counter.get_total_flops())


def known_peak_tflops(device: torch.device, precision: str) -> float | None:
    """Dense bf16/fp16 tensor-core peak of a known CUDA GPU, else ``None``."""
    if device.type != "cuda" or precision not in ("bf16", "fp16"):
        return None
    return peak_tflops_for_name(torch.cuda.get_device_name(device))


def peak_tflops_for_name(name: str) -> float | None:
    """Dense bf16 peak (TFLOP/s) of a GPU from its ``torch.cuda.get_device_name()``, else ``None``."""
    for key, tflops in KNOWN_PEAK_BF16_TFLOPS:
        if key in name:
            return tflops
    return None


def set_sdpa(module: nn.Module, enabled: bool) -> int:
    """Switch timm attention between ``F.scaled_dot_product_attention`` and the explicit softmax path.

    Diffusers models (AttentionMixin) get ``AttnProcessor2_0`` (SDPA) or ``AttnProcessor``.

    Returns:
        The number of attention modules switched.
    """
    n = 0
    for m in module.modules():
        if hasattr(m, "fused_attn") and isinstance(m.fused_attn, bool):
            m.fused_attn = enabled
            n += 1
    if hasattr(module, "set_attn_processor"):
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

        with contextlib.suppress(Exception):
            module.set_attn_processor(AttnProcessor2_0() if enabled else AttnProcessor())
            n += 1
    return n


def _compile(module: nn.Module, enabled: bool) -> None:
    """In-place ``torch.compile`` (``nn.Module.compile``), or undo it."""
    if enabled:
        module.compile()
    else:
        module._compiled_call_impl = None  # type: ignore[attr-defined]


def _free(device: torch.device) -> None:
    """Release cached CUDA memory between subjects (CPU tensors are freed by reference counting)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------
# subjects: uae and its peers
# ---------------------------------------------------------------------------------------------------
def uae_ops(model: nn.Module, x_in: torch.Tensor, latent: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """The three uae operations on a batch (``latent`` from ``model.encode(x_in)``)."""
    return {
        "encode": lambda: model.encode(x_in),
        "decode": lambda: model.decode(latent),
        "reconstruct": lambda: model(x_in),
    }


def rae_equiv_ops(model: nn.Module, x_in: torch.Tensor, latent: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """uae's own encoder and decoder without band split and modulator (validation kept, to isolate the bands)."""
    from uae.utils import check_images

    cfg = model.config

    def encode() -> torch.Tensor:
        check_images(x_in, cfg.patch_size, cfg.img_size)
        return model.encoder(model.normalize(x_in)).float()

    return {
        "encode": encode,
        "decode": lambda: model.render(latent),
        "reconstruct": lambda: model.render(encode()),
    }


def build_sd_vae(output_size: int) -> nn.Module:
    """diffusers ``AutoencoderKL`` with the Stable Diffusion VAE config (random init)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=output_size,
    )


def sd_vae_ops(vae: nn.Module, x_out: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """SD-VAE takes the output-resolution images in ``[-1, 1]`` (it has no separate encoder resolution)."""
    xs = x_out * 2 - 1
    with torch.inference_mode():
        latent = vae.encode(xs).latent_dist.mode()

    def encode() -> torch.Tensor:
        return vae.encode(xs).latent_dist.mode()

    return {
        "encode": encode,
        "decode": lambda: vae.decode(latent).sample,
        "reconstruct": lambda: vae.decode(encode()).sample,
    }


def build_rae(cfg: Any) -> nn.Module:
    """diffusers ``AutoencoderRAE`` with uae's encoder/decoder sizes (random init, no download).

    Raises:
        ImportError: diffusers (with ``AutoencoderRAE``) or transformers is not installed.
        ValueError: The config has no RAE counterpart (RAE fixes the encoder head width to 64).
    """
    import diffusers

    if not hasattr(diffusers, "AutoencoderRAE"):
        raise ImportError(
            f"diffusers {diffusers.__version__} has no AutoencoderRAE (use the 'rae-equiv' peer)"
        )
    if cfg.encoder_dim % 64 or cfg.encoder_dim // 64 != cfg.encoder_heads:
        raise ValueError(
            f"AutoencoderRAE fixes encoder heads = width / 64; {cfg.name} has {cfg.encoder_dim}/{cfg.encoder_heads}"
        )
    return diffusers.AutoencoderRAE(
        encoder_type="dinov2",
        encoder_hidden_size=cfg.encoder_dim,
        encoder_patch_size=cfg.patch_size,
        encoder_num_hidden_layers=cfg.encoder_depth,
        decoder_hidden_size=cfg.decoder_dim,
        decoder_num_hidden_layers=cfg.decoder_depth,
        decoder_num_attention_heads=cfg.decoder_heads,
        decoder_intermediate_size=round(cfg.decoder_dim * cfg.decoder_mlp_ratio),
        patch_size=cfg.decoder_patch_size,
        encoder_input_size=cfg.img_size,
    )


def rae_ops(rae: nn.Module, x_in: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """RAE takes the encoder-resolution images in ``[0, 1]`` (it normalises internally, like uae)."""
    with torch.inference_mode():
        latent = rae.encode(x_in).latent
    return {
        "encode": lambda: rae.encode(x_in).latent,
        "decode": lambda: rae.decode(latent).sample,
        "reconstruct": lambda: rae(x_in).sample,
    }


def build_dinov2(cfg: Any, resolution: int) -> nn.Module:
    """The bare timm DINOv2 (registers) ViT with the uae encoder's sizes (``pretrained=False``)."""
    import timm

    name = {384: "vit_small_patch14_reg4_dinov2", 1024: "vit_large_patch14_reg4_dinov2"}.get(
        cfg.encoder_dim, "vit_base_patch14_reg4_dinov2"
    )
    return timm.create_model(
        name,
        pretrained=False,
        num_classes=0,
        img_size=resolution,
        patch_size=cfg.patch_size,
        embed_dim=cfg.encoder_dim,
        depth=cfg.encoder_depth,
        num_heads=cfg.encoder_heads,
        mlp_ratio=cfg.encoder_mlp_ratio,
        reg_tokens=cfg.encoder_reg_tokens,
        init_values=cfg.encoder_init_values,
    )


def dinov2_ops(
    vit: nn.Module, x_in: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> dict[str, Callable[[], Any]]:
    """Encode only: ImageNet normalisation + ``forward_features``."""
    return {"encode": lambda: vit.forward_features((x_in - mean) / std)}


# ---------------------------------------------------------------------------------------------------
# training steps
# ---------------------------------------------------------------------------------------------------
class PatchDiscriminator(nn.Module):
    """A small PatchGAN discriminator (conv 4x4 stride 2 stack) for the stage-3 step's GAN cost.

    Args:
        channels: Width of the first conv (doubled twice).
    """

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(3, c, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, 2, 1),
            nn.GroupNorm(8, 2 * c),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * c, 4 * c, 4, 2, 1),
            nn.GroupNorm(8, 4 * c),
            nn.LeakyReLU(0.2),
            nn.Conv2d(4 * c, 1, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in ``[-1, 1]`` -> patch logits ``(B, 1, H/8, W/8)``."""
        return self.net(x)


@contextlib.contextmanager
def _training_state(model: nn.Module) -> Iterator[None]:
    """Restore ``requires_grad``, the modulator noise and eval mode after a training benchmark."""
    flags = [p.requires_grad for p in model.parameters()]
    noise = model.modulator.noise_std
    try:
        yield
    finally:
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)
            p.grad = None
        model.modulator.noise_std = noise
        model.eval()


def train_step_fn(
    model: nn.Module,
    stage: int,
    x_in: torch.Tensor,
    x_out: torch.Tensor,
    device: torch.device,
    precision: str,
) -> Callable[[], float]:
    """One optimizer step of stage 1 or stage 3 with the plain model (see the README for what it includes).

    Stage 1: encoder frozen (run without autograd), no noise; band split, modulator, decoder, L1, AdamW.
    Stage 3: everything trainable, high-band noise on; L1 + 0.75 x hinge-GAN generator loss through a
    :class:`PatchDiscriminator`, then the discriminator's hinge step.
    """
    model.train()
    if stage == 1:
        model.encoder.requires_grad_(False)
        model.modulator.noise_std = 0.0
    else:
        model.requires_grad_(True)
        model.modulator.noise_std = model.modulator.noise_std or 0.5
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.95), weight_decay=0.0)
    disc = d_opt = None
    if stage == 3:
        disc = PatchDiscriminator().to(device)
        d_opt = torch.optim.AdamW(disc.parameters(), lr=1e-4, betas=(0.5, 0.9))
    target = x_out
    real = x_out * 2 - 1

    def step() -> float:
        with autocast_context(device, precision):
            if stage == 1:
                with torch.no_grad():
                    z = model.encoder(model.normalize(x_in)).float()
            else:
                z = model.encoder(model.normalize(x_in)).float()
            y = model.render(model.fuse(model.band_projector(z)), clamp=False)
            loss = F.l1_loss(y.float(), target)
            if disc is not None:
                disc.requires_grad_(False)
                loss = loss + 0.75 * (-disc(y * 2 - 1).float().mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if disc is not None and d_opt is not None:
            disc.requires_grad_(True)
            with autocast_context(device, precision):
                d_loss = (
                    F.relu(1 - disc(real).float()).mean()
                    + F.relu(1 + disc(y.detach() * 2 - 1).float()).mean()
                )
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
        return float(loss.detach())

    return step


# ---------------------------------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (``python -m benchmarks.run --help``)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default=B_CONFIG, help="registered uae model name (default: the paper's B config)"
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="inference batch (default: 2 on CPU, 64 on CUDA)"
    )
    p.add_argument(
        "--train-batch-size", type=int, default=None, help="training-step batch (default: --batch-size)"
    )
    p.add_argument(
        "--resolution", type=int, default=None, help="encoder input side (default: the model's img_size)"
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default=None,
        help="default: bf16 on CUDA, fp32 on CPU",
    )
    p.add_argument(
        "--repeats", type=int, default=5, help="timed runs per measurement (the median is reported)"
    )
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    p.add_argument(
        "--piece-repeats", type=int, default=10, help="timed runs for the cheap projector/modulator pieces"
    )
    p.add_argument(
        "--train-repeats", type=int, default=None, help="timed training steps (default: --repeats)"
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the uae encoder, modulator and decoder (and peers)",
    )
    p.add_argument(
        "--no-sdpa",
        action="store_true",
        help="explicit softmax attention instead of F.scaled_dot_product_attention",
    )
    p.add_argument("--peers", default="all", help=f"comma list of {', '.join(PEERS)}; 'all' or 'none'")
    p.add_argument(
        "--ablations", default="", help="comma list of sdpa, compile: reconstruct with that option flipped"
    )
    p.add_argument("--no-train", action="store_true", help="skip the training-step measurements")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="peak FLOP/s of the device for the utilisation (TFLOP/s)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default=str(Path(__file__).parent / "results"))
    p.add_argument("--name", default=None, help="file stem of the JSON / markdown results")
    args = p.parse_args(None if argv is None else list(argv))
    args.peers = _parse_list(args.peers, PEERS, "--peers")
    args.ablations = _parse_list(args.ablations or "none", ABLATIONS, "--ablations")
    for k in ("batch_size", "train_batch_size", "repeats", "piece_repeats", "train_repeats"):
        v = getattr(args, k)
        if v is not None and v < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


def _parse_list(value: str, allowed: Sequence[str], flag: str) -> list[str]:
    if value == "all":
        return list(allowed)
    if value in ("none", ""):
        return []
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise ValueError(f"{flag}: unknown {bad}; choose from {', '.join(allowed)}")
    return items


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available")
    return dev


def run_subject(
    name: str,
    ops: dict[str, Callable[[], Any]],
    args: argparse.Namespace,
    device: torch.device,
    batch: int,
) -> dict[str, Any]:
    """Measure each operation of one subject (one call processes ``batch`` images)."""
    out: dict[str, Any] = {}
    for op, fn in ops.items():
        logger.info("%s %s (batch %d)", name, op, batch)
        out[op] = measure(fn, batch, device, args.precision, args.repeats, args.warmup)
        logger.info(
            "  %.3g images/s, median %.1f ms, peak %.0f MiB",
            out[op]["images_per_s"],
            out[op]["median_ms"],
            out[op]["peak_mem_mib"],
        )
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole benchmark; returns the JSON-ready result dict."""
    import uae

    device = _device(args.device)
    if args.threads and device.type == "cpu":
        torch.set_num_threads(args.threads)
    args.precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    args.batch_size = args.batch_size or (64 if device.type == "cuda" else 2)
    args.train_batch_size = args.train_batch_size or args.batch_size
    args.train_repeats = args.train_repeats or args.repeats
    torch.manual_seed(args.seed)

    model = uae.create_model(args.model).to(device).eval()
    cfg = model.config
    res = args.resolution or cfg.img_size
    if res % cfg.patch_size:
        raise ValueError(f"--resolution {res} is not a multiple of the patch size {cfg.patch_size}")
    out_size = res // cfg.patch_size * cfg.decoder_patch_size
    set_sdpa(model, not args.no_sdpa)

    b = args.batch_size
    gen = torch.Generator().manual_seed(args.seed)
    x_out = torch.rand(b, 3, out_size, out_size, generator=gen).to(device)  # decoder-resolution images
    x_in = F.interpolate(x_out, size=(res, res), mode="bilinear", antialias=True, align_corners=False).clamp(
        0, 1
    )

    result: dict[str, Any] = {
        "env": environment(device),
        "settings": {
            "model": args.model,
            "num_params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
            "batch_size": b,
            "train_batch_size": args.train_batch_size,
            "resolution": res,
            "output_size": out_size,
            "latent_shape": [cfg.latent_dim, res // cfg.patch_size, res // cfg.patch_size],
            "num_bands": cfg.num_bands,
            "band_transform": cfg.band_transform,
            "precision": args.precision,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "piece_repeats": args.piece_repeats,
            "train_repeats": args.train_repeats,
            "compile": args.compile,
            "sdpa": not args.no_sdpa,
            "peers": args.peers,
            "ablations": args.ablations,
        },
    }

    # ---- FLOPs (eager, batch 1, before compiling) ---------------------------------------------
    with torch.inference_mode(), autocast_context(device, args.precision):
        latent = model.encode(x_in).latent
    uae_gflops: dict[str, float] = {}
    if not args.no_flops:
        for op, fn in uae_ops(model, x_in[:1], latent[:1]).items():
            uae_gflops[op] = count_flops(fn, device, args.precision) / 1e9
    if args.compile:
        for m in (model.encoder, model.modulator, model.decoder):
            _compile(m, True)

    # ---- uae: encode / decode / reconstruct -------------------------------------------------------
    result["uae"] = run_subject("uae", uae_ops(model, x_in, latent), args, device, b)
    for op, g in uae_gflops.items():
        result["uae"][op]["gflop_per_image"] = g

    # ---- encode-side pieces: encoder, band projector, modulator --------------------------------------
    with torch.inference_mode(), autocast_context(device, args.precision):
        xn = model.normalize(x_in)
        z = model.encoder(xn).float()
        bands = model.band_projector(z)
    pieces = {
        "encoder": measure(lambda: model.encoder(xn), b, device, args.precision, args.repeats, args.warmup),
        "band_projector": measure(
            lambda: model.band_projector(z), b, device, args.precision, args.piece_repeats, args.warmup
        ),
        "modulator": measure(
            lambda: model.fuse(bands), b, device, args.precision, args.piece_repeats, args.warmup
        ),
    }
    t_enc, t_proj, t_mod = (pieces[k]["median_ms"] for k in ("encoder", "band_projector", "modulator"))
    share = (t_proj + t_mod) / (t_enc + t_proj + t_mod)
    result["pieces"] = pieces
    result["projector_modulator"] = {
        "share_of_encode_side": share,
        "share_of_reconstruct": (t_proj + t_mod) / result["uae"]["reconstruct"]["median_ms"],
        "projector_ms": t_proj,
        "modulator_ms": t_mod,
        "encoder_ms": t_enc,
        "definition": "(projector + modulator) / (encoder + projector + modulator), medians at the same batch",
        "share_of_encode_side_cpu_time": cpu_time_share(pieces),
    }
    logger.info("band projector + modulator share of the encode side: %.2f%%", 100 * share)

    # ---- ablations: reconstruct with one option flipped -------------------------------------------
    result["ablations"] = {}
    for abl in args.ablations:
        if abl == "sdpa":
            set_sdpa(model, args.no_sdpa)
            label = "SDPA off" if not args.no_sdpa else "SDPA on"
        else:
            for m in (model.encoder, model.modulator, model.decoder):
                _compile(m, not args.compile)
            label = "torch.compile on" if not args.compile else "torch.compile off"
        logger.info("ablation: %s", label)
        r = measure(lambda: model(x_in), b, device, args.precision, args.repeats, args.warmup)
        r["label"] = label
        r["ratio_to_main"] = r["images_per_s"] / result["uae"]["reconstruct"]["images_per_s"]
        result["ablations"][abl] = r
        if abl == "sdpa":
            set_sdpa(model, not args.no_sdpa)
        else:
            for m in (model.encoder, model.modulator, model.decoder):
                _compile(m, args.compile)

    # ---- peers ---------------------------------------------------------------------------------------------
    result["peers"] = {}
    for peer in args.peers:
        try:
            result["peers"][peer] = run_peer(peer, model, x_in, x_out, latent, args, device)
        except Exception as e:  # noqa: BLE001 - a broken peer must not lose the rest of a long run
            logger.warning("peer %s skipped: %s", peer, e)
            result["peers"][peer] = {"label": PEER_LABELS[peer], "skipped": f"{type(e).__name__}: {e}"}
        _free(device)
    result["ratios"] = {
        peer: {op: r[op]["images_per_s"] / result["uae"][op]["images_per_s"] for op in OPS if op in r}
        for peer, r in result["peers"].items()
        if "skipped" not in r
    }

    # ---- training steps (last: their optimizer states would inflate later CPU RSS peaks) -------------
    if not args.no_train:
        tb = args.train_batch_size
        tx_out = x_out[:tb] if tb <= b else torch.rand(tb, 3, out_size, out_size, generator=gen).to(device)
        tx_in = F.interpolate(
            tx_out, size=(res, res), mode="bilinear", antialias=True, align_corners=False
        ).clamp(0, 1)
        result["train"] = {}
        for stage in (1, 3):
            logger.info("training step, stage %d (batch %d)", stage, tb)
            with _training_state(model):
                step = train_step_fn(model, stage, tx_in, tx_out, device, args.precision)
                r = measure(step, tb, device, "fp32", args.train_repeats, args.warmup, grad=True)
                r["precision"] = args.precision
                del step
            _free(device)
            result["train"][f"stage{stage}"] = r
            logger.info("  %.3g images/s, peak %.0f MiB", r["images_per_s"], r["peak_mem_mib"])

    # ---- FLOP utilisation and targets ------------------------------------------------------------------
    peak = args.peak_tflops or known_peak_tflops(device, args.precision)
    result["peak_tflops"] = peak
    result["peak_tflops_source"] = (
        "--peak-tflops" if args.peak_tflops else ("known GPU table" if peak else None)
    )
    for op in OPS:
        r = result["uae"][op]
        if "gflop_per_image" in r:
            r["achieved_tflops"] = r["gflop_per_image"] * r["images_per_s"] / 1e3
            r["flop_utilisation"] = r["achieved_tflops"] / peak if peak else None
    result["targets"] = evaluate_targets(result, device)
    with contextlib.suppress(OSError, AttributeError):
        result["env"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    return result


def run_peer(
    peer: str,
    model: nn.Module,
    x_in: torch.Tensor,
    x_out: torch.Tensor,
    latent: torch.Tensor,
    args: argparse.Namespace,
    device: torch.device,
) -> dict[str, Any]:
    """Build and measure one peer on the same inputs."""
    cfg = model.config
    b = x_in.shape[0]
    module: nn.Module | None = None
    if peer == "rae-equiv":
        ops = rae_equiv_ops(model, x_in, latent)
        flops = None if args.no_flops else rae_equiv_ops(model, x_in[:1], latent[:1])
    elif peer == "sd-vae":
        module = build_sd_vae(x_out.shape[-1]).to(device).eval()
        ops = sd_vae_ops(module, x_out)
        flops = None if args.no_flops else sd_vae_ops(module, x_out[:1])
    elif peer == "rae":
        module = build_rae(cfg).to(device).eval()
        ops = rae_ops(module, x_in)
        flops = None if args.no_flops else rae_ops(module, x_in[:1])
    elif peer == "dinov2":
        module = build_dinov2(cfg, x_in.shape[-1]).to(device).eval()
        mean, std = model.pixel_mean, model.pixel_std
        ops = dinov2_ops(module, x_in, mean, std)
        flops = None if args.no_flops else dinov2_ops(module, x_in[:1], mean, std)
    else:  # pragma: no cover - parse_args rejects it
        raise ValueError(peer)
    out: dict[str, Any] = {"label": PEER_LABELS[peer]}
    counted: dict[str, float] = {}
    if module is not None:
        out["num_params_m"] = round(sum(p.numel() for p in module.parameters()) / 1e6, 3)
        set_sdpa(module, not args.no_sdpa)
    if flops is not None:
        # Count eagerly, as for uae (the shared uae modules are un-compiled for the count).
        shared = (model.encoder, model.modulator, model.decoder) if module is None and args.compile else ()
        for m in shared:
            _compile(m, False)
        counted = {op: count_flops(fn, device, args.precision) / 1e9 for op, fn in flops.items()}
        for m in shared:
            _compile(m, True)
    if module is not None and args.compile:
        # encode/decode/forward_features bypass the module's own __call__: compile its top-level children.
        for child in module.children():
            _compile(child, True)
    out.update(run_subject(peer, ops, args, device, b))
    for op, g in counted.items():
        out[op]["gflop_per_image"] = g
    return out


def cpu_time_share(pieces: dict[str, dict[str, Any]]) -> float | None:
    """The projector + modulator share computed from CPU seconds per image instead of wall time.

    Less sensitive to other processes on a shared CPU machine (on GPU it only measures host time).
    """
    try:
        per_img = {k: 1.0 / pieces[k]["images_per_cpu_s"] for k in ("encoder", "band_projector", "modulator")}
    except (KeyError, TypeError, ZeroDivisionError):
        return None
    return (per_img["band_projector"] + per_img["modulator"]) / sum(per_img.values())


def evaluate_targets(result: dict[str, Any], device: torch.device) -> list[dict[str, Any]]:
    """The README's three targets with the measured values and whether each is met (``None``: not applicable)."""
    s = result["settings"]
    share = result["projector_modulator"]["share_of_encode_side"]
    targets = [
        {
            "target": f"band projector + modulator < {SHARE_TARGET:.0%} of encode time at the B config",
            "measured": f"{share:.2%} ({s['model']})",
            "met": share < SHARE_TARGET if s["model"] == B_CONFIG else None,
        }
    ]
    rae = result["ratios"].get("rae")
    targets.append(
        {
            "target": "uae reconstruct images/s >= RAE's (same encoder/decoder sizes)",
            "measured": f"uae / RAE = {1 / rae['reconstruct']:.3f}" if rae else "RAE not measured",
            "met": (rae["reconstruct"] <= 1.0) if rae else None,
        }
    )
    util = result["uae"]["reconstruct"].get("flop_utilisation")
    applicable = device.type == "cuda" and s["precision"] == "bf16" and s["batch_size"] == 64
    targets.append(
        {
            "target": f"CUDA, bf16 autocast, batch 64: encode+decode >= {MFU_TARGET:.0%} of peak bf16 FLOP/s",
            "measured": f"{util:.1%} of {result['peak_tflops']} TFLOP/s"
            if util is not None
            else "no peak FLOP/s given",
            "met": (util >= MFU_TARGET) if (applicable and util is not None) else None,
        }
    )
    return targets


# ---------------------------------------------------------------------------------------------------
# markdown
# ---------------------------------------------------------------------------------------------------
def _f(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}g}" if abs(v) < 10**digits else f"{v:.0f}"


def to_markdown(result: dict[str, Any]) -> str:
    """A markdown report of one run: throughput/memory table with ratios, pieces, training, targets."""
    env, s = result["env"], result["settings"]
    lines = [
        f"### {s['model']}: {env['device_name']}, {s['precision']}, batch {s['batch_size']}, "
        f"{s['resolution']} px -> {s['output_size']} px",
        "",
        f"torch {env['torch']}, timm {env['timm']}, diffusers {env['diffusers']}; {env['date_utc']}; "
        f"compile {'on' if s['compile'] else 'off'}, SDPA {'on' if s['sdpa'] else 'off'}; "
        f"median of {s['repeats']} timed runs after {s['warmup']} warm-up runs"
        + (
            f"; load average {env.get('load_average_start')} -> {env.get('load_average_end')}"
            if "load_average_start" in env
            else ""
        )
        + ".",
        "",
        "| model | params (M) | encode img/s | decode img/s | reconstruct img/s | peak mem, MiB (+ over resident) "
        "| GFLOP/img (reconstruct) | encode / uae | decode / uae | reconstruct / uae |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    u = result["uae"]

    def row(label: str, r: dict[str, Any], params: float | None, ratios: dict[str, float] | None) -> str:
        cells = [label, _f(params, 4)]
        cells += [_f(r[op]["images_per_s"]) if op in r else "-" for op in OPS]
        rec = r.get("reconstruct") or r.get("encode")
        cells.append(
            f"{rec['peak_mem_mib']:.0f} (+{rec['peak_mem_mib'] - rec['base_mem_mib']:.0f})" if rec else "-"
        )
        g = (r.get("reconstruct") or r.get("encode") or {}).get("gflop_per_image")
        cells.append(_f(g, 4) + ("" if "reconstruct" in r else " (encode)") if g is not None else "-")
        cells += [
            f"{ratios[op]:.3f}" if ratios and op in ratios else ("1" if ratios is None else "-") for op in OPS
        ]
        return "| " + " | ".join(cells) + " |"

    lines.append(row("**uae**", u, s["num_params_m"], None))
    for peer, r in result["peers"].items():
        if "skipped" in r:
            lines.append(f"| {r['label']} | skipped: {r['skipped']} |" + " |" * 8)
        else:
            lines.append(row(r["label"], r, r.get("num_params_m"), result["ratios"][peer]))
    lines += [
        "",
        "Ratios are peer images/s divided by uae images/s (> 1: the peer is faster). "
        f"Peak memory: {u['reconstruct']['mem_kind']} (includes the weights).",
    ]
    if env["device"] == "cpu":
        lines += [
            "",
            f"CPU seconds per wall second during the uae reconstruct: {u['reconstruct']['cpu_per_wall']:.2f} "
            f"(of {env['torch_threads']} threads); images per CPU second: "
            + ", ".join(f"{op} {_f(u[op]['images_per_cpu_s'])}" for op in OPS)
            + ".",
        ]
    pm = result["projector_modulator"]
    lines += [
        "",
        "| encode-side piece | ms / batch | share of encode side |",
        "|---|---:|---:|",
    ]
    total = pm["encoder_ms"] + pm["projector_ms"] + pm["modulator_ms"]
    for k, v in (
        ("ViT encoder", pm["encoder_ms"]),
        ("band projector", pm["projector_ms"]),
        ("band modulator", pm["modulator_ms"]),
    ):
        lines.append(f"| {k} | {_f(v, 4)} | {v / total:.2%} |")
    lines.append(
        f"| **band projector + modulator** | {_f(pm['projector_ms'] + pm['modulator_ms'], 4)} | **{pm['share_of_encode_side']:.2%}** |"
    )
    cpu_share = cpu_time_share(result["pieces"])
    if env["device"] == "cpu" and cpu_share is not None:
        lines += [
            "",
            f"The same share from CPU seconds per image (robust to other processes): {cpu_share:.2%}.",
        ]
    if result.get("train"):
        lines += [
            "",
            "| training step | batch | img/s | ms / step | peak mem, MiB (+ over resident) |",
            "|---|---:|---:|---:|---:|",
        ]
        for k, r in result["train"].items():
            lines.append(
                f"| {k} | {r['batch_size']} | {_f(r['images_per_s'])} | {_f(r['median_ms'], 5)} | "
                f"{r['peak_mem_mib']:.0f} (+{r['peak_mem_mib'] - r['base_mem_mib']:.0f}) |"
            )
    if any("gflop_per_image" in u[op] for op in OPS):
        peak = result["peak_tflops"]
        lines += [
            "",
            f"| uae op | GFLOP / image | achieved TFLOP/s | utilisation of {peak or '?'} TFLOP/s |",
            "|---|---:|---:|---:|",
        ]
        for op in OPS:
            r = u[op]
            util = r.get("flop_utilisation")
            lines.append(
                f"| {op} | {_f(r.get('gflop_per_image'), 4)} | {_f(r.get('achieved_tflops'))} | "
                f"{f'{util:.1%}' if util is not None else '-'} |"
            )
    if result.get("ablations"):
        lines += ["", "| ablation (reconstruct) | img/s | vs main setting |", "|---|---:|---:|"]
        for r in result["ablations"].values():
            lines.append(f"| {r['label']} | {_f(r['images_per_s'])} | {r['ratio_to_main']:.3f} |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for t in result["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a here"}[t["met"]]
        lines.append(f"| {t['target']} | {t['measured']} | {met} |")
    return "\n".join(lines) + "\n"


def write_results(
    result: dict[str, Any], out_dir: str | os.PathLike, name: str | None = None
) -> tuple[Path, Path]:
    """Write ``<name>.json`` and ``<name>.md``; returns their paths."""
    s = result["settings"]
    if name is None:
        dev = result["env"]["device"]
        if dev == "cuda":
            dev = "cuda-" + re.sub(r"[^A-Za-z0-9]+", "-", result["env"]["device_name"]).strip("-").lower()
        name = f"{dev}_{s['model']}_{s['precision']}_b{s['batch_size']}" + (
            "_compile" if s["compile"] else ""
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out / f"{name}.json", out / f"{name}.md"
    jpath.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    mpath.write_text(to_markdown(result))
    return jpath, mpath


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m benchmarks.run [options]``."""
    logging.basicConfig(
        level=os.environ.get("UAE_LOG_LEVEL", "INFO"), format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        args = parse_args(argv)
        result = run(args)
    except ValueError as e:
        print(f"benchmarks.run: error: {e}", file=sys.stderr)
        return 2
    jpath, mpath = write_results(result, args.out_dir, args.name)
    print(mpath.read_text())
    print(f"wrote {jpath} and {mpath}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
