"""Smoke test of the benchmark code path (``uae bench``) on the tiny ``uae_test`` config.

These tests check the structure of the JSON / markdown results and that every number is sane
(positive, finite, consistent FLOP counts); they never assert timing thresholds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from uae.bench import timing, train_step
from uae.commands import bench as bench_run

SMOKE_ARGS = [
    "--model", "uae_test", "--device", "cpu", "--batch-size", "2", "--train-batch-size", "1",
    "--repeats", "1", "--warmup", "0", "--piece-repeats", "1",
    "--peers", "rae-equiv,dinov2", "--ablations", "sdpa", "--peak-tflops", "0.1",
]  # fmt: skip


def _positive(v: float) -> bool:
    return isinstance(v, float | int) and math.isfinite(v) and v > 0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    assert bench_run.main([*SMOKE_ARGS, "--out-dir", str(out), "--name", "smoke"]) == 0
    return json.loads((out / "smoke.json").read_text()), (out / "smoke.md").read_text()


def test_json_has_every_section_with_sane_numbers(smoke: tuple[dict, str]) -> None:
    result, _ = smoke
    assert {
        "env",
        "settings",
        "uae",
        "pieces",
        "projector_modulator",
        "train",
        "peers",
        "ratios",
        "targets",
    } <= set(result)
    assert result["env"]["device"] == "cpu" and result["env"]["torch"] == torch.__version__
    s = result["settings"]
    assert (s["model"], s["batch_size"], s["train_batch_size"], s["precision"]) == ("uae_test", 2, 1, "fp32")
    assert (s["resolution"], s["output_size"], s["latent_shape"]) == (32, 32, [32, 8, 8])
    for op in timing.OPS:
        r = result["uae"][op]
        assert r["batch_size"] == 2 and len(r["times_ms"]) == 1
        for key in (
            "images_per_s",
            "images_per_cpu_s",
            "cpu_per_wall",
            "median_ms",
            "peak_mem_mib",
            "gflop_per_image",
            "achieved_tflops",
        ):
            assert _positive(r[key]), (op, key, r[key])
        assert r["images_per_s"] == pytest.approx(2 / (r["median_ms"] / 1e3))
        assert r["peak_mem_mib"] >= r["base_mem_mib"] > 0
        assert r["mem_kind"] in ("cpu_peak_rss", "cpu_ru_maxrss_process_lifetime")
        assert r["flop_utilisation"] == pytest.approx(r["achieved_tflops"] / 0.1)
    for stage in ("stage1", "stage3"):
        assert _positive(result["train"][stage]["images_per_s"]) and result["train"][stage]["batch_size"] == 1


def test_projector_modulator_share_is_a_fraction(smoke: tuple[dict, str]) -> None:
    result, _ = smoke
    pm = result["projector_modulator"]
    assert 0 < pm["share_of_encode_side"] < 1
    assert 0 < pm["share_of_encode_side_cpu_time"] < 1
    total = pm["encoder_ms"] + pm["projector_ms"] + pm["modulator_ms"]
    assert pm["share_of_encode_side"] == pytest.approx((pm["projector_ms"] + pm["modulator_ms"]) / total)
    assert result["pieces"]["band_projector"]["median_ms"] == pm["projector_ms"]


def test_flop_counts_are_consistent(smoke: tuple[dict, str]) -> None:
    result, _ = smoke
    u = result["uae"]
    # reconstruct = encode + fuse + render; decode = split (FFT, not counted) + fuse + render.
    assert u["reconstruct"]["gflop_per_image"] == pytest.approx(
        u["encode"]["gflop_per_image"] + u["decode"]["gflop_per_image"]
    )
    # The bare timm DINOv2 peer has exactly the uae encoder's sizes.
    assert result["peers"]["dinov2"]["encode"]["gflop_per_image"] == pytest.approx(
        u["encode"]["gflop_per_image"]
    )
    # Without the modulator's convs the same encoder + decoder costs strictly fewer FLOPs.
    assert (
        result["peers"]["rae-equiv"]["reconstruct"]["gflop_per_image"] < u["reconstruct"]["gflop_per_image"]
    )


def test_peers_and_ratios(smoke: tuple[dict, str]) -> None:
    result, _ = smoke
    assert set(result["peers"]) == {"rae-equiv", "dinov2"}
    assert set(result["ratios"]["rae-equiv"]) == set(timing.OPS)
    assert set(result["ratios"]["dinov2"]) == {"encode"}
    for peer, ratios in result["ratios"].items():
        for op, ratio in ratios.items():
            assert ratio == pytest.approx(
                result["peers"][peer][op]["images_per_s"] / result["uae"][op]["images_per_s"]
            )
    abl = result["ablations"]["sdpa"]
    assert abl["label"] == "SDPA off" and _positive(abl["ratio_to_main"])
    targets = result["targets"]
    assert len(targets) == 3
    assert all(t["met"] is None for t in targets)  # not the B config, no RAE, not a CUDA bf16 run


def test_markdown_tables(smoke: tuple[dict, str]) -> None:
    result, md = smoke
    assert md.startswith("### uae_test: CPU: ")
    assert "| **uae** |" in md
    for peer in result["peers"].values():
        assert f"| {peer['label']} |" in md
    assert "| **band projector + modulator** |" in md
    assert "| stage1 | 1 |" in md and "| stage3 | 1 |" in md
    assert "| SDPA off |" in md
    assert md.count("| target | measured | met |") == 1
    # every table row has the same number of cells as its header
    for block in md.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        if rows:
            assert len({row.count("|") for row in rows}) == 1, block


def test_bad_arguments_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_run.main(["--model", "uae_test", "--peers", "vqgan", "--out-dir", str(tmp_path)]) == 2
    assert "unknown ['vqgan']" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_peak_memory_sees_an_allocation() -> None:
    with timing.PeakMemory(torch.device("cpu")) as mem:
        x = torch.ones(32 * 2**20 // 4)  # 32 MiB, touched
        del x
    if mem.kind == "cpu_peak_rss":
        assert mem.peak_mib - mem.base_mib >= 30
    else:  # no /proc/self/clear_refs: process-lifetime peak
        assert mem.peak_mib >= 32


def test_known_gpu_peaks() -> None:
    assert timing.peak_tflops_for_name("NVIDIA H100 80GB HBM3") == pytest.approx(989.4)
    assert timing.peak_tflops_for_name("NVIDIA H100 PCIe") == pytest.approx(756.0)
    assert timing.peak_tflops_for_name("NVIDIA H200") == pytest.approx(989.4)
    assert timing.peak_tflops_for_name("NVIDIA A100-SXM4-80GB") == pytest.approx(312.0)
    assert timing.peak_tflops_for_name("NVIDIA A10") == pytest.approx(125.0)
    assert timing.peak_tflops_for_name("NVIDIA L40S") == pytest.approx(362.0)
    assert timing.peak_tflops_for_name("Some Future GPU") is None
    assert timing.known_peak_tflops(torch.device("cpu"), "bf16") is None


def test_sdpa_switch_keeps_outputs(tiny_model: torch.nn.Module, photos32: torch.Tensor) -> None:
    with torch.no_grad():
        ref = tiny_model(photos32).sample
        n = timing.set_sdpa(tiny_model, False)
        assert n == 3  # 2 encoder blocks + 1 decoder block
        assert not any(getattr(m, "fused_attn", False) for m in tiny_model.modules())
        explicit = tiny_model(photos32).sample
    torch.testing.assert_close(explicit, ref, atol=1e-5, rtol=1e-5)


def test_training_step_updates_only_trainable_parts(
    tiny_model: torch.nn.Module, photos32: torch.Tensor
) -> None:
    enc_before = [p.detach().clone() for p in tiny_model.encoder.parameters()]
    dec_before = [p.detach().clone() for p in tiny_model.decoder.parameters()]
    with train_step.training_state(tiny_model):
        step = train_step.train_step_fn(tiny_model, 1, photos32, photos32, torch.device("cpu"), "fp32")
        loss = step()
        assert math.isfinite(loss) and loss > 0
        assert tiny_model.modulator.noise_std == 0.0
    assert not tiny_model.training and tiny_model.modulator.noise_std > 0  # state restored
    assert all(torch.equal(a, b) for a, b in zip(enc_before, tiny_model.encoder.parameters(), strict=True))
    assert any(
        not torch.equal(a, b) for a, b in zip(dec_before, tiny_model.decoder.parameters(), strict=True)
    )
    assert all(p.requires_grad for p in tiny_model.parameters())
