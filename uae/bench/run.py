"""Throughput and memory of uae, side by side with peer tokenizers, in one run on the same inputs.

From the command line (``uae bench``, :mod:`uae.commands.bench`)::

    uae bench --model uae_base_p14_dinov2 --device cpu --batch-size 2
    uae bench --device cuda --precision bf16 --batch-size 64 --ablations sdpa,compile

or from Python: ``run_benchmark(model="uae_test", device="cpu", batch_size=2, peers=())``.

What is measured (see ``benchmarks/README.md`` for the definitions and targets):

* uae ``encode`` / ``decode`` / ``reconstruct`` images/s: median of ``repeats`` timed runs after
  ``warmup`` untimed runs, with ``torch.cuda.synchronize`` around every timed run on GPU;
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

:func:`uae.bench.report.write_results` writes the result as ``<out_dir>/<name>.json`` and ``.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from uae.bench.names import ABLATIONS, B_CONFIG, PEERS
from uae.bench.peers import (
    build_dinov2,
    build_rae,
    build_sd_vae,
    dinov2_ops,
    rae_equiv_ops,
    rae_ops,
    sd_vae_ops,
    uae_ops,
)
from uae.bench.report import cpu_time_share, evaluate_targets
from uae.bench.timing import (
    OPS,
    PEER_LABELS,
    autocast_context,
    compile_module,
    count_flops,
    environment,
    free_memory,
    known_peak_tflops,
    measure,
    set_sdpa,
)
from uae.bench.train_step import train_step_fn, training_state
from uae.errors import InputError
from uae.factory import create_model
from uae.utils import check_device

logger = logging.getLogger("uae.bench")


@dataclass(frozen=True)
class BenchSettings:
    """What one benchmark run measures, and how.

    Attributes:
        model: A registered uae model name (random init: speed does not depend on the weights).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        batch_size: Inference batch (``None``: 64 on CUDA, 2 on CPU).
        train_batch_size: Training-step batch (``None``: ``batch_size``).
        resolution: Encoder input side (``None``: the model's ``img_size``).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (``None``: bf16 on CUDA, fp32 on CPU).
        repeats: Timed runs per measurement (the median is reported).
        warmup: Untimed runs before timing.
        piece_repeats: Timed runs of the cheap band projector / modulator pieces.
        train_repeats: Timed training steps (``None``: ``repeats``).
        compile: ``torch.compile`` the uae encoder, modulator and decoder (and the peers).
        sdpa: ``F.scaled_dot_product_attention`` (``False``: explicit softmax attention).
        peers: Peer tokenizers measured beside uae (:data:`uae.bench.names.PEERS`).
        ablations: Options flipped for a second reconstruct measurement (:data:`uae.bench.names.ABLATIONS`).
        train: Measure the training steps.
        flops: Count the FLOPs.
        peak_tflops: Peak TFLOP/s of the device for the utilisation (``None``: the known-GPU table).
        threads: ``torch.set_num_threads`` on CPU.
        seed: Seed of the random inputs.

    Raises:
        InputError: An unknown peer or ablation, or a count out of range (naming the field).
    """

    model: str = B_CONFIG
    device: str = "auto"
    batch_size: int | None = None
    train_batch_size: int | None = None
    resolution: int | None = None
    precision: str | None = None
    repeats: int = 5
    warmup: int = 2
    piece_repeats: int = 10
    train_repeats: int | None = None
    compile: bool = False
    sdpa: bool = True
    peers: Sequence[str] = PEERS
    ablations: Sequence[str] = ()
    train: bool = True
    flops: bool = True
    peak_tflops: float | None = None
    threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (("peers", PEERS), ("ablations", ABLATIONS)):
            items = tuple(getattr(self, name))
            bad = [v for v in items if v not in allowed]
            if bad:
                raise InputError(f"{name}: unknown {bad}; choose from {', '.join(allowed)}", param=name)
            object.__setattr__(self, name, items)
        for name in (
            "batch_size",
            "train_batch_size",
            "resolution",
            "repeats",
            "piece_repeats",
            "train_repeats",
        ):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise InputError(f"{name} must be >= 1, got {v}", param=name)
        if self.warmup < 0:
            raise InputError(f"warmup must be >= 0, got {self.warmup}", param="warmup")
        if self.precision not in (None, "fp32", "bf16", "fp16"):
            raise InputError(
                f"precision must be fp32, bf16 or fp16, got {self.precision!r}", param="precision"
            )

    def resolved(self, device: torch.device) -> BenchSettings:
        """The settings with every ``None`` default chosen for ``device``."""
        batch = self.batch_size or (64 if device.type == "cuda" else 2)
        return dataclasses.replace(
            self,
            precision=self.precision or ("bf16" if device.type == "cuda" else "fp32"),
            batch_size=batch,
            train_batch_size=self.train_batch_size or batch,
            train_repeats=self.train_repeats or self.repeats,
        )


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device(name)


def run_subject(
    name: str,
    ops: dict[str, Callable[[], Any]],
    settings: BenchSettings,
    device: torch.device,
    batch: int,
) -> dict[str, Any]:
    """Measure each operation of one subject (one call processes ``batch`` images)."""
    out: dict[str, Any] = {}
    for op, fn in ops.items():
        logger.info("%s %s (batch %d)", name, op, batch)
        out[op] = measure(fn, batch, device, settings.precision, settings.repeats, settings.warmup)
        logger.info(
            "  %.3g images/s, median %.1f ms, peak %.0f MiB",
            out[op]["images_per_s"],
            out[op]["median_ms"],
            out[op]["peak_mem_mib"],
        )
    return out


def run_benchmark(settings: BenchSettings | None = None, /, **kwargs: Any) -> dict[str, Any]:
    """Run the whole benchmark; returns the JSON-ready result dict.

    Args:
        settings: What to measure (default: :class:`BenchSettings`'s defaults).
        **kwargs: :class:`BenchSettings` fields to change, e.g. ``run_benchmark(model="uae_test",
            device="cpu", peers=("dinov2",))``.

    Raises:
        InputError: A bad setting (naming the field), or a device this machine does not have.
    """
    opts = dataclasses.replace(settings or BenchSettings(), **kwargs)
    device = _device(opts.device)
    if opts.threads and device.type == "cpu":
        torch.set_num_threads(opts.threads)
    opts = opts.resolved(device)
    torch.manual_seed(opts.seed)

    model = create_model(opts.model).to(device).eval()
    cfg = model.config
    res = opts.resolution or cfg.img_size
    if res % cfg.patch_size:
        raise InputError(
            f"resolution {res} is not a multiple of the patch size {cfg.patch_size}", param="resolution"
        )
    out_size = res // cfg.patch_size * cfg.decoder_patch_size
    set_sdpa(model, opts.sdpa)

    b = opts.batch_size
    gen = torch.Generator().manual_seed(opts.seed)
    x_out = torch.rand(b, 3, out_size, out_size, generator=gen).to(device)  # decoder-resolution images
    x_in = F.interpolate(x_out, size=(res, res), mode="bilinear", antialias=True, align_corners=False).clamp(
        0, 1
    )

    result: dict[str, Any] = {
        "env": environment(device),
        "settings": {
            "model": opts.model,
            "num_params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
            "batch_size": b,
            "train_batch_size": opts.train_batch_size,
            "resolution": res,
            "output_size": out_size,
            "latent_shape": [cfg.latent_dim, res // cfg.patch_size, res // cfg.patch_size],
            "num_bands": cfg.num_bands,
            "band_transform": cfg.band_transform,
            "precision": opts.precision,
            "repeats": opts.repeats,
            "warmup": opts.warmup,
            "piece_repeats": opts.piece_repeats,
            "train_repeats": opts.train_repeats,
            "compile": opts.compile,
            "sdpa": opts.sdpa,
            "peers": list(opts.peers),
            "ablations": list(opts.ablations),
        },
    }

    # ---- FLOPs (eager, batch 1, before compiling) ---------------------------------------------
    with torch.inference_mode(), autocast_context(device, opts.precision):
        latent = model.encode(x_in).latent
    uae_gflops: dict[str, float] = {}
    if opts.flops:
        for op, fn in uae_ops(model, x_in[:1], latent[:1]).items():
            uae_gflops[op] = count_flops(fn, device, opts.precision) / 1e9
    if opts.compile:
        for m in (model.encoder, model.modulator, model.decoder):
            compile_module(m, True)

    # ---- uae: encode / decode / reconstruct -------------------------------------------------------
    result["uae"] = run_subject("uae", uae_ops(model, x_in, latent), opts, device, b)
    for op, g in uae_gflops.items():
        result["uae"][op]["gflop_per_image"] = g

    # ---- encode-side pieces: encoder, band projector, modulator --------------------------------------
    with torch.inference_mode(), autocast_context(device, opts.precision):
        xn = model.normalize(x_in)
        z = model.encoder(xn).float()
        bands = model.band_projector(z)
    pieces = {
        "encoder": measure(lambda: model.encoder(xn), b, device, opts.precision, opts.repeats, opts.warmup),
        "band_projector": measure(
            lambda: model.band_projector(z), b, device, opts.precision, opts.piece_repeats, opts.warmup
        ),
        "modulator": measure(
            lambda: model.fuse(bands), b, device, opts.precision, opts.piece_repeats, opts.warmup
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
    for abl in opts.ablations:
        if abl == "sdpa":
            set_sdpa(model, not opts.sdpa)
            label = "SDPA off" if opts.sdpa else "SDPA on"
        else:
            for m in (model.encoder, model.modulator, model.decoder):
                compile_module(m, not opts.compile)
            label = "torch.compile on" if not opts.compile else "torch.compile off"
        logger.info("ablation: %s", label)
        r = measure(lambda: model(x_in), b, device, opts.precision, opts.repeats, opts.warmup)
        r["label"] = label
        r["ratio_to_main"] = r["images_per_s"] / result["uae"]["reconstruct"]["images_per_s"]
        result["ablations"][abl] = r
        if abl == "sdpa":
            set_sdpa(model, opts.sdpa)
        else:
            for m in (model.encoder, model.modulator, model.decoder):
                compile_module(m, opts.compile)

    # ---- peers ---------------------------------------------------------------------------------------------
    result["peers"] = {}
    for peer in opts.peers:
        try:
            result["peers"][peer] = run_peer(peer, model, x_in, x_out, latent, opts, device)
        except Exception as e:  # noqa: BLE001 - a broken peer must not lose the rest of a long run
            logger.warning("peer %s skipped: %s", peer, e)
            result["peers"][peer] = {"label": PEER_LABELS[peer], "skipped": f"{type(e).__name__}: {e}"}
        free_memory(device)
    result["ratios"] = {
        peer: {op: r[op]["images_per_s"] / result["uae"][op]["images_per_s"] for op in OPS if op in r}
        for peer, r in result["peers"].items()
        if "skipped" not in r
    }

    # ---- training steps (last: their optimizer states would inflate later CPU RSS peaks) -------------
    if opts.train:
        tb = opts.train_batch_size
        tx_out = x_out[:tb] if tb <= b else torch.rand(tb, 3, out_size, out_size, generator=gen).to(device)
        tx_in = F.interpolate(
            tx_out, size=(res, res), mode="bilinear", antialias=True, align_corners=False
        ).clamp(0, 1)
        result["train"] = {}
        for stage in (1, 3):
            logger.info("training step, stage %d (batch %d)", stage, tb)
            with training_state(model):
                step = train_step_fn(model, stage, tx_in, tx_out, device, opts.precision)
                r = measure(step, tb, device, "fp32", opts.train_repeats, opts.warmup, grad=True)
                r["precision"] = opts.precision
                del step
            free_memory(device)
            result["train"][f"stage{stage}"] = r
            logger.info("  %.3g images/s, peak %.0f MiB", r["images_per_s"], r["peak_mem_mib"])

    # ---- FLOP utilisation and targets ------------------------------------------------------------------
    peak = opts.peak_tflops or known_peak_tflops(device, opts.precision)
    result["peak_tflops"] = peak
    result["peak_tflops_source"] = (
        "given (peak_tflops)" if opts.peak_tflops else ("known GPU table" if peak else None)
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
    opts: BenchSettings,
    device: torch.device,
) -> dict[str, Any]:
    """Build and measure one peer on the same inputs (``opts``: resolved settings)."""
    cfg = model.config
    b = x_in.shape[0]
    module: nn.Module | None = None
    if peer == "rae-equiv":
        ops = rae_equiv_ops(model, x_in, latent)
        flops = None if not opts.flops else rae_equiv_ops(model, x_in[:1], latent[:1])
    elif peer == "sd-vae":
        module = build_sd_vae(x_out.shape[-1]).to(device).eval()
        ops = sd_vae_ops(module, x_out)
        flops = None if not opts.flops else sd_vae_ops(module, x_out[:1])
    elif peer == "rae":
        module = build_rae(cfg).to(device).eval()
        ops = rae_ops(module, x_in)
        flops = None if not opts.flops else rae_ops(module, x_in[:1])
    elif peer == "dinov2":
        module = build_dinov2(cfg, x_in.shape[-1]).to(device).eval()
        mean, std = model.pixel_mean, model.pixel_std
        ops = dinov2_ops(module, x_in, mean, std)
        flops = None if not opts.flops else dinov2_ops(module, x_in[:1], mean, std)
    else:  # pragma: no cover - BenchSettings rejects it
        raise InputError(f"unknown peer {peer!r}", param="peers")
    out: dict[str, Any] = {"label": PEER_LABELS[peer]}
    counted: dict[str, float] = {}
    if module is not None:
        out["num_params_m"] = round(sum(p.numel() for p in module.parameters()) / 1e6, 3)
        set_sdpa(module, opts.sdpa)
    if flops is not None:
        # Count eagerly, as for uae (the shared uae modules are un-compiled for the count).
        shared = (model.encoder, model.modulator, model.decoder) if module is None and opts.compile else ()
        for m in shared:
            compile_module(m, False)
        counted = {op: count_flops(fn, device, opts.precision) / 1e9 for op, fn in flops.items()}
        for m in shared:
            compile_module(m, True)
    if module is not None and opts.compile:
        # encode/decode/forward_features bypass the module's own __call__: compile its top-level children.
        for child in module.children():
            compile_module(child, True)
    out.update(run_subject(peer, ops, opts, device, b))
    for op, g in counted.items():
        out[op]["gflop_per_image"] = g
    return out
