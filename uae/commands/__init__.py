"""The ``uae`` sub-commands, one module per command, and the table :mod:`uae.cli` dispatches from.

Each module has ``build_parser()`` (an ``argparse`` parser built from light modules only: the standard
library and :mod:`uae.commands._options`, so ``uae <command> --help`` answers without importing torch),
and ``main(argv) -> int``, which parses first, then calls the library with keyword arguments and prints.
The library's errors name parameters; :mod:`uae.cli` names the option with the same ``dest`` instead
(``batch_size`` -> ``--batch-size``), and a module's ``FLAGS`` maps the parameters named otherwise
(``{"out_dir": "--out", ...}``; :func:`uae.commands._options.command_flags`).
"""

from __future__ import annotations

# name -> (module, function, one-line help). Each function takes argv (list[str]) and returns an exit code;
# each module (uae.commands.*) imports only light modules at import time, so `--help` is fast.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "fit": (
        "uae.commands.fit",
        "main",
        "train a UAE stage with LightningCLI (--config <recipe name or file>)",
    ),
    "validate": ("uae.commands.fit", "validate_main", "run validation of a training config (LightningCLI)"),
    "recipes": (
        "uae.commands.recipes",
        "main",
        "list the bundled training recipes, or copy them out (--copy DIR)",
    ),
    "export": (
        "uae.commands.export",
        "main",
        "Lightning checkpoint -> Hub-layout directory (EMA weights)",
    ),
    "reconstruct": ("uae.commands.reconstruct", "main", "reconstruct images and write band pictures"),
    "eval": ("uae.commands.eval", "main", "PSNR / SSIM / LPIPS / rFID of a model on a dataset"),
    "probe": ("uae.commands.probe", "main", "linear probe on band features"),
    "spectrum": (
        "uae.commands.spectrum",
        "main",
        "radial power spectrum of latents and energy per band",
    ),
    "filtered-eval": ("uae.commands.filtered_eval", "main", "low-pass / high-pass filtered evaluation"),
    "bands": ("uae.commands.bands", "main", "picture of progressive band decodes and band energies"),
    "pack": (
        "uae.commands.pack",
        "main",
        "decode an image set once into a uint8 array (.npy / ADM .npz) that --data accepts",
    ),
    "encode": (
        "uae.commands.encode",
        "main",
        "export band latents of a dataset as sharded safetensors",
    ),
    "convert": (
        "uae.commands.convert",
        "main",
        "convert the authors' or RAE checkpoints into uae's layout",
    ),
    "generate": (
        "uae.commands.generate",
        "main",
        "class-conditional images from a latent generator (PNGs + grid, or a sample folder for FID)",
    ),
    "eval-gen": (
        "uae.commands.eval_gen",
        "main",
        "FID / IS / precision / recall of generated samples against reference images or a .npz",
    ),
    "bench": ("uae.commands.bench", "main", "speed and memory of a model, side by side with peer tokenizers"),
    "models": ("uae.commands.models", "main", "list the registered models and their pretrained weights"),
    "publish": ("uae.commands.publish", "main", "convert a release, write a Hub folder + card, push"),
    "app": ("uae.commands.app", "main", "band explorer web page (Gradio; needs the app extra)"),
}

# Commands whose idle OpenMP threads uae.cli lets sleep instead of spin (uae.hardware.passive_openmp_waits,
# before torch is imported): measured to help only where loader workers decode beside a small model on the
# same cores (`uae encode --model uae_demo` on 2 cores: 1.2x); `uae eval` gained nothing (the same images/s)
# and a model running alone lost 20-50 % at that size, so the others keep OpenMP's default.
PASSIVE_OPENMP_COMMANDS: frozenset[str] = frozenset({"encode"})


def prepare_process(name: str) -> None:
    """Set this process up as ``uae <name>`` runs (call before torch is imported): OpenMP's passive waits
    for :data:`PASSIVE_OPENMP_COMMANDS`, and a steady heap for every command (:mod:`uae.hardware`)."""
    from uae.hardware import passive_openmp_waits, steady_heap

    if name in PASSIVE_OPENMP_COMMANDS:
        passive_openmp_waits()
    steady_heap()  # freed tensors' memory reused, not faulted in again op after op (glibc; 1.25x uae_demo)
