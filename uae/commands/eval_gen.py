"""``uae eval-gen --samples DIR --reference REF``: FID / IS / precision / recall of generated samples.

With ``--model`` the sample folder is written (or resumed) first, class-balanced by default
(``--label-sampling equal``: N / num_classes images per class); under ``torchrun`` every process samples
its part and rank 0 evaluates.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from uae.commands._options import ArgumentParser, flags_of, non_negative_float, non_negative_int, positive_int


def build_parser() -> ArgumentParser:
    """Options of ``uae eval-gen``."""
    p = ArgumentParser(
        prog="uae eval-gen",
        description="Generation metrics of a sample folder with torch-fidelity's standard Inception: FID against "
        "reference images or an ADM-style .npz (mu/sigma and/or arr_0), Inception Score, and improved "
        "precision/recall (k=3). With --model, the samples are generated (or the folder resumed) first.",
    )
    p.add_argument(
        "--samples", required=True, help="sample folder (uae generate --num-samples) or image folder"
    )
    p.add_argument(
        "--reference",
        required=True,
        help="reference image folder, .npz with mu/sigma and/or arr_0, or .npy of images (uae pack)",
    )
    p.add_argument(
        "--num-samples", type=positive_int, default=None, help="use (with --model: write) N samples"
    )
    p.add_argument("--metrics", nargs="+", choices=["fid", "is", "pr"], default=["fid", "is", "pr"])
    p.add_argument("--out", default=None, help="result JSON (default: <samples>/eval_gen.json)")
    p.add_argument(
        "--inception-weights",
        default=None,
        help="torch-fidelity Inception weights file (weights-inception-2015-12-05-6726825d.pth)",
    )
    p.add_argument("--no-download", action="store_true", help="never download the Inception weights")
    p.add_argument(
        "--batch-size", type=positive_int, default=64, help="images per batch (Inception and sampling)"
    )
    p.add_argument(
        "--device", default="auto", help="cuda, cpu, ... (default: cuda:LOCAL_RANK when available)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    gen = p.add_argument_group("generating the samples first (optional)")
    gen.add_argument("--model", default=None, help="generator (registered name, directory or Hub repo id)")
    gen.add_argument("--tokenizer", default=None, help="its tokenizer (default: the release's)")
    gen.add_argument("--guide-model", default=None, help="autoguidance model (default: the release's)")
    gen.add_argument("--label-sampling", choices=["equal", "random"], default="equal")
    gen.add_argument("--seed", type=non_negative_int, default=0)
    gen.add_argument("--steps", type=positive_int, default=None)
    gen.add_argument("--guidance", type=non_negative_float, default=None)
    gen.add_argument("--guidance-method", choices=["cfg", "autoguidance"], default=None)
    gen.add_argument("--sampler", dest="method", default=None)
    gen.add_argument("--no-amp", action="store_true")
    gen.add_argument(
        "--random-init", action="store_true", help="registered names without weights (smoke tests)"
    )
    return p


FLAGS = flags_of(build_parser(), out_dir="--samples", method="--sampler", model="--model")


def main(argv: Sequence[str]) -> int:
    """Parse; generate the samples when ``--model`` is given; evaluate on rank 0; print and write the result."""
    args = build_parser().parse_args(list(argv))
    from uae.commands._report import format_table, print_notes
    from uae.files import write_json
    from uae.generation.metrics import evaluate_samples
    from uae.generation.run import generate_sample_folder, resolve_device
    from uae.paths import output_file

    out = output_file(args.out or os.path.join(args.samples, "eval_gen.json"), param="out")
    if args.model is not None:
        if args.num_samples is None:
            from uae.commands._options import CLIError

            raise CLIError("--model needs --num-samples (how many images to generate)")
        settings = {
            k: getattr(args, k)
            for k in ("steps", "guidance", "guidance_method", "method")
            if getattr(args, k) is not None
        }
        res = generate_sample_folder(
            args.model,
            out_dir=args.samples,
            num_samples=args.num_samples,
            tokenizer=args.tokenizer,
            guide_model=args.guide_model,
            random_init=args.random_init,
            device=args.device,
            seed=args.seed,
            label_sampling=args.label_sampling,
            batch_size=args.batch_size,
            amp=not args.no_amp,
            progress=not args.no_progress,
            **settings,
        )
        if res.rank != 0:
            return 0
    result = evaluate_samples(
        args.samples,
        args.reference,
        num_samples=args.num_samples,
        metrics=args.metrics,
        batch_size=args.batch_size,
        inception_weights=args.inception_weights,
        allow_download=not args.no_download,
        device=resolve_device(args.device),
        progress=not args.no_progress,
    )
    write_json(out, result, indent=2, sort_keys=True)
    rows = [
        [m, result[k]]
        for m, k in (("FID", "fid"), ("IS", "is"), ("precision", "precision"), ("recall", "recall"))
    ]
    print(format_table(rows, ["metric", "value"]))
    per_class = result["samples_info"].get("images_per_class")
    balance = f", {per_class['min']}-{per_class['max']} per class" if per_class else ""
    print(f"  {result['num_samples']} samples{balance}; reference: {args.reference}")
    from uae.commands._report import metric_notes_for_flags

    print_notes(unavailable=metric_notes_for_flags(result["unavailable"]))
    print(f"  {result['notes']}")
    print(f"result -> {out}")
    return 0
