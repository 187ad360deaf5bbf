"""Smoke test of the benchmark code path (``uae bench``) on the tiny ``uae_test`` config.

These tests check the structure of the JSON / markdown results and that every number is sane
(positive, finite, consistent FLOP counts); they never assert timing thresholds. The module's main
fixture measures every subject in this process (``isolate=False``, fast); one test runs the real thing,
each subject in its own process.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest
import torch

import uae
from uae.bench import plan, timing, train_step
from uae.bench.report import to_markdown, write_results
from uae.bench.run import QUICK, BenchSettings, run_benchmark
from uae.commands import bench as bench_run

SMOKE = dict(
    model="uae_test", device="cpu", batch_size=2, train_batch_size=1, repeats=1, warmup=0, piece_repeats=1,
    peers=("rae-equiv", "dinov2"), ablations=("sdpa",), peak_tflops=0.1, isolate=False,
)  # fmt: skip


def _positive(v: float) -> bool:
    return isinstance(v, float | int) and math.isfinite(v) and v > 0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    result = run_benchmark(**SMOKE)
    write_results(result, out, "smoke")
    return json.loads((out / "smoke.json").read_text()), (out / "smoke.md").read_text()


def test_json_has_every_section_with_sane_numbers(smoke: tuple[dict, str]) -> None:
    result, _ = smoke
    assert {
        "env",
        "settings",
        "plan",
        "processes",
        "uae",
        "pieces",
        "projector_modulator",
        "train",
        "peers",
        "ratios",
        "targets",
    } <= set(result)
    assert set(result["processes"]) == {"uae", "rae-equiv", "dinov2", "train1", "train3"}
    for proc in result["processes"].values():
        assert proc["peak_mib"] >= proc["base_mib"] > 0 and proc["wall_s"] >= 0
        assert proc["pid"] == os.getpid()  # isolate=False: all here
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
    # reconstruct = encode + fuse + render; decode = split + fuse + render. uae_test's 8x8 grid is split by
    # one matrix product (BandScheme.MATRIX_MAX_CELLS), counted: 2 * C * HW * (K - 1) * HW FLOPs per image,
    # in encode and in decode but once in reconstruct (a transform's FLOPs would not be counted).
    cfg = uae.create_model("uae_test").config
    cells = (cfg.img_size // cfg.patch_size) ** 2
    split = 2 * cfg.latent_dim * cells * (cfg.num_bands - 1) * cells / 1e9
    assert u["reconstruct"]["gflop_per_image"] == pytest.approx(
        u["encode"]["gflop_per_image"] + u["decode"]["gflop_per_image"] - split
    )
    # The bare timm DINOv2 peer has exactly the uae encoder's sizes (and no band split).
    assert result["peers"]["dinov2"]["encode"]["gflop_per_image"] == pytest.approx(
        u["encode"]["gflop_per_image"] - split
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
    assert "| **uae** |" in md and "peak mem of its process" in md and "isolate=False" in md
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
    assert bench_run.main(["--model", "no_such_model", "--plan"]) == 2
    assert "no_such_model" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_each_subject_runs_in_its_own_process() -> None:
    result = run_benchmark(
        model="uae_test", device="cpu", batch_size=2, repeats=1, warmup=0, piece_repeats=1,
        peers=("rae-equiv",), train=False, flops=False,
    )  # fmt: skip
    pids = {k: p["pid"] for k, p in result["processes"].items()}
    assert set(pids) == {"uae", "rae-equiv"}
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    for proc in result["processes"].values():
        assert proc["peak_mib"] > proc["base_mib"] > 0
    assert result["settings"]["isolated"] is True
    assert "each model measured alone in a fresh process" in to_markdown(result)


def test_a_missing_peer_library_is_skipped_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from uae.bench import subjects

    def no_diffusers(*args: object, **kwargs: object) -> None:
        raise ModuleNotFoundError("No module named 'diffusers'")

    monkeypatch.setattr(subjects, "build_sd_vae", no_diffusers)
    result = run_benchmark(**{**SMOKE, "peers": ("sd-vae", "rae"), "train": False, "ablations": ()})
    assert "diffusers" in result["peers"]["sd-vae"]["skipped"]
    rae_reason = result["peers"]["rae"]["skipped"]
    if importlib.util.find_spec("diffusers") is not None:
        assert "heads" in rae_reason  # uae_test has no AutoencoderRAE counterpart
    else:  # diffusers is a dev extra: without it the RAE peer is skipped for that
        assert "diffusers" in rae_reason
    assert result["ratios"] == {}
    md = to_markdown(result)
    assert "| SD-VAE (diffusers AutoencoderKL, random init) | skipped: ModuleNotFoundError" in md


def test_quick_and_explicit_options(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[BenchSettings] = []
    monkeypatch.setattr("uae.bench.run.describe_run", lambda s: seen.append(s) or "PLAN")
    assert bench_run.main(["--quick", "--plan"]) == 0
    assert capsys.readouterr().out.strip() == "PLAN"
    q = seen[-1]
    assert (q.model, q.repeats, q.warmup, q.train, q.peers, q.threads) == (
        QUICK["model"], 3, 1, False, QUICK["peers"], 1,
    )  # fmt: skip
    assert (
        bench_run.main(["--quick", "--model", "uae_test", "--repeats", "7", "--peers", "all", "--plan"]) == 0
    )
    q = seen[-1]
    assert (q.model, q.repeats, q.warmup, q.peers) == ("uae_test", 7, 1, tuple(timing.PEERS))
    assert bench_run.main(["--plan"]) == 0
    full = seen[-1]
    assert (full.model, full.repeats, full.warmup, full.train, full.peers) == (
        timing.B_CONFIG, 5, 2, True, tuple(timing.PEERS),
    )  # fmt: skip


def test_plan_says_how_long_and_how_much_memory() -> None:
    from uae.models.registry import get_config

    cfg = get_config("uae_base_p14_dinov2")
    settings = BenchSettings(model=cfg.name, device="cpu", repeats=3, warmup=1).resolved(torch.device("cpu"))
    steps = plan.make_plan(settings, cfg, torch.device("cpu"), gflops=80.0)
    assert [s.subject for s in steps] == ["uae", *timing.PEERS, "train1", "train3"]
    costs = plan.model_costs(cfg, 224)
    params = costs["encoder_params"] + costs["decoder_params"] + costs["modulator_params"]
    assert 480e6 < params < 530e6  # 503.3 M measured
    assert 40e9 < costs["encode_flops"] < 50e9 and 200e9 < costs["decode_flops"] < 230e9  # 44.6 / 214.4
    uae, train1 = steps[0], steps[-2]
    assert train1.peak_mib > uae.peak_mib + 12 * (params - costs["encoder_params"]) / 2**20 * 0.9
    assert all(s.seconds > plan.PROCESS_START_S for s in steps)
    text = plan.describe_plan(steps, torch.device("cpu"), 80.0)
    assert text.startswith(f"uae bench: {len(steps)} processes") and "min" in text and "GiB" in text
    assert text.count("\n") == len(steps)


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


def test_startup_import_breakdown_and_markdown() -> None:
    from uae.bench import startup

    base = "import time:      1000 |       1500 |   numpy\nimport time:     20000 |      21500 | torch\n"
    cmd = base + (
        "import time:      3000 |       3000 |     huggingface_hub.hf_api\n"
        "import time:      1000 |       4000 |   huggingface_hub\n"
        "import time:      2000 |       2000 |   matplotlib.figure\n"
        "import time:       500 |       6500 | uae.models\n"
    )
    b = startup.import_breakdown(startup.import_times(cmd), startup.import_times(base))
    assert b["top"][0] == ("huggingface_hub", 0.004) and dict(b["top"])["matplotlib"] == 0.002
    assert "torch" not in dict(b["top"]) and b["beyond_baseline_s"] == pytest.approx(0.0065, abs=1e-3)
    assert b["imported"]["matplotlib"] is False  # only the exact module names count: matplotlib.figure is not
    row = {"command": startup.BASELINE, "median_s": 1.5, "ratio": 1.0, "ratio_min": 1.0, "ratio_max": 1.0}
    rows = [
        {**row, "met": True, "imports": startup.import_breakdown(startup.import_times(base))},
        {
            **row,
            "command": "uae reconstruct IMG --out DIR",
            "ratio": 1.4,
            "ratio_max": 1.6,
            "met": False,
            "imports": b,
        },
    ]
    md = startup.startup_markdown(
        {"repeats": 3, "rows": [], "model": {"rows": rows, "rounds": [{}] * 3, "target_ratio": 1.3}}
    )
    assert (
        "| `uae reconstruct IMG --out DIR` | 1.50 | 1.40 (1.00-1.60) | **no** | 0.01; huggingface_hub" in md
    )
    cmds = startup.model_commands("x.png", "out")
    assert list(cmds)[0] == startup.BASELINE and cmds["uae reconstruct IMG --out DIR"][-3:] == [
        "x.png",
        "--out",
        "out",
    ]
