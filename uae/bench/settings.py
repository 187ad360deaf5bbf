"""What a benchmark run measures (:class:`BenchSettings`) and the ``--quick`` preset (:data:`QUICK`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from uae.bench.names import ABLATIONS, B_CONFIG, PEERS
from uae.errors import InputError


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
        isolate: Measure each subject in its own process (``False``: all in this one, faster, for tests;
            the memory figures then include the models measured before).

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
    isolate: bool = True

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


#: ``uae bench --quick``: the small demo config on one thread, three timed runs, the peers that share
#: its sizes (SD-VAE's fixed convolutional stack alone would take most of a minute on a CPU), no training
#: steps: seconds, not minutes.
QUICK: dict[str, Any] = {
    "model": "uae_demo",
    "repeats": 3,
    "warmup": 1,
    "piece_repeats": 3,
    "train": False,
    "ablations": (),
    "peers": ("rae-equiv", "dinov2"),
    "threads": 1,
}


__all__ = ["QUICK", "BenchSettings"]
