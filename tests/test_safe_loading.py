"""No pickle runs: every weights file uae hands to a library is read by uae with ``weights_only=True`` first.

Each test plants a payload (a pickle whose ``__reduce__`` would create a marker file) where a path reads
it, and checks that the marker is never created and the error is one line (:class:`UnsafeFileError`).
Paths: the LPIPS backbone (an explicit file and ``$TORCH_HOME/hub/checkpoints/<torchvision name>``, for
the training loss and the metric), the FID Inception (explicit and cached, reconstruction and generation
metrics), the DINO discriminator backbone, and DINOv2 encoder / teacher files.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from uae.cli import main as cli_main
from uae.errors import UnsafeFileError


class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path) -> Path:
    """A torch file that looks like a state dict and carries the payload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"features.0.weight": torch.zeros(2), "meta": Payload(marker)}, path)
    return path


def refused(error: pytest.ExceptionInfo, marker: Path, path: Path) -> None:
    text = str(error.value)
    assert not marker.exists(), "the payload ran"
    assert len(text.splitlines()) == 1 and str(path) in text and "weights_only" in text, text


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PWNED"


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$TORCH_HOME`` in ``tmp_path``, offline (nothing may be downloaded)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "torch_home" / "hub" / "checkpoints"


# ---------------------------------------------------------------------------------------------- LPIPS
@pytest.mark.parametrize("net", ["vgg", "alex", "squeeze"])
def test_lpips_backbone_in_the_torch_hub_cache_is_not_unpickled(
    torch_home: Path, marker: Path, net: str
) -> None:
    from uae.networks.lpips import LPIPS_BACKBONE_FILES, LPIPSLoss

    evil = plant(torch_home / LPIPS_BACKBONE_FILES[net], marker)  # vgg16-397923af.pth, ...
    with pytest.raises(UnsafeFileError) as e:
        LPIPSLoss(net)
    refused(e, marker, evil)


def test_explicit_lpips_backbone_file_is_not_unpickled(
    torch_home: Path, tmp_path: Path, marker: Path
) -> None:
    from uae.networks.lpips import LPIPSLoss

    evil = plant(tmp_path / "evil.pth", marker)  # --model.lpips_backbone_weights evil.pth
    with pytest.raises(UnsafeFileError) as e:
        LPIPSLoss("vgg", backbone_weights=str(evil))
    refused(e, marker, evil)


def test_lpips_metric_refuses_the_cached_payload(torch_home: Path, marker: Path) -> None:
    from uae.evaluation.metrics import ReconstructionMetrics

    evil = plant(torch_home / "vgg16-397923af.pth", marker)
    with pytest.raises(UnsafeFileError) as e:
        ReconstructionMetrics(fid=False, allow_download=False)
    refused(e, marker, evil)


