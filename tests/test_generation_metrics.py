"""``uae eval-gen``: FID / IS / precision-recall of sample folders against image folders or ADM-style ``.npz``
references, through torch-fidelity's functions. As in test_eval_metrics.py, the Inception weights file is a
random network in torch-fidelity's format (found in the torch hub cache by its standard name) and the 299 px
forward is replaced by a cheap deterministic feature map, so the tests check everything but Inception's
arithmetic in well under a second each."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_eval_metrics import _random_inception_file

import uae
from uae.cli import main as cli_main
from uae.errors import InputError, MissingFileError
from uae.evaluation import metrics as M
from uae.generation.metrics import FEATURE_NOTE, evaluate_samples, read_reference_npz
from uae.generation.pipeline import GenerationPipeline
from uae.generation.sample_folder import sample_name, write_sample_folder

PROJ = torch.randn(3 * 4 * 4, 24, generator=torch.Generator().manual_seed(1))
LOGIT = torch.randn(3 * 4 * 4, 12, generator=torch.Generator().manual_seed(2))


def cheap_forward(self, x):
    """Stand-in for the Inception forward: uint8 images -> (pool features, logits)."""
    assert x.dtype == torch.uint8
    pooled = torch.nn.functional.adaptive_avg_pool2d(x.float() / 255.0, 4).flatten(1)
    return torch.tanh(pooled @ PROJ), 4 * pooled @ LOGIT


@pytest.fixture
def inception(empty_hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    (empty_hub / "checkpoints").mkdir(parents=True)
    _random_inception_file(empty_hub / "checkpoints" / M.INCEPTION_FILE, monkeypatch)
    monkeypatch.setattr(FeatureExtractorInceptionV3, "forward", cheap_forward)


@pytest.fixture(scope="module")
def sample_folder(tmp_path_factory) -> Path:
    """20 tiny samples (10 classes, 2 each) written by write_sample_folder."""
    root = tmp_path_factory.mktemp("samples")
    torch.manual_seed(0)
    pipe = GenerationPipeline(uae.create_model("uae_test"), uae.create_model("dit_dh_test").eval())
    write_sample_folder(pipe, root, num_samples=20, batch_size=10, steps=2, progress=False)
    return root


def _uint8(files: list[Path], size: int) -> torch.Tensor:
    from uae.data import image_transform, read_image

    tf = image_transform(size)
    return (torch.stack([tf(read_image(f)) for f in files]) * 255).round().to(torch.uint8)


def test_identical_sets_give_zero_fid_and_full_precision_recall(inception, image_folder: Path) -> None:
    res = evaluate_samples(image_folder, image_folder, batch_size=3, progress=False)
    assert res["num_samples"] == res["num_reference"] == 8
    assert abs(res["fid"]) < 1e-6 and res["precision"] == 1.0 and res["recall"] == 1.0
    assert res["unavailable"] == {"is": "IS needs at least 10 samples (10 splits)"} and res["is"] is None
    assert res["notes"] == FEATURE_NOTE and "inception-v3-compat" in FEATURE_NOTE and "k=3" in FEATURE_NOTE


def test_metrics_equal_torch_fidelitys_on_the_same_features(
    inception, sample_folder: Path, image_folder: Path
) -> None:
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    res = evaluate_samples(sample_folder, image_folder, batch_size=7, progress=False)
    fake_f, fake_l = cheap_forward(None, _uint8([sample_folder / sample_name(i, 20) for i in range(20)], 32))
    from uae.data import find_images

    real_f, _ = cheap_forward(
        None, _uint8(sorted(find_images(image_folder)), 32)
    )  # centre crop + resize to 32
    fid = fid_statistics_to_metric(
        fid_features_to_statistics(real_f.double()),
        fid_features_to_statistics(fake_f.double()),
        verbose=False,
    )["frechet_inception_distance"]
    assert res["fid"] == pytest.approx(fid, rel=1e-6) and res["fid"] > 0.01
    isc = isc_features_to_metric(fake_l.double(), splits=10)
    assert res["is"] == pytest.approx(isc["inception_score_mean"], rel=1e-9) and res["is"] > 1
    prc = prc_features_to_metric(
        fake_f, real_f, prc_neighborhood=3, prc_batch_size=10000, save_cpu_ram=False, verbose=False
    )
    assert (res["precision"], res["recall"]) == (prc["precision"], prc["recall"])
    # a sample folder reports its class balance (label_sampling equal: 20 images over 10 classes)
    info = res["samples_info"]
    assert info["images_per_class"] == {"min": 2, "max": 2, "classes": 10}
    assert info["manifest"]["label_sampling"] == "equal"
    assert (
        evaluate_samples(sample_folder, image_folder, num_samples=10, metrics=["is"], progress=False)[
            "num_samples"
        ]
        == 10
    )


def test_adm_npz_references(inception, sample_folder: Path, image_folder: Path, tmp_path: Path) -> None:
    """arr_0 images give the folder's numbers; mu/sigma give the same FID and no precision/recall."""
    from uae.data import find_images

    folder = evaluate_samples(sample_folder, image_folder, progress=False)
    imgs = _uint8(sorted(find_images(image_folder)), 32).permute(0, 2, 3, 1).numpy()
    np.savez(tmp_path / "ref_images.npz", arr_0=imgs)
    with_images = evaluate_samples(sample_folder, tmp_path / "ref_images.npz", progress=False)
    for k in ("fid", "is", "precision", "recall"):
        assert with_images[k] == pytest.approx(folder[k], rel=1e-9), k
    np.save(tmp_path / "ref_images.npy", imgs)  # a pack (uae pack) of the reference images
    packed = evaluate_samples(sample_folder, tmp_path / "ref_images.npy", progress=False)
    for k in ("fid", "is", "precision", "recall"):
        assert packed[k] == pytest.approx(folder[k], rel=1e-9), k
    from torch_fidelity.metric_fid import fid_features_to_statistics

    stats = fid_features_to_statistics(
        cheap_forward(None, torch.from_numpy(imgs).permute(0, 3, 1, 2))[0].double()
    )
    np.savez(tmp_path / "ref_stats.npz", mu=stats["mu"], sigma=stats["sigma"])
    stats_only = evaluate_samples(sample_folder, tmp_path / "ref_stats.npz", progress=False)
    assert stats_only["fid"] == pytest.approx(folder["fid"], rel=1e-6)
    assert stats_only["precision"] is None and "reference images" in stats_only["unavailable"]["pr"]
    assert stats_only["reference_statistics"] == "npz mu/sigma"
    np.savez(tmp_path / "bad.npz", images=imgs)
    with pytest.raises(ValueError, match="neither 'mu' and 'sigma' nor 'arr_0'"):
        read_reference_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "float.npz", arr_0=imgs.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        read_reference_npz(tmp_path / "float.npz")


