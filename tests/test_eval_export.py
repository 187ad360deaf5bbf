"""Latent export: sharded safetensors, crash mid-shard and resume, exact per-channel statistics."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from uae.evaluation.common import build_dataset
from uae.evaluation.latents import channel_moments, combine_moments, export_latents
from uae.evaluation.shards import STATS_NAME, load_shard, read_index, verify_export


class Crash(RuntimeError):
    pass


def _crash_at(shard: int, batch: int):
    def cb(event: str, s: int, b: int) -> None:
        if event == "batch" and s == shard and b == batch:
            raise Crash(f"simulated crash in shard {s} after batch {b}")

    return cb


def _all(out, key):
    index = read_index(out)
    parts = [load_shard(out, e["shard"]) for e in index["shards"]]
    return torch.cat([p["index"] for p in parts]), torch.cat([p[key] for p in parts])


def test_export_resumes_after_crash_mid_shard(tiny_model, image_folder, tmp_path):
    ds = build_dataset(image_folder, 32)  # 8 images -> shards [0..2], [3..5], [6..7]
    out = tmp_path / "export"
    kw = dict(what=("bands", "latent"), shard_size=3, batch_size=2, progress=False)
    with pytest.raises(Crash):
        export_latents(tiny_model, ds, out, callback=_crash_at(shard=1, batch=1), **kw)
    index = verify_export(out)  # consistent even after the crash
    assert [e["shard"] for e in index["shards"]] == [0] and not index["complete"]
    assert not (out / "shard-00001.safetensors").exists()
    # Leftovers of a harder crash: a half-written temp file, and a renamed shard the index never recorded.
    (out / "shard-00001.safetensors.tmp").write_bytes(b"garbage")
    (out / "shard-00002.safetensors").write_bytes(b"not a real shard")
    mtime0 = (out / "shard-00000.safetensors").stat().st_mtime_ns
    events = []
    final = export_latents(tiny_model, ds, out, callback=lambda e, s, b: events.append((e, s)), **kw)
    assert ("batch", 0) not in events  # shard 0 was not recomputed
    assert [s for e, s in events if e == "shard"] == [1, 2]
    assert (out / "shard-00000.safetensors").stat().st_mtime_ns == mtime0
    assert not list(out.glob("*.tmp"))
    index = verify_export(out)
    assert index == final and index["complete"] and [e["count"] for e in index["shards"]] == [3, 3, 2]
    idx, latent = _all(out, "latent")
    assert idx.tolist() == list(range(8))  # nothing lost, nothing duplicated
    # Same tensors as an uninterrupted export, and the same as encoding directly.
    clean = tmp_path / "clean"
    export_latents(tiny_model, ds, clean, **kw)
    _, latent_clean = _all(clean, "latent")
    assert torch.equal(latent, latent_clean)
    x = torch.stack([ds[i]["image"] for i in range(8)])
    enc = tiny_model.encode(x)
    torch.testing.assert_close(latent, enc.latent, rtol=1e-4, atol=1e-5)
    _, bands = _all(out, "bands")
    torch.testing.assert_close(bands, enc.bands, rtol=1e-4, atol=1e-5)
    # Per-channel statistics: equal to a direct float64 computation over all latents.
    mean = enc.latent.double().mean((0, 2, 3))
    std = enc.latent.double().permute(1, 0, 2, 3).flatten(1).std(1)
    torch.testing.assert_close(
        torch.tensor(index["stats"]["latent"]["mean"], dtype=torch.float64), mean, rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(
        torch.tensor(index["stats"]["latent"]["std"], dtype=torch.float64), std, rtol=1e-4, atol=1e-5
    )
    assert index["stats"] == read_index(clean)["stats"]
    stats = load_file(str(out / STATS_NAME))
    assert stats["latent.mean"].shape == (32,) and stats["bands.std"].shape == (3, 32)
    tiny_model.set_latent_stats(
        stats["latent.mean"], stats["latent.std"]
    )  # usable for diffusion training as is


def test_crash_between_rename_and_index_update_recomputes_the_shard(
    tiny_model, image_folder, tmp_path, monkeypatch
):
    import uae.evaluation.latents as ex

    ds = build_dataset(image_folder, 32)
    out = tmp_path / "export"
    real = ex._atomic_json
    calls = {"n": 0}

    def flaky(path, data):
        calls["n"] += 1
        if calls["n"] == 3:  # 1: initial index, 2: shard 0, 3: shard 1 -> crash after its rename
            raise Crash("crash before the index update")
        real(path, data)

    monkeypatch.setattr(ex, "_atomic_json", flaky)
    with pytest.raises(Crash):
        export_latents(tiny_model, ds, out, shard_size=4, batch_size=4, progress=False)
    monkeypatch.setattr(ex, "_atomic_json", real)
    assert (out / "shard-00001.safetensors").exists() and len(read_index(out)["shards"]) == 1
    with pytest.raises(ValueError, match="only on disk"):
        verify_export(out)
    export_latents(tiny_model, ds, out, shard_size=4, batch_size=4, progress=False)
    index = verify_export(out)
    assert index["complete"] and [e["file"] for e in index["shards"]] == [
        "shard-00000.safetensors",
        "shard-00001.safetensors",
    ]


def test_export_refuses_different_settings_and_bad_args(tiny_model, image_folder, tmp_path):
    ds = build_dataset(image_folder, 32)
    out = tmp_path / "export"
    export_latents(
        tiny_model, ds, out, shard_size=4, batch_size=4, progress=False, dtype="bfloat16", what=("fused",)
    )
    shard = load_shard(out, 0)
    assert shard["fused"].dtype == torch.bfloat16 and shard["fused"].shape == (4, 32, 8, 8)
    assert shard["label"].tolist() == [0, 0, 0, 0] and shard["index"].tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="different settings"):
        export_latents(tiny_model, ds, out, shard_size=2, progress=False, dtype="bfloat16", what=("fused",))
    with pytest.raises(ValueError, match="what"):
        export_latents(tiny_model, ds, tmp_path / "x", what=("pixels",), progress=False)
    with pytest.raises(ValueError, match="dtype"):
        export_latents(tiny_model, ds, tmp_path / "x", dtype="int8", progress=False)
    assert json.loads((out / "index.json").read_text())["what"] == ["fused"]
    assert (out / "files.txt").read_text().splitlines()[0].startswith("a/")


def test_default_shard_size_targets_one_gib():
    from uae.evaluation.latents import default_shard_size

    assert default_shard_size(["bands"], 4, (768, 16, 16), "float32") == 2**30 // (4 * 768 * 256 * 4)
    assert default_shard_size(["latent"], 4, (768, 16, 16), "bfloat16") == 2**30 // (768 * 256 * 2)
    assert default_shard_size(["bands", "latent"], 3, (32, 8, 8), "float32", target_bytes=10) == 1


def test_chan_combination_equals_global_moments():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(11, 2, 5, 3, 3, generator=g, dtype=torch.float64) * 3 + 1
    parts = [channel_moments(x[i : i + 4], channel_dim=2) for i in range(0, 11, 4)]
    n, mean, m2 = combine_moments(parts)
    ref_n, ref_mean, ref_m2 = channel_moments(x, channel_dim=2)
    assert n == ref_n == 11 * 9 and mean.shape == (2, 5)
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(m2, ref_m2)
    torch.testing.assert_close((m2 / (n - 1)).sqrt(), x.permute(1, 2, 0, 3, 4).flatten(2).std(2))
