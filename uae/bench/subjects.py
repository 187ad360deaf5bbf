"""Measuring one subject of a benchmark run: uae, one peer tokenizer, or one training step.

Each function builds its own model and its own inputs (the same for every subject: drawn from the
run's seed), measures, and returns a JSON-ready dict that includes the peak memory of the whole
process (``process``). :mod:`uae.bench.worker` runs each in a fresh process, so that a subject's
memory is never measured beside another model; :func:`uae.bench.run.run_benchmark` puts the results
together.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

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
from uae.bench.report import cpu_time_share
from uae.bench.timing import (
    PEER_LABELS,
    autocast_context,
    compile_module,
    count_flops,
    current_rss_mib,
    measure,
    process_peak_mib,
    set_sdpa,
    time_fn,
)
from uae.bench.train_step import train_step_fn, training_state
from uae.errors import InputError
from uae.factory import create_model
from uae.layers.encoder import FAMILY_PIXEL_STATS
from uae.models.registry import get_config

logger = logging.getLogger("uae.bench")


def build_uae(settings: Any, device: torch.device) -> nn.Module:
    """The benchmarked uae model (random init, eval mode, SDPA as set)."""
    torch.manual_seed(settings.seed)
    model = create_model(settings.model).to(device).eval()
    set_sdpa(model, settings.sdpa)
    return model


def inputs(
    cfg: Any, settings: Any, device: torch.device, batch: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The run's images: ``(x_in (B, 3, res, res), x_out (B, 3, out, out), out)`` in ``[0, 1]``.

    ``x_out`` is drawn from the run's seed at the decoder's output size and ``x_in`` is its antialiased
    bilinear downscale to the encoder resolution, so every process gets the same images.

    Raises:
        InputError: The resolution is not a multiple of the patch size.
    """
    res = settings.resolution or cfg.img_size
    if res % cfg.patch_size:
        raise InputError(
            f"resolution {res} is not a multiple of the patch size {cfg.patch_size}", param="resolution"
        )
    out_size = res // cfg.patch_size * cfg.decoder_patch_size
    gen = torch.Generator().manual_seed(settings.seed)
    x_out = torch.rand(batch, 3, out_size, out_size, generator=gen).to(device)
    x_in = F.interpolate(x_out, size=(res, res), mode="bilinear", antialias=True, align_corners=False)
    return x_in.clamp(0, 1), x_out, out_size


def _process(device: torch.device, base_mib: float | None, t0: float) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "peak_mib": round(process_peak_mib(device), 1),
        "base_mib": None if base_mib is None else round(base_mib, 1),
        "wall_s": round(time.perf_counter() - t0, 2),
    }


def _base_mib(device: torch.device) -> float | None:
    """Memory in use before the subject's model exists (CPU: the process's RSS; CUDA: 0 allocated)."""
    return torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else current_rss_mib()


def run_ops(
    name: str,
    ops: dict[str, Callable[[], Any]],
    settings: Any,
    device: torch.device,
    batch: int,
) -> dict[str, Any]:
    """Measure each operation of one subject (one call processes ``batch`` images), logging progress."""
    out: dict[str, Any] = {}
    for op, fn in ops.items():
        logger.info(
            "  %s %s: %d warm-up + %d timed runs, batch %d",
            name,
            op,
            settings.warmup,
            settings.repeats,
            batch,
        )
        out[op] = measure(fn, batch, device, settings.precision, settings.repeats, settings.warmup)
        logger.info(
            "  %s %s: %.3g images/s (median %.1f ms), peak %.0f MiB",
            name,
            op,
            out[op]["images_per_s"],
            out[op]["median_ms"],
            out[op]["peak_mem_mib"],
        )
    return out


