"""Training steps: the throughput of stage 1 and stage 3 (plain model, uae's AdamW, a patch discriminator),
and uae's real stage-2 training step against a loop written like the authors', phase by phase.

:func:`compare_training_step` (``python -m benchmarks.train_step``) times, in one process and interleaved
(ABBA rounds), the forward, backward and optimizer phases of

* **uae**: :class:`uae.training.Stage2SemanticModule` trained by Lightning (``Trainer.fit``): reconstruction
  L1 + band semantic loss against the frozen teacher, gradient clipping, AdamW (fused), the LR schedule,
  the EMA update and Lightning's loop; phases from Lightning's hooks (:class:`PhaseTimer`);
* **authors' loop** (:func:`authors_style_step`): the same model, teacher and loss written the way the
  authors' training script does it -- one forward, ``loss.backward()``, ``torch.optim.AdamW`` with its
  defaults, ``zero_grad()`` -- with no clipping and no EMA.

Both run on the same weights and the same batch, so the ratios say what uae's training step costs on top
of the model itself.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from uae.bench.timing import autocast_context

logger = logging.getLogger(__name__)

#: Phases of a training step, in order.
PHASES = ("forward", "backward", "optimizer")


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
def training_state(model: nn.Module) -> Iterator[None]:
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
    from uae.training.optim import adamw

    opt = adamw(model, lr=2e-4, betas=(0.9, 0.95), weight_decay=0.0)  # uae's: fused on CPU and CUDA
    disc = d_opt = None
    if stage == 3:
        disc = PatchDiscriminator().to(device)
        d_opt = adamw(disc, lr=1e-4, betas=(0.5, 0.9), weight_decay=0.0)
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
# uae's stage-2 step against the authors' one-forward loop, phase by phase
# ---------------------------------------------------------------------------------------------------
def _now() -> tuple[float, float]:
    """``(wall, this thread's CPU time)`` in seconds: on one intra-op thread torch computes in the calling
    thread, so the CPU time is the step's own work, whatever else runs on the machine."""
    return time.perf_counter(), time.thread_time()


def _phases(marks: list[tuple[float, float]]) -> dict[str, float]:
    """Phase times from the four marks (start, forward done, backward done, end): wall and ``*_cpu``."""
    out: dict[str, float] = {}
    for i, phase in enumerate(PHASES):
        out[phase] = marks[i + 1][0] - marks[i][0]
        out[f"{phase}_cpu"] = marks[i + 1][1] - marks[i][1]
    return out


def _phase_timer_class() -> type:
    import lightning.pytorch as pl

    class PhaseTimer(pl.Callback):
        """Times each training step of a Lightning fit by phase, from Lightning's hooks.

        forward: batch start -> ``on_before_zero_grad`` (the training step: model, teacher, losses, logging);
        backward: ``on_before_zero_grad`` -> ``on_after_backward`` (``zero_grad`` and backward);
        optimizer: ``on_after_backward`` -> the next batch's start (clipping, AdamW, EMA, schedule, the loop).
        """

        def __init__(self) -> None:
            self.steps: list[dict[str, float]] = []
            self._marks: list[tuple[float, float]] = []

        def _close(self) -> None:
            if len(self._marks) == 3:
                self.steps.append(_phases([*self._marks, _now()]))
            self._marks = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self._close()
            self._marks = [_now()]

        def on_before_zero_grad(self, trainer, pl_module, optimizer) -> None:
            self._marks.append(_now())

        def on_after_backward(self, trainer, pl_module) -> None:
            self._marks.append(_now())

        def on_train_end(self, trainer, pl_module) -> None:
            self._close()

    return PhaseTimer


def describe_optimizer(optimizer: Any) -> str:
    """``"AdamW (fused)"``, ``"AdamW (foreach)"`` or ``"AdamW (for-loop)"``: the implementation a torch
    optimizer (or Lightning's wrapper of one) runs."""
    opt = getattr(optimizer, "optimizer", optimizer)
    d = opt.defaults
    kind = "fused" if d.get("fused") else "foreach" if d.get("foreach") else "for-loop"
    return f"{type(opt).__name__} ({kind})"


def uae_stage2_steps(
    module: nn.Module, batch: dict[str, torch.Tensor], steps: int, info: dict[str, Any] | None = None
) -> list[dict[str, float]]:
    """Phase times of ``steps`` optimizer steps of a stage module trained by ``Trainer.fit`` on ``batch``.

    A new Trainer (and optimizer) per call, as a fresh run; the batch is the same every step. ``info`` (when
    given) receives the optimizer's implementation (``"optimizer"``).
    """
    import lightning.pytorch as pl

    from uae.training.quiet import quiet_lightning

    quiet_lightning()
    timer = _phase_timer_class()()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        precision="32-true",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    from torch.utils.data import DataLoader

    data = [{k: v.clone() for k, v in batch.items()} for _ in range(steps)]
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=None))  # the batches as they are
    if info is not None:
        info["optimizer"] = describe_optimizer(trainer.optimizers[0])
    return timer.steps


