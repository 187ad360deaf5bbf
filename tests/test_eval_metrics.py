"""Streamed reconstruction metrics agree with direct torchmetrics / torch-fidelity computations."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from uae.evaluation import metrics as M
from uae.evaluation.metrics import GaussianStats, ReconstructionMetrics, frechet_distance, quantize


def _pairs(photos32: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    noisy = (photos32 + 0.08 * torch.randn(photos32.shape, generator=g)).clamp(0, 1)
    return noisy, photos32


def test_streamed_psnr_ssim_equal_direct_torchmetrics(photos32, empty_hub):
    recon, ref = _pairs(photos32)
    m = ReconstructionMetrics(lpips=False, fid=False, quantize=False)
    for i in range(0, len(ref), 3):  # uneven batches: 3 + 1
        m.update(recon[i : i + 3], ref[i : i + 3])
    res = m.compute()
    per_image_psnr = torch.stack(
        [peak_signal_noise_ratio(recon[i : i + 1], ref[i : i + 1], data_range=1.0) for i in range(len(ref))]
    ).mean()
    ssim = structural_similarity_index_measure(recon, ref, data_range=1.0)
    assert res["num_images"] == len(ref)
    assert res["psnr"] == pytest.approx(float(per_image_psnr), rel=1e-5)
    assert res["ssim"] == pytest.approx(float(ssim), rel=1e-5)
    assert 10 < res["psnr"] < 40 and 0 < res["ssim"] < 1
    # With 8-bit quantisation (default) the numbers are those of the rounded images.
    mq = ReconstructionMetrics(lpips=False, fid=False)
    mq.update(recon, ref)
    rq = mq.compute()
    direct_q = torch.stack(
        [
            peak_signal_noise_ratio(quantize(recon[i : i + 1]), quantize(ref[i : i + 1]), data_range=1.0)
            for i in range(len(ref))
        ]
    ).mean()
    assert rq["psnr"] == pytest.approx(float(direct_q), rel=1e-5)
    assert rq["psnr"] != pytest.approx(res["psnr"], rel=1e-7)


def test_identical_images_give_infinite_psnr_and_unit_ssim(photos32, empty_hub):
    m = ReconstructionMetrics(lpips=False, fid=False)
    m.update(photos32, photos32)
    res = m.compute()
    assert res["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert res["psnr"] > 80 or np.isinf(res["psnr"])


def test_reset_forgets_images_but_keeps_settings(photos32, empty_hub):
    recon, ref = _pairs(photos32)
    m = ReconstructionMetrics(lpips=False, fid=False)
    m.update(photos32, photos32)
    m.reset()
    m.update(recon, ref)
    res = m.compute()
    fresh = ReconstructionMetrics(lpips=False, fid=False)
    fresh.update(recon, ref)
    assert res["num_images"] == len(ref) and res["psnr"] == pytest.approx(fresh.compute()["psnr"], rel=1e-7)
    assert res["unavailable"]["rfid"].startswith("disabled")


def test_shape_mismatch_and_empty_raise(photos32, empty_hub):
    m = ReconstructionMetrics(lpips=False, fid=False)
    with pytest.raises(ValueError, match="differ in shape"):
        m.update(photos32[:, :, :16], photos32)
    with pytest.raises(ValueError, match="no images"):
        m.compute()


def test_gaussian_stats_and_fid_match_torch_fidelity():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 12, generator=g, dtype=torch.float64) @ torch.randn(
        12, 12, generator=g, dtype=torch.float64
    )
    b = a[torch.randperm(300, generator=g)][:250] * 1.3 + 0.5
    sa, sb = GaussianStats(), GaussianStats()
    for i in range(0, 300, 64):
        sa.update(a[i : i + 64])
    for i in range(0, 250, 50):
        sb.update(b[i : i + 50])
    ref_a, ref_b = fid_features_to_statistics(a), fid_features_to_statistics(b)
    np.testing.assert_allclose(sa.statistics()["mu"], ref_a["mu"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sa.statistics()["sigma"], ref_a["sigma"], rtol=1e-8, atol=1e-10)
    expected = fid_statistics_to_metric(ref_a, ref_b, verbose=False)["frechet_inception_distance"]
    assert frechet_distance(sa, sb) == pytest.approx(expected, rel=1e-8)
    assert expected > 1.0
    # Same covariance, shifted mean: FID is exactly the squared shift.
    shift = torch.full((12,), 0.25, dtype=torch.float64)
    sc = GaussianStats()
    sc.update(a + shift)
    assert frechet_distance(sa, sc) == pytest.approx(float(shift @ shift), rel=1e-6, abs=1e-8)


def test_offline_inception_and_lpips_are_reported_unavailable_quickly(photos32, empty_hub):
    start = time.perf_counter()
    m = ReconstructionMetrics()  # lpips + fid requested, nothing cached, offline
    elapsed = time.perf_counter() - start
    recon, ref = _pairs(photos32)
    m.update(recon, ref)
    res = m.compute()
    assert elapsed < 2.0
    assert res["rfid"] is None and res["lpips"] is None
    why = res["unavailable"]["rfid"]
    assert M.INCEPTION_FILE in why and M.INCEPTION_FILE_ALT in why and "inception_weights" in why
    assert str(empty_hub / "checkpoints") in why and "offline" in why
    assert "vgg16-397923af.pth" in res["unavailable"]["lpips"]
    assert res["psnr"] > 0 and res["ssim"] > 0  # the other metrics still ran
    assert "inception-v3-compat" in res["notes"]["rfid"] and "not torchvision" in res["notes"]["rfid"]


def test_missing_explicit_inception_weights_is_a_user_error(tmp_path, empty_hub):
    with pytest.raises(FileNotFoundError, match="inception_weights"):
        ReconstructionMetrics(lpips=False, inception_weights=tmp_path / "nope.pth")


def _random_inception_file(path: Path, monkeypatch) -> Path:
    """A randomly initialised torch-fidelity Inception saved in its expected state-dict format."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with monkeypatch.context() as mp:
        mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
        mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        torch.manual_seed(0)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(net.state_dict(), path)
    return path


