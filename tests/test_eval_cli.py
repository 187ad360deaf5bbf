"""End-to-end runs of ``uae eval | probe | spectrum | filtered-eval | encode`` on a tiny saved model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from uae.cli import main
from uae.commands import encode as encode_cmd
from uae.commands import eval as eval_cmd
from uae.commands import filtered_eval as filtered_cmd
from uae.commands import probe as probe_cmd
from uae.commands import spectrum as spectrum_cmd
from uae.evaluation.common import build_dataset
from uae.evaluation.metrics import quantize


@pytest.fixture
def model_dir(tiny_model, tmp_path) -> Path:
    path = tmp_path / "tiny_uae"
    tiny_model.save_pretrained(path)
    return path


COMMON = ["--num-workers", "0", "--no-progress", "--batch-size", "3"]


def test_eval_writes_json_and_table_matching_direct_torchmetrics(
    model_dir, image_folder, tmp_path, empty_hub, capsys
):
    out = tmp_path / "res" / "eval.json"
    assert (
        eval_cmd.main(["--model", str(model_dir), "--data", str(image_folder), "--output", str(out), *COMMON])
        == 0
    )
    res = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert (
        "PSNR" in printed
        and f"{res['psnr']:.4f}" in printed
        and "weights-inception-2015-12-05-6726825d.pth" in printed
    )
    assert res["num_images"] == 8 and res["eval_size"] == 32
    assert res["rfid"] is None and "--inception-weights" in res["unavailable"]["rfid"]
    assert res["lpips"] is None and "offline" in res["unavailable"]["lpips"]
    assert "inception-v3-compat" in res["notes"]["rfid"]
    # Direct computation on the same images with torchmetrics.
    from uae import UAE

    model = UAE.from_pretrained(model_dir)
    ds = build_dataset(image_folder, 32)
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    with torch.no_grad():
        y = model(x).sample
    xq, yq = quantize(x), quantize(y)
    psnr = torch.stack(
        [peak_signal_noise_ratio(yq[i : i + 1], xq[i : i + 1], data_range=1.0) for i in range(len(x))]
    ).mean()
    assert res["psnr"] == pytest.approx(float(psnr), rel=1e-5)
    # In float64: torchmetrics' float32 SSIM is itself ~1e-5 off on these flat reconstructions (uae's is 1e-7).
    assert res["ssim"] == pytest.approx(
        float(structural_similarity_index_measure(yq.double(), xq.double(), data_range=1.0)), rel=1e-6
    )


def test_eval_with_limit_and_larger_eval_size(model_dir, image_folder, tmp_path, empty_hub):
    out = tmp_path / "e.json"
    assert (
        eval_cmd.main(
            [
                "--model",
                str(model_dir),
                "--data",
                str(image_folder),
                "--limit",
                "5",
                "--size",
                "64",
                "--no-fid",
                "--no-lpips",
                "--output",
                str(out),
                *COMMON,
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert (
        res["num_images"] == 5
        and res["eval_size"] == 64
        and res["unavailable"]["rfid"].startswith("disabled")
    )


def test_cli_user_errors_are_one_line(model_dir, image_folder, tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path / "missing"), "--data", str(image_folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("uae eval: error:") and "\n" not in err
    assert main(["eval", "--model", str(model_dir), "--data", "imagenet-val"]) == 2
    assert "--data-root" in capsys.readouterr().err
    assert (
        main(
            [
                "encode",
                "--model",
                str(model_dir),
                "--data",
                str(tmp_path / "nope"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "not a folder" in capsys.readouterr().err


def test_named_dataset_resolution(model_dir, image_folder, tmp_path, empty_hub):
    root = tmp_path / "coco"
    root.mkdir()
    (root / "val2017").symlink_to(image_folder / "a")
    out = tmp_path / "coco.json"
    assert (
        eval_cmd.main(
            [
                "--model",
                str(model_dir),
                "--data",
                "coco-val",
                "--data-root",
                str(root),
                "--no-fid",
                "--no-lpips",
                "--output",
                str(out),
                *COMMON,
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["num_images"] == 4


def test_probe_cli_caches_features_and_reports_bands(model_dir, image_folder, tmp_path, capsys):
    out = tmp_path / "probe" / "p.json"
    args = [
        "--model",
        str(model_dir),
        "--data",
        str(image_folder),
        "--val-fraction",
        "0.25",
        "--band",
        "0",
        "all",
        "--epochs",
        "3",
        "--output",
        str(out),
        *COMMON,
    ]
    assert probe_cmd.main(args) == 0
    res = json.loads(out.read_text())
    assert set(res["bands"]) == {"0", "all"} and res["classes"] == ["a", "b"]
    assert res["bands"]["all"]["feature_dim"] == 3 * 32 and res["bands"]["0"]["num_val"] == 2
    cached = sorted(p.name for p in (tmp_path / "probe" / "features").glob("*.safetensors"))
    assert len(cached) == 4  # (train, val) x 2 bands
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "probe" / "features").glob("*.safetensors")}
    assert probe_cmd.main(args) == 0  # second run reads the cache
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert "top1 %" in capsys.readouterr().out


def test_spectrum_cli_writes_csv_png_json(model_dir, image_folder, tmp_path):
    out = tmp_path / "spec"
    assert (
        spectrum_cmd.main(
            ["--model", str(model_dir), "--data", str(image_folder), "--out-dir", str(out), *COMMON]
        )
        == 0
    )
    res = json.loads((out / "spectrum.json").read_text())
    assert sum(res["encoders"][0]["band_share"]) == pytest.approx(1.0, abs=1e-6)
    assert (
        (out / "spectrum.png").stat().st_size > 5000
        and (out / "spectrum.csv").is_file()
        and (out / "band_energy.csv").is_file()
    )


def test_spectrum_cli_with_autoencoderkl(model_dir, image_folder, tmp_path):
    diffusers = pytest.importorskip("diffusers")
    vae = diffusers.AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=32,
    )
    vae.save_pretrained(tmp_path / "vae")
    out = tmp_path / "spec"
    assert (
        spectrum_cmd.main(
            [
                "--model",
                str(model_dir),
                "--data",
                str(image_folder),
                "--out-dir",
                str(out),
                "--encoders",
                "uae",
                "vae",
                "--vae",
                str(tmp_path / "vae"),
                "--vae-size",
                "32",
                *COMMON,
            ]
        )
        == 0
    )
    res = json.loads((out / "spectrum.json").read_text())
    vae_res = res["encoders"][1]
    assert vae_res["latent_shape"] == [4, 16, 16] and sum(vae_res["band_share"]) == pytest.approx(
        1.0, abs=1e-6
    )


def test_filtered_eval_cli(model_dir, image_folder, tmp_path, empty_hub, capsys):
    out = tmp_path / "f.json"
    assert (
        filtered_cmd.main(
            [
                "--model",
                str(model_dir),
                "--data",
                str(image_folder),
                "--radius",
                "0.25",
                "--epochs",
                "2",
                "--val-fraction",
                "0.25",
                "--output",
                str(out),
                *COMMON,
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert list(res["variants"]) == ["original", "lfc@0.25", "hfc@0.25"]
    for v in res["variants"].values():
        assert 0 <= v["top1"] <= 1 and v["psnr"] > 0 and 0 < v["ssim"] <= 1 and v["rfid"] is None
    assert res["variants"]["original"]["top1"] == res["probe"]["top1"]
    assert res["variants"]["lfc@0.25"]["psnr"] != res["variants"]["original"]["psnr"]
    assert "lfc@0.25" in capsys.readouterr().out


def test_encode_cli_exports_and_resumes(model_dir, image_folder, tmp_path, capsys):
    from uae.evaluation.shards import verify_export

    out = tmp_path / "lat"
    args = [
        "--model",
        str(model_dir),
        "--data",
        str(image_folder),
        "--out",
        str(out),
        "--shard-size",
        "5",
        "--what",
        "bands",
        "latent",
        *COMMON,
    ]
    assert encode_cmd.main(args) == 0
    index = verify_export(out)
    assert index["complete"] and index["num_shards"] == 2 and index["shapes"]["bands"] == [3, 32, 8, 8]
    assert len(index["stats"]["latent"]["mean"]) == 32
    before = (out / "shard-00000.safetensors").stat().st_mtime_ns
    assert encode_cmd.main(args) == 0  # nothing left to do
    assert (out / "shard-00000.safetensors").stat().st_mtime_ns == before
    assert "2/2 shards" in capsys.readouterr().out


def test_library_entry_points_run_without_the_command_line(tiny_model, image_folder):
    """What the commands call, from a notebook: a model object, a folder, keyword arguments."""
    from uae.errors import InputError
    from uae.evaluation.filtered import filtered_evaluation
    from uae.evaluation.options import RunOptions
    from uae.evaluation.reconstruction import evaluate_dataset

    opts = RunOptions(batch_size=4, progress=False)
    plain = {"lpips": False, "fid": False}
    res = evaluate_dataset(tiny_model, str(image_folder), metrics=plain, options=opts)
    assert res["num_images"] == 8 and res["eval_size"] == 32 and res["data_path"] == str(image_folder)
    out = filtered_evaluation(
        tiny_model, str(image_folder), radii=[0.5], with_probe=False, metrics=plain, options=opts
    )
    assert list(out["variants"]) == ["original", "lfc@0.5", "hfc@0.5"] and "probe" not in out
    assert out["variants"]["original"]["psnr"] == pytest.approx(res["psnr"], rel=1e-6)
    with pytest.raises(InputError, match="nothing to evaluate"):
        filtered_evaluation(tiny_model, str(image_folder), with_probe=False, with_reconstruction=False)
    with pytest.raises(InputError, match="batch_size") as e:
        RunOptions(batch_size=0)
    assert e.value.param == "batch_size"


def test_metrics_in_the_background_thread_equal_inline_and_raise_its_errors(tiny_model, image_folder):
    from uae.evaluation.common import make_loader
    from uae.evaluation.metrics import ReconstructionMetrics
    from uae.evaluation.reconstruction import BackgroundUpdates, evaluate_reconstruction

    ds = build_dataset(image_folder, 32)

    def run(background: bool, metrics=None):
        m = metrics or ReconstructionMetrics(lpips=False, fid=False)
        loader = make_loader(ds, 3)
        return evaluate_reconstruction(tiny_model, loader, m, 32, progress=False, background=background)

    inline, threaded = run(False), run(True)
    assert threaded["num_images"] == inline["num_images"] == 8
    assert (threaded["psnr"], threaded["ssim"]) == (inline["psnr"], inline["ssim"])

    class Broken(ReconstructionMetrics):
        def update(self, recon, ref):
            raise RuntimeError("metric failed")

    with pytest.raises(RuntimeError, match="metric failed"):
        run(True, Broken(lpips=False, fid=False))
    seen = []
    worker = BackgroundUpdates(lambda a: seen.append(a), depth=1)
    for i in range(5):
        worker.put(i)
    worker.close()
    assert seen == [0, 1, 2, 3, 4] and not worker._thread.is_alive()


def test_eval_counts_each_image_once_in_a_folder_with_a_symlink_loop(
    model_dir, image_folder, tmp_path, empty_hub
):
    (image_folder / "a" / "loop").symlink_to("..", target_is_directory=True)
    out = tmp_path / "e.json"
    argv = ["--model", str(model_dir), "--data", str(image_folder), "--output", str(out), "--no-lpips"]
    assert eval_cmd.main([*argv, "--no-fid", *COMMON]) == 0
    assert json.loads(out.read_text())["num_images"] == 8  # was 328


def test_no_draft_and_worker_niceness_flags_reach_the_run_options(image_folder):
    from uae.commands._options import run_options

    for cmd in (eval_cmd, encode_cmd, probe_cmd, filtered_cmd):
        argv = ["--model", "m", "--data", str(image_folder)] + (["--out", "x"] if cmd is encode_cmd else [])
        assert run_options(cmd.build_parser().parse_args(argv)).draft is True
        assert run_options(cmd.build_parser().parse_args([*argv, "--no-draft"])).draft is False
        assert run_options(cmd.build_parser().parse_args(argv)).worker_niceness == 10
        niceness = ["--worker-niceness", "0"]
        assert run_options(cmd.build_parser().parse_args([*argv, *niceness])).worker_niceness == 0
    from uae.evaluation.common import open_dataset
    from uae.evaluation.options import RunOptions

    assert open_dataset(str(image_folder), 32, options=RunOptions(draft=False))[0].draft is False
    assert open_dataset(str(image_folder), 32, options=RunOptions())[0].draft is True


@pytest.mark.parametrize("out_size", [None, 40])
def test_uint8_transport_gives_the_same_batches_as_float_transport(image_folder: Path, out_size) -> None:
    """The runners' datasets send uint8 pixels; batch_images scales them into exactly the floats the
    workers used to send (input and reference, with and without a separate reference size)."""
    from uae.evaluation.common import batch_images, make_loader

    got = {}
    for uint8 in (False, True):
        ds = build_dataset(image_folder, 32, out_size=out_size, uint8=uint8)
        batches = list(make_loader(ds, 3, num_workers=0))
        assert batches[0]["image"].dtype == (torch.uint8 if uint8 else torch.float32)
        pairs = [batch_images(b, torch.device("cpu")) for b in batches]
        got[uint8] = (torch.cat([x for x, _ in pairs]), torch.cat([r for _, r in pairs]))
    assert got[True][0].dtype == got[True][1].dtype == torch.float32
    assert got[True][1].shape[-1] == (out_size or 32)
    assert torch.equal(got[True][0], got[False][0]) and torch.equal(got[True][1], got[False][1])


def test_uint8_transport_only_where_the_pipeline_ends_in_plain_pixels(image_folder: Path) -> None:
    import uae
    from uae.data import resolve_data_config

    def first(preprocess: str, **args) -> torch.Tensor:
        cfg = uae.get_config("uae_test").replace(preprocess=preprocess)
        data_config = resolve_data_config(cfg, args={"img_size": 32, "target_size": 32, **args})
        return build_dataset(image_folder, 32, data_config=data_config, uint8=True)[0]["image"]

    assert first("uae").dtype == torch.uint8
    # normalised in the workers, or a release's torch resize: floats
    assert first("uae", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)).dtype == torch.float32
    assert first("adm", resize_size=32).dtype == torch.float32
    assert build_dataset(image_folder, 32, train=True, uint8=True)[0]["image"].dtype == torch.float32


def test_default_loader_workers_follow_the_device_cores_and_processes(image_folder, monkeypatch):
    """A GPU gets a worker per core but one (at most 16, shared by torchrun's processes); the CPU at most 4;
    an explicit --num-workers is kept."""
    import uae.evaluation.options as options
    from uae.commands._options import run_options
    from uae.evaluation.options import default_num_workers

    assert default_num_workers("cuda", cores=16, processes=1) == 15
    assert default_num_workers("cuda", cores=64, processes=1) == options.MAX_DEFAULT_WORKERS
    assert default_num_workers("cuda", cores=64, processes=8) == 7
    assert default_num_workers("cuda", cores=2, processes=4) == 1
    assert default_num_workers("cpu", cores=2, processes=1) == 2
    assert default_num_workers("cpu", cores=32, processes=1) == 4
    assert default_num_workers("cpu", cores=32, processes=16) == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert default_num_workers("cuda", cores=16) == 7
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "not a number")
    assert default_num_workers("cuda", cores=16) == 15
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setattr(options, "available_cpus", lambda: 12)
    for cmd in (eval_cmd, encode_cmd, probe_cmd, filtered_cmd):
        argv = ["--model", "m", "--data", str(image_folder), "--device", "cpu"]
        argv += ["--out", "x"] if cmd is encode_cmd else []
        assert run_options(cmd.build_parser().parse_args(argv)).num_workers == 4
        assert run_options(cmd.build_parser().parse_args([*argv, "--num-workers", "0"])).num_workers == 0
