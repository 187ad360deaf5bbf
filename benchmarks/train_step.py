"""uae's training step against a loop written like the authors', phase by phase (issue 18, item 5).

Run from the repository root::

    python -m benchmarks.train_step                      # DINOv2-B encoder + ViT-B decoder, batch 2, 1 thread
    python -m benchmarks.train_step --model uae_test --rounds 2 --steps 3   # seconds: a smoke run

Both sides train the same :class:`uae.UAE` (random init) on the same batch in one process, interleaved in
ABBA rounds (:func:`uae.bench.train_step.compare_training_step`):

* **uae**: ``Stage2SemanticModule`` under ``lightning.Trainer.fit``: L1 + band semantic loss against the
  frozen teacher, gradient clipping (1.0), fused AdamW, the warm-up/cosine schedule, the EMA update and
  Lightning's loop and logging;
* **authors' loop**: one forward, the same loss, ``loss.backward()``, ``torch.optim.AdamW`` with torch's
  defaults, ``zero_grad()``; no clipping, no EMA.

Phases: forward (the training step up to the loss), backward (``zero_grad`` + backward), optimizer
(everything after backward until the next step starts). Times are the median CPU seconds of the running
thread (on one thread torch computes in it, so other jobs on the machine do not count) and wall seconds.
Results: ``benchmarks/results/train_step_<model>_b<batch>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
from pathlib import Path

import torch

from uae.bench.train_step import compare_training_step, comparison_markdown

#: The issue's comparison: DINOv2-B encoder with a ViT-B decoder (the B config has a ViT-XL decoder).
VIT_B_DECODER = {"decoder_dim": 768, "decoder_depth": 12, "decoder_heads": 12, "decoder_mlp_ratio": 4.0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="uae_base_p14_dinov2")
    p.add_argument("--full-decoder", action="store_true", help="keep the config's own decoder (ViT-XL for B)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3, help="steps per side and round (the first is a warm-up)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    overrides = {} if args.full_decoder or args.model != "uae_base_p14_dinov2" else VIT_B_DECODER
    result = compare_training_step(
        args.model, overrides, args.batch_size, args.rounds, args.steps, threads=args.threads
    )
    result["environment"] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
    table = comparison_markdown(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"train_step_{args.model}{'' if overrides or args.model != 'uae_base_p14_dinov2' else '_xl'}_b{args.batch_size}"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{name}.md").write_text(table + "\n")
    print(table)
    print(f"steps counted: {result['steps']}; config: {result['config']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
