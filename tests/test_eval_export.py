"""Latent export: sharded safetensors, crash mid-shard and resume, exact per-channel statistics."""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch
from safetensors.torch import load_file

from uae.errors import OutputError
from uae.evaluation.common import build_dataset
from uae.evaluation.latents import channel_moments, combine_moments, export_latents
from uae.evaluation.shard_writer import ShardBuffer, ShardWriter
from uae.evaluation.shards import (
    STATS_NAME,
    load_shard,
    read_index,
    verify_export,
)


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


def test_channel_moments_of_float32_latents_and_bands_equal_float64_reference():
    g = torch.Generator().manual_seed(1)
    bands = torch.randn(6, 3, 4, 2, 5, generator=g) * 2 - 0.5  # (n, K, C, h, w), float32 as encoded
    n, mean, m2 = channel_moments(bands, channel_dim=2)
    var, ref_mean = torch.var_mean(bands.double(), dim=(0, 3, 4), correction=0)
    assert n == 6 * 2 * 5 and mean.dtype == m2.dtype == torch.float64 and mean.shape == (3, 4)
    torch.testing.assert_close(mean, ref_mean, rtol=0, atol=1e-15)
    torch.testing.assert_close(m2, var * n, rtol=1e-13, atol=0)
    latent = bands[:, 0]  # (n, C, h, w), not contiguous
    n, mean, m2 = channel_moments(latent, channel_dim=1)
    var, ref_mean = torch.var_mean(latent.double(), dim=(0, 2, 3), correction=0)
    assert n == 6 * 2 * 5 and mean.shape == (4,)
    torch.testing.assert_close(mean, ref_mean, rtol=0, atol=1e-15)
    torch.testing.assert_close(m2, var * n, rtol=1e-13, atol=0)


def _tensors(out) -> dict[str, torch.Tensor]:
    index = read_index(out)
    return {f"{e['shard']}/{k}": v for e in index["shards"] for k, v in load_shard(out, e["shard"]).items()}


def _same_export(a, b) -> None:
    ia, ib = read_index(a), read_index(b)
    assert ia == ib
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_a_shard_with_flipped_bytes_is_found_and_recomputed(tiny_model, image_folder, tmp_path):
    from uae.errors import DamagedFileError
    from uae.files import file_sha256

    ds = build_dataset(image_folder, 32)
    kw = dict(what=("latent",), shard_size=3, batch_size=3, progress=False)
    out, clean = tmp_path / "export", tmp_path / "clean"
    export_latents(tiny_model, ds, out, **kw)
    export_latents(tiny_model, ds, clean, **kw)
    index = read_index(out)
    assert all(e["sha256"] == file_sha256(out / e["file"]) for e in index["shards"])
    shard1 = out / "shard-00001.safetensors"
    data = bytearray(shard1.read_bytes())
    for i in range(len(data) - 64, len(data) - 32):  # inside the tensor data: same size, same header
        data[i] ^= 0xFF
    shard1.write_bytes(bytes(data))
    assert load_shard(out, 1).keys() == load_shard(clean, 1).keys()  # still reads fine
    with pytest.raises(DamagedFileError, match="SHA-256"):
        verify_export(out)
    mtimes = {s: (out / f"shard-0000{s}.safetensors").stat().st_mtime_ns for s in (0, 2)}
    events = []
    export_latents(tiny_model, ds, out, callback=lambda e, s, b: events.append((e, s)), **kw)
    assert [s for e, s in events if e == "shard"] == [1]  # only the damaged shard is recomputed
    assert all((out / f"shard-0000{s}.safetensors").stat().st_mtime_ns == t for s, t in mtimes.items())
    verify_export(out)
    _same_export(out, clean)


@pytest.mark.parametrize("when", ["batch", "commit", "whole"])
def test_a_full_disk_is_one_output_error_and_the_resume_is_exact(
    tiny_model, image_folder, tmp_path, monkeypatch, when
):
    """The disk fills while a shard streamed to its file takes a batch (``batch``), while its indices and
    moments are added (``commit``), or while a shard kept in memory is written whole (``whole``)."""
    import errno

    from uae.errors import OutputError
    from uae.evaluation.shard_file import ShardFile

    ds = build_dataset(image_folder, 32)
    kw = dict(what=("bands", "latent"), shard_size=3, batch_size=2, progress=False)
    out, clean = tmp_path / "export", tmp_path / "clean"
    method = "write_rows" if when == "batch" else "write"
    real = getattr(ShardFile, method)

    def full_disk(self, name, *args):
        real(self, name, *args)  # partly written, then the error
        if "shard-00001" in self.path.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    if when == "whole":  # shards kept in memory (as on a GPU), written at their end
        monkeypatch.setattr(ShardBuffer, "_open_file", lambda self: None)
    monkeypatch.setattr(ShardFile, method, full_disk)
    with pytest.raises(OutputError, match="No space left on device") as e:
        export_latents(tiny_model, ds, out, **kw)
    msg = str(e.value)
    assert str(out) in msg and "shard-00001.safetensors" in msg and "ENOSPC" in msg and "\n" not in msg
    assert e.value.param == "out_dir" and isinstance(e.value, OSError)
    assert [p.name for p in out.iterdir() if p.name.startswith(".tmp")] == []  # no half-written file
    monkeypatch.undo()
    final = export_latents(tiny_model, ds, out, **kw)
    assert final["complete"]
    export_latents(tiny_model, ds, clean, **kw)
    verify_export(out)
    _same_export(out, clean)


