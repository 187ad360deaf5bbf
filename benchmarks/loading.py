"""Time and peak memory of loading the B config, and peak memory of converting its release (issue 18, item 1).

Run from the repository root::

    python -m benchmarks.loading --repeats 3

Everything runs on the paper's B config (``uae_base_p14_dinov2``: 503 M parameters, a 2.0 GB
``model.safetensors``), with random weights, each measurement in a fresh Python process (its peak
resident set size is ``ru_maxrss``; the RSS after the imports is reported as the base), the two ways of
each operation interleaved (A B A B ...) so that the ratios come from the same run:

* ``load``: ``UAE.from_pretrained(dir)`` of a ``save_pretrained`` folder, as uae loads now (the model
  built with its parameters on the meta device, the file memory-mapped into it:
  :mod:`uae.models.loading`), against the way it loaded before (**eager**: the model built with a random
  initialisation, then the file's tensors copied in; the same code with :func:`uae.models.loading.
  parameters_on_meta` turned off, which is what ``from_pretrained`` did). Both run the same strict
  checks (keys, shapes, dtypes, NaN/inf) and give bit-identical weights.
* ``convert``: ``uae convert --from authors_v2`` (:func:`uae.convert.release.convert_release`) of a
  release file in the authors' v2 layout (``ep-last.pt`` with only its ``"ema"`` state dict, so the file
  is the weights once: the hardest case for the target; written once, full size, random values), now and
  eager (the release file read whole instead of memory-mapped, the model initialised before the
  converted tensors are copied in).

Targets: load time <= 0.4x the eager load, load peak <= 1.3x the weights' file, conversion peak <= 2x
the release file. Results: ``benchmarks/results/loading.json`` (and the table printed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODEL = "uae_base_p14_dinov2"
MIB = 2**20


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _eager() -> None:
    """The behaviour before this change: parameters initialised at construction, torch files read whole, the
    decoder's channel permutation into new tensors."""
    import contextlib

    import torch

    import uae.models.loading as loading

    loading.parameters_on_meta = contextlib.nullcontext  # type: ignore[assignment]
    real_load = torch.load

    def load_whole(*args, **kwargs):
        kwargs.pop("mmap", None)
        return real_load(*args, **kwargs)

    torch.load = load_whole  # type: ignore[assignment]
    import uae.convert.common as common

    permute = common.permute_decoder_residual
    common.permute_decoder_residual = lambda state, perm, in_place=False: permute(state, perm)  # copies


def child(op: str, way: str, work: Path, threads: int) -> dict:
    """One measurement in this (fresh) process."""
    import torch

    torch.set_num_threads(threads)
    import uae
    from uae.convert.release import convert_release

    if way == "eager":
        _eager()
    base = _rss_mib()
    t0 = time.perf_counter()
    if op == "load":
        model = uae.UAE.from_pretrained(work / "saved")
        seconds = time.perf_counter() - t0
        check = float(sum(p.detach().sum() for p in model.parameters()))  # every page touched, in both ways
    else:
        out = work / f"converted-{way}-{os.getpid()}"
        model = convert_release("authors_v2", work / "release" / "ep-last.pt", out=out)
        seconds = time.perf_counter() - t0
        check = float(sum(p.detach().sum() for p in model.parameters()))
        import shutil

        shutil.rmtree(out, ignore_errors=True)
    return {
        "op": op,
        "way": way,
        "seconds": seconds,
        "base_mib": base,
        "peak_mib": _peak_mib(),
        "check": check,
    }


# ---------------------------------------------------------------------------------------------- files
def write_saved(work: Path) -> Path:
    """A ``save_pretrained`` folder of the B config with random weights (written once)."""
    folder = work / "saved"
    if not (folder / "model.safetensors").is_file():
        import torch

        import uae

        torch.manual_seed(0)
        uae.create_model(MODEL).save_pretrained(folder)
    return folder