def test_incomplete_sample_folder_is_refused(
    inception, sample_folder: Path, image_folder: Path, tmp_path: Path
) -> None:
    import shutil

    part = tmp_path / "part"
    shutil.copytree(sample_folder, part)
    (part / sample_name(13, 20)).unlink()
    with pytest.raises(MissingFileError, match="misses 1 of its 20 images \\(first: 000013.png\\); re-run"):
        evaluate_samples(part, image_folder, progress=False)
    assert evaluate_samples(part, image_folder, num_samples=13, metrics=["fid"], progress=False)["fid"] > 0
    with pytest.raises(InputError, match="num_samples 30 exceeds the 20 images"):
        evaluate_samples(part, image_folder, num_samples=30, progress=False)
    with pytest.raises(InputError, match="metrics must be some of"):
        evaluate_samples(part, image_folder, metrics=["kid"], progress=False)
    with pytest.raises(MissingFileError, match="reference"):
        evaluate_samples(part, tmp_path / "nope.npz", progress=False)


def test_without_inception_weights_offline_every_metric_says_why(empty_hub: Path, image_folder: Path) -> None:
    t = time.perf_counter()
    res = evaluate_samples(image_folder, image_folder, progress=False)
    assert time.perf_counter() - t < 2.0
    assert res["fid"] is None and set(res["unavailable"]) == {"fid", "is", "pr"}
    assert M.INCEPTION_FILE in res["unavailable"]["fid"] and "offline" in res["unavailable"]["fid"]


def test_eval_gen_command_generates_then_evaluates(
    inception, image_folder: Path, tmp_path: Path, capsys
) -> None:
    torch.manual_seed(0)
    uae.create_model("dit_dh_test").save_pretrained(tmp_path / "g")
    uae.create_model("uae_test").save_pretrained(tmp_path / "t")
    samples = tmp_path / "samples"
    argv = [
        "eval-gen",
        "--samples",
        str(samples),
        "--reference",
        str(image_folder),
        "--model",
        str(tmp_path / "g"),
    ]
    argv += ["--tokenizer", str(tmp_path / "t"), "--num-samples", "10", "--steps", "2", "--batch-size", "5"]
    argv += ["--device", "cpu", "--no-progress"]
    assert cli_main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "FID" in out and "precision" in out and "10 samples, 1-1 per class" in out
    res = json.loads((samples / "eval_gen.json").read_text())
    assert res["num_samples"] == 10 and res["fid"] > 0 and res["is"] is not None
    assert len(list(samples.glob("0*.png"))) == 10
    # the folder is complete: a second run writes nothing and gives the same numbers
    assert cli_main(argv) == 0
    assert json.loads((samples / "eval_gen.json").read_text())["fid"] == res["fid"]
    assert (
        cli_main(
            argv[:5] + ["--model", str(tmp_path / "g"), "--tokenizer", str(tmp_path / "t"), "--device", "cpu"]
        )
        == 2
    )
    assert "--model needs --num-samples" in capsys.readouterr().err
