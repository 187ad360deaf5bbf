"""The latent-diffusion stage on a CUDA machine: exactness of one step, bf16 drift, speed (a check to run by
hand; CI has no GPU).

Run from a checkout on a machine with a GPU (the golden fixtures under tests/ are read)::

    OUT=outputs python benchmarks/ldm_cuda_check.py      # QUICK=1: skip the full-size part

What it measures (printed and written to ``$OUT/ldm_gpu_check.json``):

* one step of :class:`uae.training.LatentDiffusionModule` through ``Trainer.fit`` on the GPU on the recorded
  ``src/train.py`` step (tests/fixtures/generation/rae/train_step.safetensors, the CPU's draws: the noise is
  given through a CPU generator here, since on CUDA the module draws it from a CUDA generator), float32 with
  TF32 off and bf16-mixed: loss, gradient norm and weights against the recording;
* full size (DiT-DH-XL, 16x16x768 random latents, batch 64): optimizer steps per second and peak memory in
  32-true (TF32 on, the recipes') and bf16-mixed, and the extrapolated hours of RAE's 1400 epochs on 8 GPUs.
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

sys.path.insert(0, "tests")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from generation_fixtures import GEN, config, max_err  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from uae.convert.dit import convert_dit_state, dit_from_original  # noqa: E402
from uae.training import LatentDiffusionModule  # noqa: E402

QUICK = os.environ.get("QUICK") == "1"
OUT = Path(os.environ.get("OUT", "/tmp"))
CUDA = torch.cuda.is_available()  # without one, part A runs on the CPU (a dry run of this script)
R = {"device": torch.cuda.get_device_name() if CUDA else "cpu", "torch": torch.__version__}
print(R, flush=True)


class Batches(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"latent": self.x[i], "label": self.y[i]}


class Record(pl.Callback):
    """The loss and gradient norm of the last step, and the time at the end of each step."""

    def __init__(self):
        self.seen, self.times = {}, []

    def on_train_batch_end(self, tr, pm, outputs, batch, batch_idx):
        if CUDA:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        self.seen["loss"] = float(outputs["loss"])
        self.seen["grad_norm"] = float(tr.callback_metrics.get("train/grad_norm", float("nan")))


def trainer(precision: str, steps: int, tmp: str) -> pl.Trainer:
    return pl.Trainer(
        max_steps=steps,
        accelerator="gpu" if CUDA else "cpu",
        devices=1,
        precision=precision,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=tmp,
    )


# A. the recorded step on the GPU
ref = load_file(str(GEN / "rae" / "train_step.safetensors"))
original = torch.load(GEN / "rae" / "stage2_model.pt", weights_only=True)
cfg = config("rae")
tmp = tempfile.mkdtemp()
dit_from_original(original, cfg).save_pretrained(Path(tmp) / "start")
after = convert_dit_state(
    {k[6:]: v for k, v in ref.items() if k.startswith("model.")}
    | {k: v for k, v in original.items() if "feat_rope" in k},
    cfg,
)
for precision in ("32-true", "bf16-mixed") if CUDA else ("32-true",):
    module = LatentDiffusionModule(
        pretrained=str(Path(tmp) / "start"),
        time_shift_dim=196608,
        warmup_epochs=40,
        decay_end_epoch=800,
        tf32=False,
        log_images_every_n_steps=0,
    )
    module.step_seed = lambda batch_idx: 10
    real_draw = module.draw

    def draw(x1, labels, seed, dropout=True, real=real_draw):  # the CPU stream of the recording, moved
        noise, t, y = real(x1.cpu(), labels.cpu(), seed, dropout=dropout)
        return noise.to(x1.device), t.to(x1.device), y.to(x1.device)

    module.draw = draw
    rec = Record()
    tr = trainer(precision, 1, tmp)
    tr.callbacks.append(rec)
    tr.fit(module, torch.utils.data.DataLoader(Batches(ref["x1"], ref["y"]), batch_size=4))
    R[f"fixture_step_{precision}"] = {
        "loss_err": abs(rec.seen["loss"] - float(ref["loss"])),
        "grad_norm_err": abs(rec.seen["grad_norm"] - float(ref["grad_norm"])),
        "weights_max_err": max(max_err(v.cpu(), after[k]) for k, v in module.model.state_dict().items()),
    }
    print(precision, R[f"fixture_step_{precision}"], flush=True)

# B. full size: steps/s and memory
if CUDA and not QUICK:
    n, batch, steps = 512, 64, 12
    x = torch.randn(n, 768, 16, 16)
    y = torch.randint(0, 1000, (n,))
    for precision in ("32-true", "bf16-mixed"):
        torch.cuda.reset_peak_memory_stats()
        module = LatentDiffusionModule(
            model_name="dit_dh_xl", time_shift_dim=196608, log_images_every_n_steps=0
        )
        rec = Record()
        tr = trainer(precision, steps, tmp)
        tr.callbacks.append(rec)
        tr.fit(
            module,
            torch.utils.data.DataLoader(Batches(x, y), batch_size=batch, shuffle=False, drop_last=True),
        )
        times = rec.times
        per_step = (times[-1] - times[2]) / (len(times) - 3)  # the first steps warm up
        R[f"dit_dh_xl_b{batch}_{precision}"] = {
            "s_per_step": per_step,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
            # RAE: 1400 epochs x 1251 steps of global batch 1024 = 128 per GPU on 8 GPUs (twice this batch)
            "hours_rae_1400_epochs_8gpu": per_step * 2 * 1400 * 1251 / 3600,
        }
        print(precision, R[f"dit_dh_xl_b{batch}_{precision}"], flush=True)
        del module, tr

OUT.mkdir(parents=True, exist_ok=True)
(OUT / "ldm_gpu_check.json").write_text(json.dumps(R, indent=1))
print(json.dumps(R, indent=1))
