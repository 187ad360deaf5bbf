"""Loading weights into models: built on the meta device, memory-mapped, strictly checked, with the
diffusers-style options (``torch_dtype``, ``device``, ``subfolder``), early size refusals and input dtypes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import put_in_hub_cache
from safetensors.torch import load_file, save_file

import uae
from uae.errors import ConfigError, DamagedFileError, InputError
from uae.models import loading
from uae.models.dit import DiTDH
from uae.models.registry import get_config, get_entry, list_models
from uae.models.size import estimate_num_params, largest_size_field


def _saved(tmp_path: Path, name: str = "uae_test", seed: int = 0) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(seed)
    model = uae.create_model(name).eval()
    with torch.no_grad():
        for p in model.parameters():  # nothing left at its initial value (zero convs included)
            p.add_(torch.randn_like(p) * 0.01)
    model.save_pretrained(tmp_path / name)
    return model, tmp_path / name


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------------------------- meta + mmap
VARIANTS = {
    "uae_test": {},
    "authors_v1_bands": {"band_scheme": "authors_v1"},
    "dct_zigzag": {"band_transform": "dct", "band_scheme": "dct_zigzag", "num_bands": 2, "band_mixing": True},
    "clip": {"encoder_family": "clip"},
    "siglip2": {"encoder_family": "siglip2", "encoder_reg_tokens": 0},
    "per_position": {"latent_stats": "per_position"},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_empty_build_has_meta_parameters_and_the_computed_buffers(variant: str) -> None:
    """Parameters take no memory; the buffers that are not saved (band masks, sin-cos table) are computed
    exactly as at construction."""
    config = get_config("uae_test", **VARIANTS[variant])
    eager = uae.UAE(config)
    empty = loading.build_empty(uae.UAE, config)
    assert all(p.is_meta for p in empty.parameters())
    own, ref = dict(empty.named_buffers()), dict(eager.named_buffers())
    assert own.keys() == ref.keys() and all(torch.equal(own[k], ref[k]) for k in ref)


def test_empty_build_of_a_generator_keeps_its_rope_tables() -> None:
    config = get_config("dit_dh_test")
    empty, eager = loading.build_empty(DiTDH, config), DiTDH(config)
    assert all(p.is_meta for p in empty.parameters())
    assert torch.equal(empty.trunk_rope.cos, eager.trunk_rope.cos)


def test_from_pretrained_maps_the_file_and_gives_the_same_model(tmp_path: Path, photos32) -> None:
    model, d = _saved(tmp_path)
    loaded = uae.UAE.from_pretrained(d)
    assert _same(model, loaded) and not loaded.training
    weights = str((d / "model.safetensors").resolve())
    maps = Path("/proc/self/maps").read_text().splitlines() if sys.platform == "linux" else []
    regions = [
        tuple(int(x, 16) for x in line.split()[0].split("-")) for line in maps if line.endswith(weights)
    ]
    if maps:  # the parameters are the file's pages, not copies
        ptr = loaded.decoder.blocks[0].mlp.fc1.weight.data_ptr()
        assert any(lo <= ptr < hi for lo, hi in regions)
    with torch.no_grad():
        assert torch.equal(model(photos32).sample, loaded(photos32).sample)
        loaded.decoder.pred.bias.add_(1.0)  # a private mapping: writable, the file stays as it was
    assert torch.equal(load_file(weights)["decoder.pred.bias"], model.decoder.pred.bias)


def test_strict_false_with_missing_weights_keeps_an_initialisation(tmp_path: Path) -> None:
    model, d = _saved(tmp_path)
    w = load_file(str(d / "model.safetensors"))
    w.pop("decoder.pred.bias")
    save_file(w, str(d / "model.safetensors"))
    loaded = uae.UAE.from_pretrained(d, strict=False)
    assert not any(p.is_meta for p in loaded.parameters())
    assert torch.equal(loaded.decoder.pred.weight, model.decoder.pred.weight)


def test_nan_in_saved_weights_is_a_damaged_file_naming_the_tensor(tmp_path: Path) -> None:
    _, d = _saved(tmp_path)
    w = load_file(str(d / "model.safetensors"))
    w["decoder.blocks.0.mlp.fc1.weight"][3, 1] = float("inf")
    save_file(w, str(d / "model.safetensors"))
    with pytest.raises(DamagedFileError, match=r"NaN or inf.*decoder\.blocks\.0\.mlp\.fc1\.weight"):
        uae.UAE.from_pretrained(d)


def test_truncated_weights_are_a_damaged_file(tmp_path: Path) -> None:
    _, d = _saved(tmp_path)
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(DamagedFileError, match="truncated"):
        uae.UAE.from_pretrained(d)


def test_export_builds_from_a_state_dict_without_an_init() -> None:
    from uae.training.export import model_from_state_dict

    torch.manual_seed(0)
    model = uae.create_model("uae_test")
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    out = model_from_state_dict(model.config.to_dict(), state)
    assert _same(model, out)
    assert (
        out.decoder.pred.weight.data_ptr() != model.decoder.pred.weight.data_ptr()
    )  # the caller's stay its own
    mine = model_from_state_dict(model.config.to_dict(), state, copy=False)  # a checkpoint read for this
    assert mine.decoder.pred.weight.data_ptr() == model.decoder.pred.weight.data_ptr()  # assigned, not copied


# ---------------------------------------------------------------------------------------------- options
def test_torch_dtype_device_and_the_dtype_device_properties(tmp_path: Path, photos32) -> None:
    model, d = _saved(tmp_path)
    assert model.dtype == torch.float32 and model.device == torch.device("cpu")
    bf16 = uae.UAE.from_pretrained(d, torch_dtype=torch.bfloat16, device="cpu")
    assert bf16.dtype == torch.bfloat16
    assert all(
        t.dtype == torch.bfloat16 for t in (*bf16.parameters(), *bf16.buffers()) if t.is_floating_point()
    )
    with torch.no_grad():
        ref, out = model(photos32).sample, bf16(photos32.bfloat16()).sample
    assert out.dtype == torch.float32 and float((out - ref).abs().max()) < 0.05
    assert uae.UAE.from_pretrained(d, torch_dtype="bfloat16").dtype == torch.bfloat16  # names work too
    assert uae.UAE.from_pretrained(d, torch_dtype="auto").dtype == torch.float32  # the file's
    assert uae.UAE.from_pretrained(d, map_location="cpu").device == torch.device("cpu")
    generator, gdir = _saved(tmp_path, "dit_dh_test")
    g = DiTDH.from_pretrained(gdir, torch_dtype=torch.bfloat16)
    assert g.dtype == torch.bfloat16 and g.device == torch.device("cpu")


def test_auto_dtype_keeps_a_half_precision_file(tmp_path: Path) -> None:
    _, d = _saved(tmp_path)
    w = {k: v.half() for k, v in load_file(str(d / "model.safetensors")).items()}
    save_file(w, str(d / "model.safetensors"))
    assert uae.UAE.from_pretrained(d).dtype == torch.float32  # the model's dtype unless asked
    assert uae.UAE.from_pretrained(d, torch_dtype="auto").dtype == torch.float16


def test_unusable_options_are_one_line_errors_before_reading(tmp_path: Path, monkeypatch) -> None:
    _, d = _saved(tmp_path)
    with pytest.raises(InputError, match="torch_dtype must be one of") as e:
        uae.UAE.from_pretrained(d, torch_dtype="int8")
    assert e.value.param == "torch_dtype"
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            uae.UAE.from_pretrained(d, device="cuda")
    with pytest.raises(InputError, match="disagree"):
        uae.UAE.from_pretrained(d, device="cpu", map_location="meta")
    monkeypatch.setattr(loading, "cpu_supports", lambda dtype: False)  # a torch without half kernels on CPU
    with pytest.raises(InputError, match="torch_dtype=float16 is not supported on CPU") as e:
        uae.UAE.from_pretrained(d, torch_dtype=torch.float16)
    assert len(str(e.value).splitlines()) == 1 and "cuda" in str(e.value)


def test_subfolder_of_a_directory_and_of_a_hub_repo(tmp_path: Path, hf_home: Path) -> None:
    model, d = _saved(tmp_path)
    pipe = tmp_path / "pipeline"
    model.save_pretrained(pipe / "tokenizer")
    assert _same(uae.UAE.from_pretrained(pipe, subfolder="tokenizer"), model)
    files = {f"tokenizer/{n}": d / n for n in ("config.json", "model.safetensors")}
    put_in_hub_cache(hf_home, "org/pipeline", files)
    assert _same(uae.UAE.from_pretrained("org/pipeline", subfolder="tokenizer"), model)
    with pytest.raises(InputError, match="subfolder must be a folder inside"):
        uae.UAE.from_pretrained(pipe, subfolder="../elsewhere")
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        uae.UAE.from_pretrained(pipe, subfolder="vae")


def test_create_model_takes_the_same_options() -> None:
    demo = uae.create_model("uae_demo", pretrained=True, torch_dtype=torch.bfloat16, device="cpu")
    assert demo.dtype == torch.bfloat16 and not demo.training
    assert uae.create_model("uae_test", torch_dtype="bfloat16").dtype == torch.bfloat16
    with pytest.raises(InputError, match="torch_dtype"):
        uae.create_model("uae_demo", pretrained=True, torch_dtype="complex64")


# ---------------------------------------------------------------------------------------------- input dtypes
@pytest.mark.parametrize(("cast", "name"), [(torch.Tensor.double, "float64"), (torch.Tensor.half, "float16")])
def test_input_of_another_dtype_is_the_documented_value_error(tiny_model, photos32, cast, name: str) -> None:
    with pytest.raises(ValueError, match=f"x has dtype {name} but the model's weights are float32") as e:
        tiny_model(cast(photos32))
    assert isinstance(e.value, InputError) and e.value.param == "x"
    assert "x.float()" in str(e.value) and len(str(e.value).splitlines()) == 1


@torch.no_grad()
def test_half_and_bfloat16_models_run_where_torch_can(tiny_model, photos32, monkeypatch) -> None:
    ref = tiny_model(photos32).sample
    for dtype, tol in ((torch.bfloat16, 0.05), (torch.float16, 0.01)):
        m = uae.create_model("uae_test").eval()
        m.load_state_dict(tiny_model.state_dict())
        m.to(dtype)
        out = m(photos32.to(dtype))
        assert out.sample.dtype == torch.float32 and float((out.sample - ref).abs().max()) < tol
        assert torch.isfinite(m.decode(out.latent).sample).all()
    monkeypatch.setattr(loading, "cpu_supports", lambda dtype: False)
    with pytest.raises(InputError, match="float16 is not supported on CPU"):
        m(photos32.half())


def test_autocast_accepts_other_input_dtypes(tiny_model, photos32) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tiny_model(photos32.bfloat16())
    assert out.sample.shape == (photos32.shape[0], 3, 32, 32)


# ---------------------------------------------------------------------------------------------- size
def test_estimate_matches_the_built_models() -> None:
    for name in list_models():
        config = get_config(name)
        with loading.parameters_on_meta():
            model = get_entry(name).model_class()(config)
        actual = sum(p.numel() for p in model.parameters())
        assert abs(estimate_num_params(config) / actual - 1) < 0.005, name


def test_absurd_config_json_is_refused_naming_the_field_before_allocating(
    tmp_path: Path, monkeypatch
) -> None:
    _, d = _saved(tmp_path, "uae_test")
    raw = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**raw, "decoder_depth": 100000, "decoder_dim": 1152}))
    built = []
    monkeypatch.setattr(uae.UAE, "__init__", lambda self, *a: built.append(1))
    with pytest.raises(
        ConfigError, match=r"decoder_depth=100000 gives a model of .* billion parameters"
    ) as e:
        uae.UAE.from_pretrained(d)
    assert e.value.param == "decoder_depth" and not built and str(d / "config.json") in str(e.value)
    monkeypatch.undo()
    assert largest_size_field(get_config("dit_dh_test").replace(depth=10**7)) == "depth"
    with pytest.raises(ConfigError, match="depth=10000000") as e:
        uae.create_model("dit_dh_test", depth=10**7)
    assert e.value.param == "depth"
    with pytest.raises(ConfigError, match="more than the .* GiB of memory"):  # a smaller machine
        loading.check_model_size(get_config("uae_test"), limit_bytes=1000)


def test_absurd_config_in_the_cli_is_one_line(tmp_path: Path, photo_paths, capsys) -> None:
    from uae.cli import main as cli_main

    _, d = _saved(tmp_path, "uae_test")
    raw = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**raw, "decoder_depth": 100000, "decoder_dim": 1152}))
    rc = cli_main(["reconstruct", str(photo_paths[0]), "--model", str(d), "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "decoder_depth" in err, err