def authors_style_step(
    model: nn.Module,
    teacher: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    target: torch.Tensor,
    semantic_weight: float = 0.1,
    semantic_bands: int = 1,
) -> dict[str, float]:
    """One step written like the authors' stage-2 loop with a single forward; returns its phase times.

    Forward: encoder bands, modulator, decoder; the frozen teacher's bands (no gradient); L1 + weighted
    MSE of the lowest ``semantic_bands`` bands. Then ``loss.backward()``, ``optimizer.step()``,
    ``optimizer.zero_grad()``.

    Args:
        model: A :class:`uae.UAE` in train mode.
        teacher: Its frozen teacher encoder.
        optimizer: A plain ``torch.optim.AdamW`` over the model's trainable parameters.
        x: ``(B, 3, H, W)`` inputs in ``[0, 1]``.
        target: ``(B, 3, H', W')`` targets at the output size.
        semantic_weight: Weight of the band MSE.
        semantic_bands: Bands tied to the teacher.
    """
    marks = [_now()]
    bands = model.encode(x).bands
    recon = model.render(model.fuse(bands), clamp=False)
    with torch.no_grad():
        teacher_bands = model.band_projector(teacher(model.normalize(x)).float())
    k = semantic_bands
    loss = F.l1_loss(recon, target) + semantic_weight * F.mse_loss(bands[:, :k], teacher_bands[:, :k])
    marks.append(_now())
    loss.backward()
    marks.append(_now())
    optimizer.step()
    optimizer.zero_grad()
    marks.append(_now())
    return _phases(marks)


def _median_phases(steps: list[dict[str, float]], suffix: str = "") -> dict[str, float]:
    out = {p: statistics.median(s[p + suffix] for s in steps) for p in PHASES}
    out["total"] = statistics.median(sum(s[p + suffix] for p in PHASES) for s in steps)
    return out


def compare_training_step(
    model_name: str = "uae_base_p14_dinov2",
    model_overrides: dict[str, Any] | None = None,
    batch_size: int = 2,
    rounds: int = 3,
    steps: int = 3,
    threads: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """uae's stage-2 training step against :func:`authors_style_step` on the same model, in ABBA rounds.

    Args:
        model_name: Registered config (random init).
        model_overrides: Config fields to change (e.g. a ViT-B decoder: ``decoder_dim=768,
            decoder_depth=12, decoder_heads=12, decoder_mlp_ratio=4.0``).
        batch_size: Images per step.
        rounds: Rounds; each runs ``steps`` steps of both, the order alternating (ABBA).
        steps: Steps per side and round; the first of each is a warm-up (optimizer state allocation) and
            is not counted.
        threads: ``torch.set_num_threads`` for the run (``None``: unchanged).
        seed: Seed of the weights and the batch.

    Returns:
        ``{"uae": phases, "authors": phases, "ratio": uae / authors per phase, "steps": counted steps,
        "config": ...}`` with median CPU seconds of the running thread per phase and per whole step
        (``total``); the same in wall seconds under ``"wall"``.
    """
    from uae.training import Stage2SemanticModule

    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    module = Stage2SemanticModule(
        model_name=model_name,
        model_overrides=dict(model_overrides or {}),
        l1_weight=1.0,
        semantic_weight=0.1,
        lr=2e-4,
        betas=(0.9, 0.95),
        ema_decay=0.9999,
        grad_clip=1.0,
        log_images_every_n_steps=0,
    )
    model, teacher = module.model, module.teacher
    assert teacher is not None
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, 3, cfg.img_size, cfg.img_size, generator=g)
    target = torch.rand(batch_size, 3, cfg.output_size, cfg.output_size, generator=g)
    batch = {"image": x, "target": target}
    params = [p for p in model.parameters() if p.requires_grad]
    plain_adamw = torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.95))  # the authors': torch's defaults

    def run_authors() -> list[dict[str, float]]:
        module.train()
        out = [authors_style_step(model, teacher, plain_adamw, x, target, 0.1, cfg.num_semantic_bands)]
        out += [
            authors_style_step(model, teacher, plain_adamw, x, target, 0.1, cfg.num_semantic_bands)
            for _ in range(steps - 1)
        ]
        return out[1:]

    info: dict[str, Any] = {}

    def run_uae() -> list[dict[str, float]]:
        return uae_stage2_steps(module, batch, steps, info)[1:]

    measured: dict[str, list[dict[str, float]]] = {"uae": [], "authors": []}
    for r in range(rounds):
        order = ("uae", "authors") if r % 2 == 0 else ("authors", "uae")
        for side in order:
            measured[side] += run_uae() if side == "uae" else run_authors()
            logger.info("round %d/%d: %s done", r + 1, rounds, side)
    result: dict[str, Any] = {side: _median_phases(v, "_cpu") for side, v in measured.items()}
    result["ratio"] = {p: result["uae"][p] / result["authors"][p] for p in (*PHASES, "total")}
    wall = {side: _median_phases(v) for side, v in measured.items()}
    wall["ratio"] = {p: wall["uae"][p] / wall["authors"][p] for p in (*PHASES, "total")}
    result["wall"] = wall
    result["raw"] = measured
    result["steps"] = {side: len(v) for side, v in measured.items()}
    result["config"] = {
        "model": model_name,
        "overrides": dict(model_overrides or {}),
        "batch_size": batch_size,
        "rounds": rounds,
        "steps_per_round": steps,
        "threads": torch.get_num_threads(),
        "trainable_params_m": round(sum(p.numel() for p in params) / 1e6, 1),
        "optimizer": {"uae": info.get("optimizer"), "authors": describe_optimizer(plain_adamw)},
    }
    return result


def comparison_markdown(result: dict[str, Any]) -> str:
    """The table of :func:`compare_training_step`'s result: median CPU seconds per phase (wall in brackets)
    and the ratio uae / authors' loop."""
    wall = result["wall"]
    rows = [
        "| phase | uae: CPU s (wall) | authors' loop: CPU s (wall) | uae / authors: CPU (wall) |",
        "|---|---|---|---|",
    ]
    for p in (*PHASES, "total"):
        rows.append(
            f"| {p} | {result['uae'][p]:.3f} ({wall['uae'][p]:.3f}) | {result['authors'][p]:.3f} "
            f"({wall['authors'][p]:.3f}) | **{result['ratio'][p]:.2f}** ({wall['ratio'][p]:.2f}) |"
        )
    return "\n".join(rows)
