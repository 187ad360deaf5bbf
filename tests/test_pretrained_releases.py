"""``create_model(<registered name>, pretrained=True)`` end to end for every released format, offline.

Each test lays the golden fixture's *original* files (tests/fixtures/{authors_v1,authors_v2,rae}) out as a
Hugging Face Hub cache at the exact repo ids and paths the pretrained table names, loads the registered
name with ``HF_HUB_OFFLINE=1``, compares its reconstruction with the original code's output (1e-5, as
the converter tests do), then loads it again: the converted cache serves it (no converter call) and the
output is bit-identical.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from conftest import put_release_in_hub_cache
from safetensors.torch import load_file

import uae
from uae.cli import main as cli_main
from uae.convert.authors_v1 import v1_preprocess
from uae.models import pretrained as pretrained_table
from uae.models.hub import PROVENANCE_NAME
from uae.models.pretrained import get_pretrained_cfg

FIXTURES = Path(__file__).parent / "fixtures"
COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
TOL = 1e-5


def with_heads(monkeypatch: pytest.MonkeyPatch, name: str, encoder_heads: int, decoder_heads: int) -> None:
    """Give the table entry the fixture's head counts (not stored in weights; the real ones are the
    converters' defaults). Nothing else of the entry (repo, files, source) changes."""
    cfg = get_pretrained_cfg(name)
    tiny = dataclasses.replace(
        cfg, options={**cfg.options, "encoder_heads": encoder_heads, "decoder_heads": decoder_heads}
    )
    entries = [tiny if c.tag == cfg.tag else c for c in pretrained_table._PRETRAINED[cfg.architecture]]
    monkeypatch.setitem(pretrained_table._PRETRAINED, cfg.architecture, entries)


def count_conversions(monkeypatch: pytest.MonkeyPatch, source: str) -> list[str]:
    """Wrap ``uae.convert.<source>.load_release`` (what the dispatch resolves) to count calls."""
    mod = importlib.import_module(f"uae.convert.{source}")
    real, calls = mod.load_release, []

    def counted(files, *, name=None, **options):
        calls.append(name)
        return real(files, name=name, **options)

    monkeypatch.setattr(mod, "load_release", counted)
    return calls


#: Converted layout (config + tensor names, shapes, dtypes) of each fixture, pinned to the converter's
#: CONVERTER_VERSION: a converter change that alters what it writes must bump the version (the
#: converted-cache key), or users keep loading what the old converter wrote.
LAYOUT_PINS = {
    "uae_base_p14_dinov2.authors_v1": ("2", "660deaeb95270b28"),
    "uae_base_p14_dinov2.authors_v2": ("2", "f14bbe75c233a5ae"),
    "uae_large_p14_clip.authors_v2": ("2", "19401fe54dde5f79"),
    "uae_base_p16_siglip2.authors_v2": ("2", "2b475c0af6187b17"),
    "rae_base_p14_dinov2_vitxl.rae": ("2", "70311738b1bc1a02"),
    "rae_base_p16_siglip2_vitxl.rae": ("2", "3d7a628a67367310"),
    "rae_base_p16_mae_vitxl.rae": ("2", "5ef20ffd11e91558"),
}