def write_release(work: Path) -> Path:
    """``ep-last.pt`` + ``config.yaml`` in the authors' v2 layout (DINOv2-B with registers, ViT-XL decoder,
    patch 16), full size, random values; the ``ema`` entry only (written once)."""
    folder = work / "release"
    ckpt = folder / "ep-last.pt"
    if ckpt.is_file():
        return ckpt
    import torch

    from uae.convert.common import mae_sincos_table

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(RELEASE_CONFIG)
    g = torch.Generator().manual_seed(0)
    c, depth, hidden, regs, side = 768, 12, 3072, 4, 37
    d, ddepth, dhidden, patch, grid = 1152, 28, 4096, 16, 16

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * (shape[-1] ** -0.5 if len(shape) > 1 else 0.02)

    state: dict[str, torch.Tensor] = {
        "encoder.encoder.embeddings.cls_token": rand(1, 1, c),
        "encoder.encoder.embeddings.mask_token": rand(1, c),
        "encoder.encoder.embeddings.register_tokens": rand(1, regs, c),
        "encoder.encoder.embeddings.position_embeddings": rand(1, 1 + side * side, c),
        "encoder.encoder.embeddings.patch_embeddings.projection.weight": rand(c, 3, 14, 14),
        "encoder.encoder.embeddings.patch_embeddings.projection.bias": rand(c),
    }

    def attention(prefix: str, width: int) -> None:
        """The transformers ViT attention block (query/key/value and output projection) at ``prefix``."""
        for n in ("attention.query", "attention.key", "attention.value", "output.dense"):
            state[f"{prefix}attention.{n}.weight"], state[f"{prefix}attention.{n}.bias"] = (
                rand(width, width),
                rand(width),
            )

    for i in range(depth):
        s = f"encoder.encoder.encoder.layer.{i}."
        for n in ("norm1", "norm2"):
            state[s + n + ".weight"], state[s + n + ".bias"] = 1 + rand(c), rand(c)
        attention(s, c)
        state[s + "layer_scale1.lambda1"], state[s + "layer_scale2.lambda1"] = rand(c), rand(c)
        state[s + "mlp.fc1.weight"], state[s + "mlp.fc1.bias"] = rand(hidden, c), rand(hidden)
        state[s + "mlp.fc2.weight"], state[s + "mlp.fc2.bias"] = rand(c, hidden), rand(c)
    pos = torch.zeros(1, 1 + grid * grid, d)
    pos[0, 1:] = mae_sincos_table(d, grid)
    state.update(
        {
            "decoder.decoder_pos_embed": pos,
            "decoder.trainable_cls_token": rand(1, 1, d),
            "decoder.decoder_embed.weight": rand(d, c),
            "decoder.decoder_embed.bias": rand(d),
            "decoder.decoder_norm.weight": 1 + rand(d),
            "decoder.decoder_norm.bias": rand(d),
            "decoder.decoder_pred.weight": rand(patch * patch * 3, d),
            "decoder.decoder_pred.bias": rand(patch * patch * 3),
        }
    )
    for i in range(ddepth):
        s = f"decoder.decoder_layers.{i}."
        attention(s, d)
        state[s + "intermediate.dense.weight"], state[s + "intermediate.dense.bias"] = (
            rand(dhidden, d),
            rand(dhidden),
        )
        state[s + "output.dense.weight"], state[s + "output.dense.bias"] = rand(d, dhidden), rand(d)
        for n in ("layernorm_before", "layernorm_after"):
            state[s + n + ".weight"], state[s + n + ".bias"] = 1 + rand(d), rand(d)
    torch.save({"step": 0, "epoch": 0, "ema": state}, ckpt)
    return ckpt


RELEASE_CONFIG = """stage_1:
  target: stage1.UAE
  ckpt: downloads/checkpoints/DINOv2-B/ep-last.pt
  params:
    encoder_cls: Dinov2withNorm
    encoder_config_path: facebook/dinov2-with-registers-base
    encoder_input_size: 224
    encoder_params:
      dinov2_path: facebook/dinov2-with-registers-base
      normalize: true
    decoder_config_path: configs/decoder/ViTXL
    decoder_patch_size: 16
    noise_tau: 0.8
    reshape_to_2d: true
    frequency_config:
      freq_order: zigzag
      freq_transform: dct
      band_split:
        enabled: true
        mode: low
        apply_prob: 0.5
        uniform: true
        per_sample: true
        count: 36
        count_min: 32
        count_max: 256
"""