def test_uae_eval_with_a_planted_lpips_backbone_is_one_line(
    torch_home: Path, marker: Path, image_folder: Path, capsys
) -> None:
    plant(torch_home / "vgg16-397923af.pth", marker)
    argv = ["eval", "--model", "uae_test", "--random-init", "--data", str(image_folder), "--device", "cpu"]
    rc = cli_main([*argv, "--no-fid", "--no-progress", "--num-workers", "0"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not marker.exists()
    assert len(err.splitlines()) == 1 and "vgg16-397923af.pth" in err, err


def test_lpips_backbone_read_by_uae_gives_torchvisions_weights(torch_home: Path, photos32) -> None:
    """The backbone uae reads and hands to torchmetrics is the file's, layer for layer (SqueezeNet:
    torchmetrics cuts its ``features`` into nested slices)."""
    import torchvision

    from uae.networks.lpips import lpips_network

    torch.manual_seed(0)
    ref = torchvision.models.squeezenet1_1()
    torch_home.mkdir(parents=True)
    torch.save(ref.state_dict(), torch_home / "squeezenet1_1-b8a52dc0.pth")
    net = lpips_network("squeeze")
    own = dict(net.net.named_parameters())
    assert torch.equal(own["slices.6.12.expand3x3.weight"], ref.features[12].expand3x3.weight)
    assert torch.equal(own["slices.0.0.weight"], ref.features[0].weight)
    d = net(photos32[:2], photos32[2:4], normalize=True)
    assert d.shape == (2, 1, 1, 1) and bool((d > 0).all())


def test_lpips_backbone_of_another_network_is_refused_naming_keys(torch_home: Path, tmp_path: Path) -> None:
    import torchvision

    from uae.errors import UAELoadError
    from uae.networks.lpips import lpips_network

    path = tmp_path / "alex.pth"
    torch.save(torchvision.models.alexnet().state_dict(), path)
    with pytest.raises(UAELoadError, match="not a torchvision squeeze backbone"):
        lpips_network("squeeze", path)


# ---------------------------------------------------------------------------------------------- Inception
def test_cached_inception_payload_is_refused_not_skipped(empty_hub: Path, marker: Path) -> None:
    from uae.evaluation.metrics import INCEPTION_FILE, ReconstructionMetrics

    evil = plant(empty_hub / "checkpoints" / INCEPTION_FILE, marker)
    with pytest.raises(UnsafeFileError) as e:
        ReconstructionMetrics(lpips=False, allow_download=False)
    refused(e, marker, evil)


def test_explicit_inception_payload_in_uae_eval_is_one_line(
    empty_hub: Path, tmp_path: Path, marker: Path, image_folder: Path, capsys
) -> None:
    evil = plant(tmp_path / "evil_inception.pth", marker)
    argv = ["eval", "--model", "uae_test", "--random-init", "--data", str(image_folder), "--device", "cpu"]
    rc = cli_main(
        [*argv, "--no-lpips", "--inception-weights", str(evil), "--no-progress", "--num-workers", "0"]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not marker.exists()
    assert len(err.splitlines()) == 1 and "evil_inception.pth" in err, err


def test_generation_inception_payload_is_refused(tmp_path: Path, marker: Path) -> None:
    from uae.generation.metrics import GenerationInception

    evil = plant(tmp_path / "gen_inception.pth", marker)
    with pytest.raises(UnsafeFileError) as e:
        GenerationInception(evil)
    refused(e, marker, evil)


def test_torch_fidelity_gets_only_the_tensors_uae_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What torch-fidelity unpickles is a serialisation of the tensors uae read, never the file itself."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    from uae.networks.inception import fidelity_inception

    with monkeypatch.context() as mp:
        mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
        mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        torch.manual_seed(0)
        state = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    torch.save(state, tmp_path / "inception.pth")
    seen = []
    real_load = torch.load

    def spy(f, *args, **kwargs):
        seen.append(f)
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    net = fidelity_inception(tmp_path / "inception.pth")
    assert str(seen[0]) == str(tmp_path / "inception.pth")  # uae's own weights_only read
    assert all(not isinstance(f, (str, os.PathLike)) for f in seen[1:])  # torch-fidelity: an in-memory copy
    assert torch.equal(net.fc.weight, state["fc.weight"])


# ---------------------------------------------------------------------------------------------- DINO / DINOv2
def test_dino_discriminator_backbone_payload_is_refused(tmp_path: Path, marker: Path) -> None:
    from uae.training.discriminators import build_discriminator

    evil = plant(tmp_path / "dino.pth", marker)
    with pytest.raises(UnsafeFileError) as e:
        build_discriminator(str(evil), img_size=32)
    refused(e, marker, evil)


def test_dinov2_encoder_and_teacher_payloads_are_refused(tmp_path: Path, marker: Path) -> None:
    import uae
    from uae.layers.encoder import read_state_dict
    from uae.models.dinov2 import read_dinov2_weights

    evil = plant(tmp_path / "dinov2_vitb14_reg4_pretrain.pth", marker)
    model = uae.create_model("uae_test")
    for load in (model.load_encoder_weights, read_dinov2_weights, read_state_dict):
        with pytest.raises(UnsafeFileError) as e:
            load(evil)
        refused(e, marker, evil)
