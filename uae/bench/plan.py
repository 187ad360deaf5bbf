"""What a benchmark run will do, and roughly how long and how much memory it will take, before it starts.

The estimate needs no model: parameters and FLOPs per image come from the config's sizes (ViT blocks,
band modulator, SD-VAE's published cost), the speed from a short matrix-multiply calibration on the
device (models reach about :data:`MODEL_EFFICIENCY` of it), and memory from the weights (fp32), the
optimizer states of the training steps (AdamW: gradients and two moments) and a rough activation
term. Every subject runs in its own process, one at a time, so the run's peak is the largest
process's peak, not the sum. It is a rough guide (within about 2x), printed so that nobody starts a
nine-minute, several-GiB run by accident.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from uae.bench.timing import PEER_LABELS, current_rss_mib

#: Models reach about this fraction of the calibration matmul's FLOP/s (measured: 0.7-0.8 on CPU).
MODEL_EFFICIENCY = 0.6
#: Seconds to start a Python process with torch and uae, before any model is built.
PROCESS_START_S = 4.0
#: Seconds per million parameters to build a model with random init on CPU.
BUILD_S_PER_MPARAM = 0.01
#: Extra resident memory of a process that imports diffusers / transformers (MiB).
PEER_LIBRARY_MIB = 300.0
#: SD-VAE (AutoencoderKL, SD config): parameters (M) and GFLOP per 256 px image (encode, decode).
SD_VAE_PARAMS_M = 83.65
SD_VAE_GFLOP_256 = (297.0, 594.0)
#: Seconds ``torch.compile`` takes per compiled model on a CPU (order of magnitude).
COMPILE_S = 60.0


@dataclass(frozen=True)
class Step:
    """One process of the run.

    Attributes:
        subject: ``"uae"``, a peer name, ``"train1"`` or ``"train3"``.
        label: What it is, for people.
        work: What it runs, for people (operations, repeats, batch).
        seconds: Estimated wall time, process start included.
        peak_mib: Estimated peak memory of the process (CPU: resident set; CUDA: allocated).
    """

    subject: str
    label: str
    work: str
    seconds: float
    peak_mib: float


def _block(n: int, d: int, hidden: int) -> tuple[float, float]:
    """(parameters, FLOPs) of one pre-norm ViT block on ``n`` tokens of width ``d``."""
    params = 4 * d * d + 2 * d * hidden + 9 * d + hidden
    flops = 2 * n * (4 * d * d + 2 * d * hidden) + 4 * n * n * d
    return params, flops


def model_costs(cfg: Any, resolution: int) -> dict[str, float]:
    """Parameters and FLOPs per image of a uae config's parts, from its sizes.

    Returns:
        ``{"encoder_params", "decoder_params", "modulator_params", "encode_flops", "decode_flops",
        "modulator_flops", "tokens", "grid"}`` (FLOPs: 2 per multiply-add, as the benchmark counts).
    """
    grid = resolution // cfg.patch_size
    cells = grid * grid
    n_enc = cells + 1 + cfg.encoder_reg_tokens
    d, e_hidden = cfg.encoder_dim, round(cfg.encoder_dim * cfg.encoder_mlp_ratio)
    bp, bf = _block(n_enc, d, e_hidden)
    patch = 3 * cfg.patch_size**2 * d
    enc_params = cfg.encoder_depth * bp + patch + cells * d
    enc_flops = cfg.encoder_depth * bf + 2 * cells * patch
    c, k = cfg.latent_dim, cfg.num_bands
    hid = cfg.modulator_hidden_dim
    mod_params = k * c * hid * cfg.modulator_in_kernel**2 + hid * c * cfg.modulator_out_kernel**2
    mod_flops = 2 * cells * mod_params
    dd, d_hidden = cfg.decoder_dim, round(cfg.decoder_dim * cfg.decoder_mlp_ratio)
    bp, bf = _block(cells + 1, dd, d_hidden)
    out = cfg.decoder_patch_size**2 * 3
    dec_params = cfg.decoder_depth * bp + c * dd + dd * out
    dec_flops = cfg.decoder_depth * bf + 2 * cells * (c * dd + dd * out)
    return {
        "encoder_params": enc_params,
        "decoder_params": dec_params,
        "modulator_params": mod_params,
        "encode_flops": enc_flops,
        "decode_flops": mod_flops + dec_flops,
        "modulator_flops": mod_flops,
        "tokens": n_enc,
        "grid": grid,
    }


def calibrate_gflops(device: torch.device, precision: str, seconds: float = 0.3) -> float:
    """Achieved GFLOP/s of a square matrix multiply on ``device`` (a rough speed of the device)."""
    n = 1024 if device.type == "cpu" else 4096
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if device.type == "cpu":
        dtype = torch.float32  # autocast on CPU is not what the matmul measures
    a = torch.randn(n, n, device=device, dtype=dtype)
    a @ a  # noqa: B018 - warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ a  # noqa: B018
        count += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return 2 * n**3 * count / (time.perf_counter() - t0) / 1e9


def make_plan(settings: Any, cfg: Any, device: torch.device, gflops: float) -> list[Step]:
    """The processes of a run with ``settings`` (resolved) and their estimated time and peak memory.

    Args:
        settings: Resolved :class:`uae.bench.run.BenchSettings`.
        cfg: The model's :class:`uae.models.config.UAEConfig`.
        device: The device.
        gflops: The device's speed (:func:`calibrate_gflops`).
    """
    res = settings.resolution or cfg.img_size
    costs = model_costs(cfg, res)
    rate = max(gflops * MODEL_EFFICIENCY, 1e-3) * 1e9  # FLOP/s
    b, w, r = settings.batch_size, settings.warmup, settings.repeats
    calls = w + r
    enc, dec = costs["encode_flops"], costs["decode_flops"]
    rec = enc + dec
    params = costs["encoder_params"] + costs["decoder_params"] + costs["modulator_params"]
    base = (current_rss_mib() or 600.0) if device.type == "cpu" else 0.0
    weights_mib = 4 * params / 2**20
    compile_s = COMPILE_S * (1 if settings.compile else 0)
    out_px = (res // cfg.patch_size * cfg.decoder_patch_size) ** 2

    def act_mib(batch: int, stage: int = 0) -> float:
        """Rough activation memory: what one block keeps per token (inference: one block's worth live;
        training: every trainable block's, about 6 widths + 2 MLP widths, twice for temporaries)."""
        enc = (6 * cfg.encoder_dim + 2 * round(cfg.encoder_dim * cfg.encoder_mlp_ratio)) * 4
        dec = (6 * cfg.decoder_dim + 2 * round(cfg.decoder_dim * cfg.decoder_mlp_ratio)) * 4
        if not stage:
            return batch * costs["tokens"] * 4 * max(enc, dec) / 2**20
        depth_bytes = cfg.decoder_depth * dec + (cfg.encoder_depth * enc if stage == 3 else 0)
        return 2 * batch * costs["tokens"] * depth_bytes / 2**20

    def step(subject: str, label: str, work: str, flops: float, n_params: float, extra_mib: float) -> Step:
        seconds = PROCESS_START_S + BUILD_S_PER_MPARAM * n_params / 1e6 + flops / rate + compile_s
        return Step(subject, label, work, seconds, base + 4 * n_params / 2**20 + extra_mib)

    ops = f"encode, decode, reconstruct x ({w} warm-up + {r} timed), batch {b}"
    flop_count = rec if settings.flops else 0.0
    uae_flops = b * calls * (enc + dec + rec) + flop_count + b * calls * (enc + costs["modulator_flops"])
    uae_flops += b * calls * rec * len(settings.ablations)
    steps = [
        step(
            "uae",
            "uae",
            ops + " + encode-side pieces" + "".join(f" + {a} ablation" for a in settings.ablations),
            uae_flops,
            params,
            act_mib(b) + (weights_mib if "compile" in settings.ablations else 0.0),
        )
    ]
    for peer in settings.peers:
        if peer == "sd-vae":
            e, d = (g * 1e9 * out_px / 256**2 for g in SD_VAE_GFLOP_256)
            flops, n = b * calls * 2 * (e + d) + (e + d if settings.flops else 0), SD_VAE_PARAMS_M * 1e6
            extra = (
                PEER_LIBRARY_MIB + 270.0 * b * out_px / 256**2
            )  # its conv activations (measured +536 MiB at b=2)
        elif peer == "dinov2":
            flops, n, extra = b * calls * enc, costs["encoder_params"], act_mib(b) / 2
        else:  # rae, rae-equiv: the same encoder and decoder sizes
            flops, n = (
                b * calls * 2 * rec + (rec if settings.flops else 0),
                params - costs["modulator_params"],
            )
            extra = act_mib(b) + (PEER_LIBRARY_MIB if peer == "rae" else 0.0)
        steps.append(
            step(
                peer,
                PEER_LABELS[peer],
                ops if peer != "dinov2" else f"encode x ({w} + {r}), batch {b}",
                flops,
                n,
                extra,
            )
        )
    if settings.train:
        tb, tcalls = settings.train_batch_size, w + settings.train_repeats
        for stage in (1, 3):
            trainable = params - (costs["encoder_params"] if stage == 1 else 0)
            flops = tb * tcalls * (rec + 2 * (dec if stage == 1 else rec)) * (1.1 if stage == 3 else 1.0)
            extra = 12 * trainable / 2**20 + act_mib(tb, stage)
            steps.append(
                step(
                    f"train{stage}",
                    f"training step, stage {stage}",
                    f"{w} warm-up + {settings.train_repeats} timed steps, batch {tb}",
                    flops,
                    params,
                    extra,
                )
            )
    return steps


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, math.ceil(seconds / 5) * 5)} s"
    return f"{seconds / 60:.0f} min"


def _mem(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


def describe_plan(steps: list[Step], device: torch.device, gflops: float) -> str:
    """A few lines for people: the processes, the estimated total time and the largest peak."""
    total = sum(s.seconds for s in steps)
    peak = max(s.peak_mib for s in steps)
    kind = "resident memory" if device.type == "cpu" else "GPU memory"
    here = current_rss_mib()
    waiting = f" beside this process's ~{_mem(here)}" if here and device.type == "cpu" else ""
    lines = [
        f"uae bench: {len(steps)} processes, one after the other (each model alone in its process); "
        f"estimated about {_duration(total)} and at most ~{_mem(peak)} of {kind}{waiting} "
        f"(the device multiplies matrices at {gflops:.0f} GFLOP/s; a rough estimate, within about 2x):"
    ]
    for i, s in enumerate(steps, 1):
        lines.append(
            f"  [{i}/{len(steps)}] {s.label}: {s.work} (~{_duration(s.seconds)}, ~{_mem(s.peak_mib)})"
        )
    return "\n".join(lines)