# ---------------------------------------------------------------------------------------------- driver
def run(work: Path, repeats: int, threads: int, ops: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    rows: list[dict] = []
    for op in ops:
        for r in range(repeats):
            ways = ("meta", "eager") if r % 2 == 0 else ("eager", "meta")
            for way in ways:
                cmd = [sys.executable, "-m", "benchmarks.loading", "--child", op, way, "--work", str(work)]
                cmd += ["--threads", str(threads)]
                out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
                row = json.loads(out.strip().splitlines()[-1])
                rows.append(row)
                print(
                    f"{op:8s} {way:6s} {row['seconds']:7.2f} s  peak {row['peak_mib']:7.0f} MiB "
                    f"(base {row['base_mib']:.0f})",
                    flush=True,
                )
    sizes = {
        "weights_mib": (work / "saved" / "model.safetensors").stat().st_size / MIB,
        "release_mib": (work / "release" / "ep-last.pt").stat().st_size / MIB,
    }
    summary: dict = {}
    for op in ops:
        for way in ("meta", "eager"):
            sel = [r for r in rows if r["op"] == op and r["way"] == way]
            summary[f"{op}_{way}"] = {
                "seconds_median": statistics.median(r["seconds"] for r in sel),
                "peak_mib_median": statistics.median(r["peak_mib"] for r in sel),
                "base_mib_median": statistics.median(r["base_mib"] for r in sel),
                "checks_equal": len({round(r["check"], 3) for r in sel}) == 1,
            }
    ratios: dict = {}
    if "load" in ops:
        m, e = summary["load_meta"], summary["load_eager"]
        pairs = [
            (a["seconds"], b["seconds"])
            for a, b in zip(
                [r for r in rows if r["op"] == "load" and r["way"] == "meta"],
                [r for r in rows if r["op"] == "load" and r["way"] == "eager"],
            )
        ]
        ratios.update(
            {
                "load_time_vs_eager": m["seconds_median"] / e["seconds_median"],
                "load_time_vs_eager_per_pair": [a / b for a, b in pairs],
                "load_peak_vs_weights": m["peak_mib_median"] / sizes["weights_mib"],
                "load_peak_vs_weights_eager": e["peak_mib_median"] / sizes["weights_mib"],
                "load_peak_above_base_vs_weights": (m["peak_mib_median"] - m["base_mib_median"])
                / sizes["weights_mib"],
                "same_weights": summary["load_meta"]["checks_equal"]
                and summary["load_eager"]["checks_equal"]
                and round(rows[0]["check"], 3) == round(rows[1]["check"], 3),
            }
        )
    if "convert" in ops:
        m, e = summary["convert_meta"], summary["convert_eager"]
        ratios.update(
            {
                "convert_peak_vs_release": m["peak_mib_median"] / sizes["release_mib"],
                "convert_peak_vs_release_eager": e["peak_mib_median"] / sizes["release_mib"],
                "convert_time_vs_eager": m["seconds_median"] / e["seconds_median"],
            }
        )
    return {"model": MODEL, "threads": threads, "repeats": repeats, "sizes": sizes, "summary": summary,
            "ratios": ratios, "rows": rows, "loadavg": os.getloadavg()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="outputs/bench_loading", help="folder for the B config's files (~4 GB)")
    p.add_argument("--repeats", type=int, default=3, help="A/B pairs per operation")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ops", default="load,convert")
    p.add_argument("--out", default="benchmarks/results/loading.json")
    p.add_argument("--child", nargs=2, metavar=("OP", "WAY"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    work = Path(args.work)
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], work, args.threads)))
        return 0
    work.mkdir(parents=True, exist_ok=True)
    ops = args.ops.split(",")
    for writer in (write_saved, write_release):  # each in its own process: the writer's memory goes away
        code = f"from benchmarks.loading import {writer.__name__}; from pathlib import Path; {writer.__name__}(Path({str(work)!r}))"
        subprocess.run([sys.executable, "-c", code], check=True)
    result = run(work, args.repeats, args.threads, ops)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"sizes": result["sizes"], "ratios": result["ratios"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
