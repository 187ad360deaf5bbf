"""The training-step benchmark (``uae.bench.train_step``): uae's stage-2 step against the authors'-style loop."""

from __future__ import annotations

import torch

from uae.bench.train_step import PHASES, authors_style_step, compare_training_step, comparison_markdown
from uae.training.optim import adamw


def test_compare_training_step_times_every_phase_of_both_sides():
    result = compare_training_step("uae_test", batch_size=2, rounds=2, steps=3, threads=1)
    assert result["steps"] == {"uae": 4, "authors": 4}  # 2 rounds x (3 steps - 1 warm-up) per side
    for side in ("uae", "authors"):
        for phase in (*PHASES, "total"):
            assert result[side][phase] > 0 and result["wall"][side][phase] > 0, (side, phase)
        assert result[side]["total"] >= max(result[side][p] for p in PHASES)
    assert result["ratio"]["total"] == result["uae"]["total"] / result["authors"]["total"]
    table = comparison_markdown(result)
    assert table.count("\n") == 5 and "| total |" in table


def test_authors_style_step_trains_the_model(tiny_model):
    from uae.training.stage2_semantic import build_teacher

    model = tiny_model.train()
    teacher = build_teacher(model, pretrained=True)
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=1e-3)
    x = torch.rand(2, 3, model.config.img_size, model.config.img_size)
    target = torch.rand(2, 3, model.config.output_size, model.config.output_size)
    phases = authors_style_step(model, teacher, opt, x, target)
    assert set(phases) == {*PHASES, *(f"{p}_cpu" for p in PHASES)}
    assert any(not torch.equal(a, p) for a, p in zip(before, params))
    assert all(p.grad is None for p in params)  # zero_grad(set_to_none=True)


def test_uae_adamw_uses_the_fused_kernel_on_cpu(tiny_model):
    opt = adamw(tiny_model, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0)
    assert opt.defaults["fused"] is True
    opt = adamw(tiny_model, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0, fused=False)
    assert opt.defaults["foreach"] is True and not opt.defaults["fused"]


def test_the_comparison_records_which_adamw_each_side_ran():
    result = compare_training_step("uae_test", batch_size=1, rounds=1, steps=2, threads=1)
    assert result["config"]["optimizer"] == {"uae": "AdamW (fused)", "authors": "AdamW (for-loop)"}