def test_full_rfid_path_with_weights_file_matches_direct_torch_fidelity(
    photos32, tmp_path, empty_hub, monkeypatch
):
    """Weights are found in the hub cache under torch-fidelity's file name and loaded by torch-fidelity;
    the streamed rFID equals torch-fidelity's statistics on all features at once. The 299 px Inception
    forward is replaced by a cheap deterministic 64-d feature map to keep the test fast (a random
    Inception's forward and 2048-d eigendecompositions take minutes on a small CPU)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    ckpt = empty_hub / "checkpoints"
    ckpt.mkdir(parents=True)
    _random_inception_file(ckpt / M.INCEPTION_FILE, monkeypatch)
    proj = torch.randn(3 * 4 * 4, 64, generator=torch.Generator().manual_seed(1))
    seen_dtypes = []

    def cheap_forward(self, x):
        seen_dtypes.append(x.dtype)
        pooled = torch.nn.functional.adaptive_avg_pool2d(x.float() / 255.0, 4).flatten(1)
        return (torch.tanh(pooled @ proj),)

    monkeypatch.setattr(FeatureExtractorInceptionV3, "forward", cheap_forward)
    recon, ref = _pairs(photos32)
    recon = torch.cat([recon, recon.flip(-1)])
    ref = torch.cat([ref, ref.flip(-1)])
    m = ReconstructionMetrics(lpips=False)
    assert "rfid" not in m.unavailable
    for i in range(0, len(ref), 3):
        m.update(recon[i : i + 3], ref[i : i + 3])
    res = m.compute()
    assert set(seen_dtypes) == {torch.uint8}
    net = m._inception.net
    fr = fid_features_to_statistics(net(M.to_uint8(ref))[0].double())
    ff = fid_features_to_statistics(net(M.to_uint8(recon))[0].double())
    expected = fid_statistics_to_metric(fr, ff, verbose=False)["frechet_inception_distance"]
    assert res["rfid"] == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert res["rfid"] > 0
    assert abs(frechet_distance(m._real, m._real)) < 1e-3 * res["rfid"]


def test_pickled_code_in_inception_file_is_refused(tmp_path, empty_hub):
    from uae.errors import UnsafeFileError

    bad = tmp_path / "bad.pth"
    torch.save({"x": object()}, bad)
    with pytest.raises(UnsafeFileError, match="bad.pth") as e:  # an error, not a metric quietly skipped
        ReconstructionMetrics(lpips=False, inception_weights=bad)
    assert len(str(e.value).splitlines()) == 1
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    m = ReconstructionMetrics(lpips=False, inception_weights=junk)
    assert "cannot read Inception weights" in m.unavailable["rfid"]


def _state_elements(obj, seen=None) -> int:
    """Tensor elements held by an accumulator: its attributes, lists, dicts and torchmetrics states."""
    from torchmetrics import Metric

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.numel()
    if isinstance(obj, (list, tuple)):
        return sum(_state_elements(v, seen) for v in obj)
    if isinstance(obj, dict):
        return sum(_state_elements(v, seen) for v in obj.values())
    if isinstance(obj, Metric):
        return sum(_state_elements(getattr(obj, k), seen) for k in obj._defaults)
    if hasattr(obj, "__dict__") and not isinstance(obj, torch.nn.Module):
        return sum(_state_elements(v, seen) for v in vars(obj).values())
    return 0


def test_metric_state_does_not_grow_with_the_number_of_images(photos32, empty_hub):
    """torchmetrics' PSNR with ``dim`` kept one tensor per batch (+61 KiB of heap per image measured on
    ``uae eval``); the accumulator must hold running sums only."""
    recon, ref = _pairs(photos32)
    m = ReconstructionMetrics(lpips=False, fid=False)
    m.update(recon, ref)
    after_one = _state_elements(m)
    for _ in range(50):
        m.update(recon, ref)
    assert _state_elements(m) == after_one
    assert m.compute()["num_images"] == 51 * len(ref)


def test_psnr_and_ssim_per_image_equal_torchmetrics_in_float64(photos32):
    from uae.evaluation.metrics import RunningMean, psnr_per_image, ssim_per_image

    recon, ref = _pairs(photos32)
    flat = torch.full_like(ref, 0.4) + 0.01 * ref  # a flat reconstruction: where float32 SSIM cancels
    for a in (recon, flat):
        exact = structural_similarity_index_measure(
            a.double(), ref.double(), data_range=1.0, reduction="none"
        )
        torch.testing.assert_close(ssim_per_image(a, ref).double(), exact, rtol=0, atol=1e-6)
        direct = torch.stack([peak_signal_noise_ratio(a[i], ref[i], data_range=1.0) for i in range(len(a))])
        torch.testing.assert_close(psnr_per_image(a, ref), direct, rtol=1e-6, atol=1e-5)
    mean = RunningMean()
    mean.update(torch.tensor([1.0, 2.0]))
    mean.update(torch.tensor([6.0]))
    assert mean.total.dtype == torch.float64 and mean.compute() == 3.0 and mean.count == 3


@pytest.mark.parametrize("hw", [(6, 6), (7, 40), (33, 12), (64, 64), (129, 20), (150, 140)])
def test_ssim_on_small_large_and_non_square_images_equals_torchmetrics(photos32, hw):
    """The window's matrices fold the reflect padding (down to 6 pixels, where a tap mirrors past the
    border's neighbour) and are built per axis: a non-square image must not mix H and W. Above 128 px the
    CPU uses convolutions instead: the same values."""
    from uae.evaluation.pixel_metrics import (
        _MATRIX_BLUR_MAX_SIDE,
        _gaussian_window,
        _GaussianBlur,
        ssim_per_image,
    )

    g = _gaussian_window(11, 1.5, torch.device("cpu"))
    assert _GaussianBlur(*hw, g).matrices == (max(hw) <= _MATRIX_BLUR_MAX_SIDE)
    ref = torch.nn.functional.interpolate(photos32, size=hw, mode="bilinear", antialias=True).clamp(0, 1)
    recon = (ref + 0.05 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    exact = structural_similarity_index_measure(
        recon.double(), ref.double(), data_range=1.0, reduction="none"
    )
    # float32 per-pixel arithmetic: ~5e-7 at 64 px, ~1.2e-6 at 150 px (either way of applying the window)
    atol = 1e-6 if max(hw) <= 64 else 2e-6
    torch.testing.assert_close(ssim_per_image(recon, ref).double(), exact, rtol=0, atol=atol)
    # One image at a time gives the same values as the chunked batch.
    one = torch.cat([ssim_per_image(recon[i : i + 1], ref[i : i + 1]) for i in range(len(ref))])
    torch.testing.assert_close(ssim_per_image(recon, ref), one, rtol=0, atol=1e-6)


def test_ssim_window_as_matrices_equals_the_convolutions(photos32, monkeypatch):
    """The two ways of applying the window (what non-CPU devices and small images use, and what large
    images on CPU use) give the same blurred maps on the same images."""
    import uae.evaluation.pixel_metrics as metrics

    g = metrics._gaussian_window(11, 1.5, torch.device("cpu"))
    x = torch.rand(2, 5, 37, 50, generator=torch.Generator().manual_seed(1))
    as_matrices = metrics._GaussianBlur(37, 50, g)
    monkeypatch.setattr(metrics, "_MATRIX_BLUR_MAX_SIDE", 16)
    as_convolutions = metrics._GaussianBlur(37, 50, g)
    assert as_matrices.matrices and not as_convolutions.matrices
    torch.testing.assert_close(as_matrices(x), as_convolutions(x), rtol=0, atol=1e-6)


def test_quantize_equals_rounding_through_uint8():
    from uae.evaluation.metrics import quantize, to_uint8

    x = torch.linspace(-0.5, 1.5, 200_001)  # every 8-bit step, its halves and values out of range
    q = quantize(x)
    assert torch.equal(q, to_uint8(x).float() / 255.0)
    assert q.min() == 0 and q.max() == 1 and torch.unique(q).numel() == 256


def test_metrics_ignore_an_enclosing_autocast(photos32):
    """Called from a bf16-mixed step, the metrics still compute in float32 (the window's matrix products
    would otherwise run in bfloat16, ~1e-3 off)."""
    from uae.evaluation.metrics import ReconstructionMetrics, ssim_per_image

    recon, ref = _pairs(photos32)
    plain = ReconstructionMetrics(lpips=False, fid=False)
    plain.update(recon, ref)
    mixed = ReconstructionMetrics(lpips=False, fid=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = ssim_per_image(recon, ref)
        mixed.update(recon, ref)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, ssim_per_image(recon, ref), rtol=0, atol=0)
    assert mixed.compute() == plain.compute()


def test_a_reconstruction_with_nan_pixels_is_reported_not_rounded_away(photos32, caplog):
    """NaN pixels used to become 0 on the way through uint8 (a finite, made-up PSNR); now the image's PSNR
    and SSIM are NaN, and the result says how many reconstructions held NaN."""
    import logging
    import math

    from uae.evaluation.metrics import ReconstructionMetrics

    recon, ref = _pairs(photos32)
    recon = recon.clone()
    recon[1, 0, 3, 3] = float("nan")
    m = ReconstructionMetrics(lpips=False, fid=False)
    with caplog.at_level(logging.WARNING, logger="uae.evaluation.metrics"):
        m.update(recon, ref)
        out = m.compute()
    assert math.isnan(out["psnr"]) and math.isnan(out["ssim"])
    assert out["notes"]["nan"] == f"1 of {len(ref)} reconstructions hold NaN pixels"
    assert "1 of" in caplog.text and "NaN" in caplog.text
    m.reset()
    m.update(ref, ref)
    out = m.compute()
    assert "nan" not in out["notes"] and out["ssim"] == pytest.approx(1.0)


@pytest.mark.parametrize("hw", [(5, 40), (40, 5), (1, 1)])
def test_ssim_of_images_too_small_for_its_window_is_one_clear_error(hw):
    from uae.errors import InputError
    from uae.evaluation.metrics import ssim_per_image

    x = torch.rand(2, 3, *hw)
    with pytest.raises(InputError, match=rf"more than 5 px on each side .*got {hw[0]}x{hw[1]}"):
        ssim_per_image(x, x)


def test_ssim_off_the_cpu_uses_the_matrices_at_every_size():
    """GPUs take the matrix products whatever the side (cuDNN's convolutions would run in TF32 by default);
    the meta device stands in for one here: the dispatch and every shape, without a GPU."""
    from uae.evaluation.pixel_metrics import _gaussian_window, _GaussianBlur, ssim_per_image

    meta = torch.device("meta")
    blur = _GaussianBlur(300, 200, _gaussian_window(11, 1.5, meta))
    assert blur.matrices and blur.along_h.shape == (300, 300) and blur.along_w_t.shape == (200, 200)
    x = torch.empty(5, 3, 300, 200, device=meta)
    out = ssim_per_image(x, x)
    assert out.shape == (5,) and out.device == meta and out.dtype == torch.float32


def test_ssim_window_is_built_once_per_size_and_follows_the_crossover(monkeypatch):
    """A metric update calls SSIM chunk by chunk: the window's operator is built once per image size and
    device, and a change of the matrix/convolution crossover is not hidden by the cache."""
    import uae.evaluation.pixel_metrics as pm

    cpu = torch.device("cpu")

    def blur() -> object:
        return pm._gaussian_blur(37, 50, 11, 1.5, cpu, pm._blur_as_matrices(37, 50, cpu))

    first = blur()
    assert blur() is first and first.matrices
    monkeypatch.setattr(pm, "_MATRIX_BLUR_MAX_SIDE", 16)
    assert not blur().matrices