def measure_uae(settings: Any, device: torch.device) -> dict[str, Any]:
    """uae's encode / decode / reconstruct, the encode-side pieces and the ablations, in this process.

    Returns:
        ``{"uae", "pieces", "projector_modulator", "ablations", "model_info", "process"}``.
    """
    t0 = time.perf_counter()
    base = _base_mib(device)
    model = build_uae(settings, device)
    cfg = model.config
    b = settings.batch_size
    x_in, _, out_size = inputs(cfg, settings, device, b)
    res = x_in.shape[-1]
    info = {
        "num_params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "resolution": res,
        "output_size": out_size,
        "latent_shape": [cfg.latent_dim, res // cfg.patch_size, res // cfg.patch_size],
        "num_bands": cfg.num_bands,
        "band_transform": cfg.band_transform,
    }
    with torch.inference_mode(), autocast_context(device, settings.precision):
        latent = model.encode(x_in).latent
    gflops: dict[str, float] = {}
    if settings.flops:  # eager, batch 1, before compiling
        for op, fn in uae_ops(model, x_in[:1], latent[:1]).items():
            gflops[op] = count_flops(fn, device, settings.precision) / 1e9
    if settings.compile:
        for m in (model.encoder, model.modulator, model.decoder):
            compile_module(m, True)
    result: dict[str, Any] = {"model_info": info}
    result["uae"] = run_ops("uae", uae_ops(model, x_in, latent), settings, device, b)
    for op, g in gflops.items():
        result["uae"][op]["gflop_per_image"] = g

    # encode-side pieces: encoder, band projector, modulator
    logger.info("  uae pieces: encoder, band projector, band modulator")
    with torch.inference_mode(), autocast_context(device, settings.precision):
        xn = model.normalize(x_in)
        z = model.encoder(xn).float()
        bands = model.band_projector(z)
    p, w, pr = settings.precision, settings.warmup, settings.piece_repeats
    pieces = {
        "encoder": measure(lambda: model.encoder(xn), b, device, p, settings.repeats, w),
        "band_projector": measure(lambda: model.band_projector(z), b, device, p, pr, w),
        "modulator": measure(lambda: model.fuse(bands), b, device, p, pr, w),
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
    logger.info("  band projector + modulator share of the encode side: %.2f%%", 100 * share)

    # ablations: reconstruct with one option flipped, interleaved with the main setting
    mods = (model.encoder, model.modulator, model.decoder)
    compiled: dict[nn.Module, Any] = {m: m._compiled_call_impl for m in mods if settings.compile}

    def apply(abl: str, flipped: bool) -> None:
        if abl == "sdpa":
            set_sdpa(model, settings.sdpa != flipped)
            return
        for m in mods:  # compile once, then swap the compiled call in and out (no recompiles)
            if settings.compile != flipped:
                if m not in compiled:
                    compile_module(m, True)
                    compiled[m] = m._compiled_call_impl
                m._compiled_call_impl = compiled[m]
            else:
                m._compiled_call_impl = None

    result["ablations"] = {}
    for abl in settings.ablations:
        label = {
            ("sdpa", True): "SDPA off",
            ("sdpa", False): "SDPA on",
            ("compile", False): "torch.compile on",
            ("compile", True): "torch.compile off",
        }[abl, settings.sdpa if abl == "sdpa" else settings.compile]
        result["ablations"][abl] = measure_ab(
            lambda flipped, abl=abl: apply(abl, flipped), lambda: model(x_in), settings, device, b, label
        )
        apply(abl, False)
    result["process"] = _process(device, base, t0)
    return result


def measure_ab(
    flip: Callable[[bool], None],
    fn: Callable[[], Any],
    settings: Any,
    device: torch.device,
    batch: int,
    label: str,
) -> dict[str, Any]:
    """An interleaved A/B of ``fn`` with the main setting and with one option flipped.

    After ``warmup`` calls of each, ``repeats`` pairs alternate (main then flipped, then flipped then main,
    ...), so that a change of load on a shared machine hits both alike.

    Args:
        flip: ``flip(True)`` sets the flipped option, ``flip(False)`` the main setting.
        fn: One call processes ``batch`` images.

    Returns:
        The flipped setting's ``images_per_s``, ``images_per_cpu_s``, ``median_ms`` and ``label``;
        ``ratio_to_main`` (its speed over the main setting's, from the medians), ``ratio_to_main_cpu``
        (the same from CPU time), ``pair_ratios`` (per pair) and ``main_images_per_s``.
    """
    logger.info(
        "  ablation %s: reconstruct, %d warm-up + %d interleaved pairs with the main setting, batch %d",
        label,
        settings.warmup,
        settings.repeats,
        batch,
    )
    times: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    with torch.inference_mode(), autocast_context(device, settings.precision):
        for flipped in (False, True):
            flip(flipped)
            time_fn(fn, device, 0, settings.warmup)
        for i in range(settings.repeats):
            for flipped in (False, True) if i % 2 == 0 else (True, False):
                flip(flipped)
                times[flipped] += time_fn(fn, device, 1, 0, cpu[flipped])
    main, abl = statistics.median(times[False]), statistics.median(times[True])
    main_cpu, abl_cpu = statistics.median(cpu[False]), statistics.median(cpu[True])
    r = {
        "label": label,
        "images_per_s": batch / abl,
        "images_per_cpu_s": batch / abl_cpu if abl_cpu > 0 else None,
        "median_ms": abl * 1e3,
        "main_images_per_s": batch / main,
        "ratio_to_main": main / abl,
        "ratio_to_main_cpu": main_cpu / abl_cpu if abl_cpu > 0 else None,
        "pair_ratios": [round(m / a, 4) for m, a in zip(times[False], times[True])],
        "interleaved_pairs": settings.repeats,
    }
    logger.info(
        "  ablation %s: %.3g images/s, %.3f x the main setting (pairs %.3f-%.3f)",
        label,
        r["images_per_s"],
        r["ratio_to_main"],
        min(r["pair_ratios"]),
        max(r["pair_ratios"]),
    )
    return r


def measure_peer(peer: str, settings: Any, device: torch.device) -> dict[str, Any]:
    """Build one peer tokenizer and measure it on the run's images, in this process.

    Raises:
        ImportError: The peer's library is not installed (the caller reports the peer as skipped).
        ValueError: The model config has no counterpart for this peer.
    """
    t0 = time.perf_counter()
    base = _base_mib(device)
    torch.manual_seed(settings.seed)
    cfg = get_config(settings.model)
    uae_model: nn.Module | None = None
    module: nn.Module | None = None
    if peer == "rae-equiv":
        uae_model = build_uae(settings, device)
        cfg = uae_model.config
    b = settings.batch_size
    x_in, x_out, _ = inputs(cfg, settings, device, b)
    flop_ops: dict[str, Callable[[], Any]] | None = None
    if peer == "rae-equiv":
        with torch.inference_mode(), autocast_context(device, settings.precision):
            latent = uae_model.encode(x_in).latent
        ops = rae_equiv_ops(uae_model, x_in, latent)
        if settings.flops:
            flop_ops = rae_equiv_ops(uae_model, x_in[:1], latent[:1])
    elif peer == "sd-vae":
        module = build_sd_vae(x_out.shape[-1]).to(device).eval()
        ops = sd_vae_ops(module, x_out)
        flop_ops = sd_vae_ops(module, x_out[:1]) if settings.flops else None
    elif peer == "rae":
        module = build_rae(cfg).to(device).eval()
        ops = rae_ops(module, x_in)
        flop_ops = rae_ops(module, x_in[:1]) if settings.flops else None
    elif peer == "dinov2":
        module = build_dinov2(cfg, x_in.shape[-1]).to(device).eval()
        mean, std = (
            torch.tensor(v, device=device).view(1, 3, 1, 1) for v in FAMILY_PIXEL_STATS[cfg.encoder_family]
        )
        ops = dinov2_ops(module, x_in, mean, std)
        flop_ops = dinov2_ops(module, x_in[:1], mean, std) if settings.flops else None
    else:  # pragma: no cover - BenchSettings rejects it
        raise InputError(f"unknown peer {peer!r}", param="peers")
    out: dict[str, Any] = {"label": PEER_LABELS[peer]}
    if module is not None:
        out["num_params_m"] = round(sum(p.numel() for p in module.parameters()) / 1e6, 3)
        set_sdpa(module, settings.sdpa)
    counted = {op: count_flops(fn, device, settings.precision) / 1e9 for op, fn in (flop_ops or {}).items()}
    if settings.compile:
        targets = (
            (uae_model.encoder, uae_model.modulator, uae_model.decoder)
            if module is None
            else tuple(module.children())  # encode/decode bypass the module's own __call__
        )
        for m in targets:
            compile_module(m, True)
    out.update(run_ops(peer, ops, settings, device, b))
    for op, g in counted.items():
        out[op]["gflop_per_image"] = g
    out["process"] = _process(device, base, t0)
    return out


def measure_train(stage: int, settings: Any, device: torch.device) -> dict[str, Any]:
    """One training step of stage 1 or 3 (:func:`uae.bench.train_step.train_step_fn`), in this process."""
    t0 = time.perf_counter()
    base = _base_mib(device)
    model = build_uae(settings, device)
    tb = settings.train_batch_size
    tx_in, tx_out, _ = inputs(model.config, settings, device, tb)
    logger.info(
        "  training step, stage %d: %d warm-up + %d timed steps, batch %d",
        stage,
        settings.warmup,
        settings.train_repeats,
        tb,
    )
    with training_state(model):
        step = train_step_fn(model, stage, tx_in, tx_out, device, settings.precision)
        r = measure(step, tb, device, "fp32", settings.train_repeats, settings.warmup, grad=True)
    r["precision"] = settings.precision
    logger.info("  stage %d: %.3g images/s, peak %.0f MiB", stage, r["images_per_s"], r["peak_mem_mib"])
    r["process"] = _process(device, base, t0)
    return r