def test_a_full_disk_during_uae_encode_is_one_line_exit_2(
    tiny_model, image_folder, tmp_path, monkeypatch, capsys
):
    import errno

    import uae.evaluation.latents as latents
    from uae.cli import main

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(latents, "write_json", lambda *a, **k: full(*a[:2]))
    model_dir = tmp_path / "model"
    tiny_model.save_pretrained(model_dir)
    out = tmp_path / "lat"
    argv = ["encode", "--model", str(model_dir), "--data", str(image_folder), "--out", str(out)]
    rc = main([*argv, "--num-workers", "0", "--no-progress", "--batch-size", "4", "--shard-size", "4"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "No space left on device" in err and str(out) in err and "index.json" in err


def test_journals_of_a_multi_process_run_are_merged_on_resume(tiny_model, image_folder, tmp_path):
    """What ranks 1.. of a ``torchrun`` export leave when killed before rank 0 merged their work: committed
    entries in ``.journal-<rank>.jsonl`` (the last line maybe cut). Any later run (any number of processes)
    takes them over, and the finished folder equals an uninterrupted one-process export."""
    from uae.evaluation.shards import append_journal, journal_path

    ds = build_dataset(image_folder, 32)
    kw = dict(what=("latent",), shard_size=2, batch_size=2, progress=False)
    out, clean = tmp_path / "export", tmp_path / "clean"
    export_latents(tiny_model, ds, clean, **kw)
    export_latents(tiny_model, ds, out, **kw)
    index = read_index(out)
    moved = [e for e in index["shards"] if e["shard"] % 2 == 1]  # rank 1 of 2 did shards 1 and 3
    index["shards"] = [e for e in index["shards"] if e["shard"] % 2 == 0]
    index["complete"] = False
    index.pop("stats")
    (out / "index.json").write_text(json.dumps(index))
    for e in moved:
        append_journal(out, 1, {"entry": e, "shapes": {"latent": [32, 8, 8]}})
    with open(journal_path(out, 1), "a") as f:
        f.write('{"entry": {"shard": 9, "fi')  # cut by the kill
    events = []
    export_latents(tiny_model, ds, out, callback=lambda e, s, b: events.append(e), **kw)
    assert events == []  # nothing recomputed
    assert not list(out.glob(".journal-*"))
    _same_export(out, clean)


def test_shard_writer_writes_while_the_caller_goes_on_and_keeps_the_order():
    started, release, done, events = threading.Event(), threading.Event(), [], []

    def commit(buf: ShardBuffer) -> None:
        started.set()
        assert release.wait(10)
        done.append(buf.shard)

    with ShardWriter(commit, lambda e, s, b: events.append((e, s, b))) as writer:
        writer.submit(ShardBuffer(0, 0, 2, torch.float32), 3)
        assert started.wait(10)  # shard 0 is being written ...
        assert done == [] and events == []  # ... and submit returned: the caller encodes the next one
        release.set()
        writer.submit(ShardBuffer(1, 2, 4, torch.float32), 1)  # waits for shard 0 first
        assert done == [0] and events == [("shard", 0, 3)]
        writer.wait()
    assert done == [0, 1] and events == [("shard", 0, 3), ("shard", 1, 1)]


def test_shard_writer_raises_write_errors_in_the_caller_and_finishes_a_write_when_the_caller_fails():
    def full_disk(buf: ShardBuffer) -> None:
        raise OutputError("cannot write shard-00000.safetensors: No space left on device")

    writer = ShardWriter(full_disk, None)
    writer.submit(ShardBuffer(0, 0, 1, torch.float32), 1)
    with pytest.raises(OutputError, match="No space left"):
        writer.wait()
    writer.close()

    written = []

    def slow(buf: ShardBuffer) -> None:
        time.sleep(0.2)
        written.append(buf.shard)

    with pytest.raises(RuntimeError, match="the caller failed"):
        with ShardWriter(slow, None) as writer:
            writer.submit(ShardBuffer(3, 0, 1, torch.float32), 1)
            raise RuntimeError("the caller failed")
    assert written == [3]  # the shard already being written was finished, not abandoned


def test_shard_writer_without_background_writes_in_submit_and_only_a_background_one_frees_pinned_memory(
    monkeypatch,
):
    import uae.evaluation.shard_writer as shard_writer

    released = []
    monkeypatch.setattr(shard_writer, "release_pinned_memory", lambda: released.append(True))
    done, events = [], []
    with ShardWriter(lambda b: done.append(b.shard), lambda *e: events.append(e), background=False) as writer:
        writer.submit(ShardBuffer(2, 0, 1, torch.float32), 5)
        assert writer.pool is None and done == [2] and events == [("shard", 2, 5)]
    assert released == []  # a CPU export holds no pinned memory
    with ShardWriter(lambda b: done.append(b.shard), None, background=True) as writer:  # a GPU export's
        writer.submit(ShardBuffer(3, 0, 1, torch.float32), 1)
        assert released == []  # not while shards are still written
    assert done == [2, 3] and released == [True]  # the written shards' pinned buffers go back once


def test_export_with_background_writes_crashes_resumes_and_equals_the_synchronous_one(
    tiny_model, image_folder, tmp_path, monkeypatch
):
    """What a GPU export does (shards written in the background thread), forced on the CPU."""
    import uae.evaluation.latents as latents

    class Background(ShardWriter):
        def __init__(self, commit, callback, background: bool = True) -> None:
            super().__init__(commit, callback, background=True)

    ds = build_dataset(image_folder, 32)  # 8 images -> 3 shards
    kw = dict(what=("bands", "latent"), shard_size=3, batch_size=2, progress=False)
    export_latents(tiny_model, ds, tmp_path / "sync", **kw)
    monkeypatch.setattr(latents, "ShardWriter", Background)
    out = tmp_path / "background"
    with pytest.raises(Crash):
        export_latents(tiny_model, ds, out, callback=_crash_at(shard=1, batch=1), **kw)
    assert [e["shard"] for e in verify_export(out)["shards"]] == [0]  # the shard in writing was kept
    events = []
    export_latents(tiny_model, ds, out, callback=lambda e, s, b: events.append((e, s)), **kw)
    assert [s for e, s in events if e == "shard"] == [1, 2]
    _same_export(out, tmp_path / "sync")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_export_copies_asynchronously_and_stores_what_the_model_encodes(
    tiny_model, image_folder, tmp_path, monkeypatch
):
    """On a GPU each batch is copied into pinned memory without waiting and its moments stay on the GPU
    until the shard is finished: the shards must still hold exactly what the model encodes there, with
    statistics equal to float64 ones recomputed from those encodings."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    model = tiny_model.to("cuda")
    ds = build_dataset(image_folder, 32)  # 8 images -> 3 shards, the pinned buffers reused
    kw = dict(what=("bands", "latent"), shard_size=3, batch_size=2, progress=False, amp=False, device="cuda")
    index = export_latents(model, ds, tmp_path / "gpu", dtype="bfloat16", **kw)
    assert index["complete"] and len(index["shards"]) == 3
    with torch.no_grad():  # the export's batches (batches do not cross shards: same shapes, same kernels)
        pairs = [
            model.encode(torch.stack([ds[i]["image"] for i in batch]).cuda())
            for batch in ([0, 1], [2], [3, 4], [5], [6, 7])
        ]
    for key in ("bands", "latent"):
        want = torch.cat([getattr(e, key) for e in pairs])
        order, got = _all(tmp_path / "gpu", key)
        assert torch.equal(order, torch.arange(len(ds)))
        assert torch.equal(got, want.float().to(torch.bfloat16).cpu())  # converted on the GPU, copied as is
        count, mean, _ = channel_moments(want.float().cpu(), channel_dim=2 if key == "bands" else 1)
        stats = load_file(tmp_path / "gpu" / STATS_NAME)
        assert count == index["stats"][key]["count"]
        torch.testing.assert_close(stats[f"{key}.mean"], mean.float(), rtol=1e-5, atol=1e-6)


def test_a_cuda_shard_buffer_without_pinned_memory_copies_its_batches_as_they_come(monkeypatch, caplog):
    """Pinned host memory is limited: when it cannot be had, the shard's tensor is pageable, a warning
    says so, and every batch is still stored with its moments."""
    real_empty = torch.empty

    def empty(*args, pin_memory: bool = False, **kwargs):
        if pin_memory:
            raise RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be reported later")
        return real_empty(*args, **kwargs)

    monkeypatch.setattr(torch, "empty", empty)
    buf = ShardBuffer(3, 0, 6, torch.float32, torch.device("cuda"))
    a, b = torch.randn(4, 3, 5, 2, 2), torch.randn(2, 3, 5, 2, 2)  # bands (n, K, C, h, w)
    with caplog.at_level("WARNING", logger="uae.evaluation.shards"):
        buf.add({"bands": a}, [0, 1, 2, 3], [0] * 4)
        buf.add({"bands": b}, [4, 5], [1] * 2)
    assert buf.pinned == {"bands": False}
    assert len(caplog.records) == 1 and "Could not pin" in caplog.text and "shard 3" in caplog.text
    assert "out of memory" in caplog.text and "reported later" not in caplog.text
    buf.finish()  # nothing pinned, nothing on a GPU: no CUDA needed
    both = torch.cat([a, b])
    assert torch.equal(buf.tensors["bands"], both)
    n, mean, m2 = buf.moments["bands"]
    want = channel_moments(both, channel_dim=2)
    assert n == want[0]
    torch.testing.assert_close(mean, want[1])
    torch.testing.assert_close(m2, want[2])