def layout_digest(model: uae.UAE) -> str:
    """Config fields the converter sets away from their defaults (a new config field does not change it),
    and every tensor's name, shape and dtype."""
    config = {
        f.name: getattr(model.config, f.name)
        for f in dataclasses.fields(model.config)
        if f.name != "name" and getattr(model.config, f.name) != f.default
    }
    tensors = [(k, list(v.shape), str(v.dtype)) for k, v in sorted(model.state_dict().items())]
    return hashlib.sha256(json.dumps([config, tensors], sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


def load_twice(name: str, source: str, x: torch.Tensor, expected: torch.Tensor, calls: list[str], tmp_path):
    """First load converts (and matches the original), the second is served by the converted cache."""
    first = uae.create_model(name, pretrained=True)
    assert calls == [name.split(".")[0]] and not first.training
    with torch.no_grad():
        out1 = first(x, clamp=False).sample
    assert max_err(out1, expected) < TOL
    cached = list((tmp_path / "uae_cache").glob(f"models--*/{COMMIT}/{name}-*"))
    assert len(cached) == 1 and (cached[0] / "model.safetensors").is_file()
    prov = json.loads((cached[0] / PROVENANCE_NAME).read_text())
    version = importlib.import_module(f"uae.convert.{source}").CONVERTER_VERSION
    assert prov["converter_version"] == version and prov["name"] == name
    assert (version, layout_digest(first)) == LAYOUT_PINS[name], (
        f"the {source} converter now writes a different layout: bump its CONVERTER_VERSION and update LAYOUT_PINS"
    )

    second = uae.create_model(name, pretrained=True)
    assert len(calls) == 1  # a plain safetensors load, no conversion
    assert second.config == first.config
    with torch.no_grad():
        assert torch.equal(second(x, clamp=False).sample, out1)
    return first


# ---------------------------------------------------------------------------------------------- authors v1
def test_authors_v1_end_to_end(hf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "uae_base_p14_dinov2.authors_v1"
    put_release_in_hub_cache(hf_home, name, {"checkpoint": FIXTURES / "authors_v1" / "checkpoint.pt"}, COMMIT)
    with_heads(monkeypatch, name, 2, 2)
    calls = count_conversions(monkeypatch, "authors_v1")
    ref = load_file(str(FIXTURES / "authors_v1" / "tensors.safetensors"))
    x = v1_preprocess(ref["input_256"].float() / 255.0, 224)  # their evaluation: 256 px crops
    model = load_twice(name, "authors_v1", x, ref["image_256"], calls, tmp_path)
    assert (model.config.band_scheme, model.config.num_bands) == ("authors_v1", 2)
    assert model.config.name == "uae_base_p14_dinov2"


# ---------------------------------------------------------------------------------------------- authors v2
V2 = {
    "dinov2": ("uae_base_p14_dinov2.authors_v2", "DINOv2-B"),
    "clip": ("uae_large_p14_clip.authors_v2", "CLIP-L"),
    "siglip2": ("uae_base_p16_siglip2.authors_v2", "SigLIP2"),
}


@pytest.mark.parametrize("family", sorted(V2))
def test_authors_v2_end_to_end(
    family: str, hf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, folder = V2[family]
    src = FIXTURES / "authors_v2" / family / "checkpoints" / folder
    put_release_in_hub_cache(
        hf_home, name, {"checkpoint": src / "ep-last.pt", "config": src / "config.yaml"}, COMMIT
    )
    with_heads(monkeypatch, name, 2, 2)
    calls = count_conversions(monkeypatch, "authors_v2")
    ref = load_file(str(FIXTURES / "authors_v2" / family / "tensors.safetensors"))
    x = ref["image"].float() / 255.0
    model = load_twice(name, "authors_v2", x, ref["sample_unclamped"], calls, tmp_path)
    assert (model.config.band_scheme, model.config.num_bands) == ("dct_zigzag", 2)
    if family == "dinov2":  # the default tag of the architecture is this release
        assert torch.equal(
            uae.create_model("uae_base_p14_dinov2", pretrained=True).decoder.pred.weight,
            model.decoder.pred.weight,
        )
        assert len(calls) == 1


# ---------------------------------------------------------------------------------------------- RAE
def rae_sources() -> dict[str, Path]:
    d = FIXTURES / "rae"
    return {
        "decoder": d / "decoders" / "ViTXL" / "model.pt",
        "stats": d / "stats" / "per_position" / "stat.pt",
        "encoder": d / "encoder" / "model.safetensors",  # from facebook/dinov2-with-registers-base
    }


def test_rae_end_to_end(hf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "rae_base_p14_dinov2_vitxl.rae"
    put_release_in_hub_cache(hf_home, name, rae_sources(), COMMIT)
    assert (hf_home / "hub" / "models--facebook--dinov2-with-registers-base").is_dir()  # a second repo
    with_heads(monkeypatch, name, 2, 4)
    calls = count_conversions(monkeypatch, "rae")
    ref = load_file(str(FIXTURES / "rae" / "reference.safetensors"))
    model = load_twice(name, "rae", ref["input"], ref["image.ViTXL.per_position"], calls, tmp_path)
    assert model.config.latent_stats == "per_position"
    with torch.no_grad():
        zn = model.normalize_latent(model.encode(ref["input"]).latent)
    assert max_err(zn, ref["latent_normalized.per_position"]) < TOL  # RAE's encode(x), stats applied


@pytest.mark.parametrize("family", ["siglip2", "mae"])
def test_rae_siglip2_and_mae_end_to_end(
    family: str, hf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RAE's SigLIP2 and MAE decoders load by name from their own encoder repos, as RAE's code computes."""
    name = f"rae_base_p16_{family}_vitxl.rae"
    d = FIXTURES / f"rae_{family}"
    sources = {
        "decoder": d / "decoder" / "model.pt",
        "stats": d / "stats" / "stat.pt",
        "encoder": d / "encoder" / "model.safetensors",  # the whole SiglipModel / ViTMAEForPreTraining file
    }
    put_release_in_hub_cache(hf_home, name, sources, COMMIT)
    with_heads(monkeypatch, name, 2, 4)
    calls = count_conversions(monkeypatch, "rae")
    ref = load_file(str(d / "reference.safetensors"))
    model = load_twice(name, "rae", ref["input"], ref["image.per_position"], calls, tmp_path)
    c = model.config
    assert (c.encoder_family, c.latent_stats, c.preprocess, c.name) == (
        family,
        "per_position",
        "adm",
        name[:-4],
    )
    with torch.no_grad():
        zn = model.normalize_latent(model.encode(ref["input"]).latent)
    assert max_err(zn, ref["latent_normalized.per_position"]) < TOL


def test_missing_file_offline_is_one_clear_error(
    hf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "rae_base_p14_dinov2_vitxl.rae"
    put_release_in_hub_cache(hf_home, name, rae_sources(), COMMIT)
    shutil.rmtree(hf_home / "hub" / "models--facebook--dinov2-with-registers-base")
    calls = count_conversions(monkeypatch, "rae")
    t = time.perf_counter()
    with pytest.raises(FileNotFoundError) as err:
        uae.create_model(name, pretrained=True)
    assert time.perf_counter() - t < 1.0
    msg = str(err.value)
    assert "model.safetensors of Hub repo 'facebook/dinov2-with-registers-base'" in msg, msg
    assert name in msg and "not in the local Hub" in msg and "\n" not in msg.strip(), msg
    assert calls == [] and not (tmp_path / "uae_cache").exists()

    # A path the table infers (not confirmed by the release) says so, and how to convert local files.
    with pytest.raises(FileNotFoundError) as err:
        uae.create_model("uae_large_p14_clip", pretrained=True)
    msg = str(err.value)
    assert "checkpoints/CLIP-L/ep-last.pt of Hub repo 'weepiess2383/UAE'" in msg, msg
    assert "path of the authors_v2 release is not confirmed" in msg and "load_release('authors_v2'" in msg


# ---------------------------------------------------------------------------------------------- publish
def test_publish_dry_run_of_a_rae_release(
    hf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    name = "rae_base_p14_dinov2_vitxl.rae"
    put_release_in_hub_cache(hf_home, name, rae_sources(), COMMIT)
    with_heads(monkeypatch, name, 2, 4)

    class NoPush:
        def __init__(self, *a, **k):
            raise AssertionError("--dry-run must not create an HfApi")

    monkeypatch.setattr("uae.convert.publish.HfApi", NoPush)
    out = tmp_path / "pub"
    rc = cli_main(["publish", name, "--repo-id", "me/rae-vitxl", "--dry-run", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    ref = load_file(str(FIXTURES / "rae" / "reference.safetensors"))
    with torch.no_grad():
        sample = uae.UAE.from_pretrained(out)(ref["input"], clamp=False).sample
    assert max_err(sample, ref["image.ViTXL.per_position"]) < TOL
    card = (out / "README.md").read_text()
    for needle in (
        "license: mit",
        "not weights trained by uae",
        "nyu-visionx/RAE-collections",
        "decoders/dinov2/wReg_base/ViTXL_n08/model.pt",
        "facebook/dinov2-with-registers-base",
        COMMIT,
        "MIT: LICENSE of RAE's code",
        "bytetriper/RAE",  # the conversion check names the original code ...
        "a4d18c4db766419cbe7cb8c02cd9f7ceb0ec9041",  # ... at its commit
        "1e-5",
        "Reported metrics (the authors' numbers, not measured by uae)",
        "| imagenet1k_val | rfid_50k | 0.57 |",
        "RAE README",
    ):
        assert needle in card, needle
    assert "records no comparison with the original code" not in card


# ---------------------------------------------------------------------------------------------- damaged releases
def overwrite_largest_tensor(path: Path, fill: bytes = b"\xff") -> None:
    """Overwrite the data of the largest tensor stored in a torch zip file with ``fill`` bytes (0xFF: NaN),
    leaving the file's structure intact (torch checks no checksum), as a damaged download or disk does."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
        f.seek(info.header_offset + 30 + name_len + extra_len)
        f.write(fill * info.file_size)


def test_release_with_nan_in_its_ema_tensors_is_refused_naming_the_tensor(
    hf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from uae.errors import DamagedFileError

    name = "uae_base_p14_dinov2.authors_v2"
    src = FIXTURES / "authors_v2" / "dinov2" / "checkpoints" / "DINOv2-B"
    bad = tmp_path / "ep-last.pt"
    shutil.copy(src / "ep-last.pt", bad)
    overwrite_largest_tensor(bad)
    put_release_in_hub_cache(hf_home, name, {"checkpoint": bad, "config": src / "config.yaml"}, COMMIT)
    with_heads(monkeypatch, name, 2, 2)
    with pytest.raises(
        DamagedFileError, match=r"authors' v2 checkpoint: tensor '[\w.]+' holds NaN or inf"
    ) as e:
        uae.create_model(name, pretrained=True)
    assert len(str(e.value).splitlines()) == 1
    assert not list((tmp_path / "uae_cache").rglob("model.safetensors"))  # nothing damaged is cached
