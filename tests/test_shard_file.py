"""Shards written piece by piece (:class:`uae.evaluation.shard_file.ShardFile`): a valid safetensors file, its
SHA-256 taken as it is written, and an export whose shards go to the disk batch by batch."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import uae.evaluation.shard_file as shard_file
from uae.evaluation.common import build_dataset
from uae.evaluation.latents import export_latents
from uae.evaluation.shard_file import ShardFile, write_shard
from uae.evaluation.shard_writer import ShardBuffer
from uae.evaluation.shards import read_index, verify_export
from uae.files import file_sha256


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "bands": torch.randn(6, 2, 3, 4, generator=g),
        "half": torch.randn(6, 5, generator=g).to(torch.bfloat16),
        "index": torch.arange(10, 16),
        "stats.m2": torch.rand(2, 3, generator=g, dtype=torch.float64),
        "count": torch.tensor([7]),
    }


def _layout(tensors: dict[str, torch.Tensor]) -> dict:
    return {k: (v.dtype, tuple(v.shape)) for k, v in tensors.items()}


def _no_reread(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(path):
        raise AssertionError(f"{path} was read back to be hashed")

    monkeypatch.setattr(shard_file, "file_sha256", fail)


def test_rows_written_in_file_order_give_a_safetensors_file_hashed_as_written(tmp_path, monkeypatch):
    t = _tensors()
    path = tmp_path / "s.safetensors"
    f = ShardFile(path, _layout(t), {"uae_shard": '{"count": 6}'})
    for lo, hi in ((0, 1), (1, 4), (4, 6)):  # batches, in order
        f.write_rows("bands", lo, t["bands"][lo:hi])
    f.write_rows("half", 0, t["half"])
    for k in ("index", "stats.m2", "count"):
        f.write(k, t[k])
    _no_reread(monkeypatch)
    size, digest = f.close()
    monkeypatch.undo()
    assert size == path.stat().st_size and digest == file_sha256(path)
    back = load_file(str(path))
    assert list(back) and back.keys() == t.keys()
    assert all(back[k].dtype == t[k].dtype and torch.equal(back[k], t[k]) for k in t)
    with safe_open(str(path), framework="pt") as sf:
        assert sf.metadata() == {"uae_shard": '{"count": 6}'}
    # The same content as safetensors' own writer gives (its layout orders the tensors its own way).
    save_file(t, str(tmp_path / "ref.safetensors"), metadata={"uae_shard": '{"count": 6}'})
    ref = load_file(str(tmp_path / "ref.safetensors"))
    assert all(torch.equal(ref[k], back[k]) for k in t)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    assert n % 8 == 0 and list(header) == ["__metadata__", *t]  # metadata first, then file order
    ends = [header[k]["data_offsets"] for k in t]
    assert (
        ends[0][0] == 0 and all(a[1] == b[0] for a, b in zip(ends, ends[1:])) and ends[-1][1] == size - 8 - n
    )


def test_rows_written_out_of_order_are_hashed_from_the_file(tmp_path):
    t = _tensors()
    path = tmp_path / "s.safetensors"
    f = ShardFile(path, _layout(t))
    for k in ("count", "stats.m2", "index", "half"):  # the tail first, then the rows, last batch first
        f.write(k, t[k])
    f.write_rows("bands", 3, t["bands"][3:])
    f.write_rows("bands", 0, t["bands"][:3])
    size, digest = f.close()
    assert digest == file_sha256(path) and size == path.stat().st_size
    assert all(torch.equal(load_file(str(path))[k], t[k]) for k in t)


def test_a_shard_file_refuses_wrong_pieces_and_an_incomplete_close(tmp_path):
    t = _tensors()
    f = ShardFile(tmp_path / "s.safetensors", _layout(t))
    with pytest.raises(ValueError, match="bands"):
        f.write_rows("bands", 0, t["bands"][:2].double())  # dtype
    with pytest.raises(ValueError, match="bands"):
        f.write_rows("bands", 0, t["bands"][:2, :1])  # row shape
    with pytest.raises(ValueError, match="outside"):
        f.write_rows("bands", 5, t["bands"][:2])  # past the last row
    with pytest.raises(ValueError, match="index"):
        f.write("index", t["index"][:3])
    f.write_rows("bands", 0, t["bands"][:5])
    with pytest.raises(RuntimeError, match="not written exactly once"):
        f.close()
    g = ShardFile(tmp_path / "g.safetensors", {"bands": (torch.float32, (6, 2, 3, 4))})
    g.write_rows("bands", 0, t["bands"][:3])
    g.write_rows("bands", 0, t["bands"][:3])  # as many bytes as the tensor holds, rows 3..6 never written
    with pytest.raises(RuntimeError, match="written twice"):
        g.close()
    g.discard()
    f.discard()
    assert list(tmp_path.iterdir()) == []


def test_write_shard_leaves_the_old_file_when_it_fails(tmp_path, monkeypatch):
    t = _tensors()
    path = tmp_path / "shard-00000.safetensors"
    size, digest = write_shard(t, path)
    assert digest == file_sha256(path) and size == path.stat().st_size
    before = path.read_bytes()

    def fail(self, name, tensor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ShardFile, "write", fail)
    with pytest.raises(OSError, match="No space"):
        write_shard({k: v + 1 if v.is_floating_point() else v for k, v in t.items()}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_an_export_streams_its_shards_and_writes_the_same_bytes_as_shards_kept_in_memory(
    tiny_model, image_folder, tmp_path, monkeypatch
):
    ds = build_dataset(image_folder, 32)  # 8 images -> shards of 3, 3, 2
    kw = dict(what=("bands",), shard_size=3, batch_size=2, progress=False)

    def no_shard_in_memory(self, key, shape):
        raise AssertionError("a streamed shard allocated its tensors in memory")

    opened = []
    real_open = ShardBuffer._open_file

    def open_file(self):
        real_open(self)
        opened.append(self.file.path)
        assert self.file.path.parent == tmp_path / "streamed" and self.file.path.name.startswith(".tmp")

    with monkeypatch.context() as m:
        m.setattr(ShardBuffer, "_allocate", no_shard_in_memory)
        m.setattr(ShardBuffer, "_open_file", open_file)
        export_latents(tiny_model, ds, tmp_path / "streamed", **kw)
    assert len(opened) == 3 and not any(p.exists() for p in opened)  # renamed into place
    with monkeypatch.context() as m:  # kept in memory (as on a GPU) and written whole at the end
        m.setattr(ShardBuffer, "_open_file", lambda self: None)
        export_latents(tiny_model, ds, tmp_path / "whole", **kw)
    a, b = verify_export(tmp_path / "streamed"), verify_export(tmp_path / "whole")
    assert a == b  # SHA-256 included
    for e in a["shards"]:
        assert (tmp_path / "streamed" / e["file"]).read_bytes() == (
            tmp_path / "whole" / e["file"]
        ).read_bytes()
    assert read_index(tmp_path / "streamed")["complete"]


def test_a_streamed_shard_that_meets_an_unreadable_image_is_written_whole(
    tiny_model, image_folder, tmp_path, monkeypatch
):
    """The file's layout assumed every image of the shard; an unreadable one after the first batch means
    fewer rows, so the rows are read back and the shard is written whole, as a clean export of the
    readable images would be."""
    (image_folder / "a" / "zz_broken.png").write_bytes(b"not an image")  # last of a/
    ds = build_dataset(image_folder, 32)  # 9 files
    read_back = []
    real = ShardFile.read_rows

    def spy(self, name, count):
        read_back.append((name, count))
        return real(self, name, count)

    monkeypatch.setattr(ShardFile, "read_rows", spy)
    out = tmp_path / "x"
    index = export_latents(tiny_model, ds, out, what=("latent",), shard_size=9, batch_size=2, progress=False)
    (entry,) = index["shards"]
    (broken,) = entry["skipped"]
    assert broken >= 2 and entry["count"] == 8  # met after the first batch had opened the file
    assert read_back == [("latent", 8)]
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]
    verify_export(out)
    shard = load_file(str(out / entry["file"]))
    assert shard["index"].tolist() == [i for i in range(9) if i != broken]
    x = torch.stack([ds[i]["image"] for i in shard["index"].tolist()])
    torch.testing.assert_close(shard["latent"], tiny_model.encode(x).latent, rtol=1e-4, atol=1e-5)
    with safe_open(str(out / entry["file"]), framework="pt") as f:
        assert json.loads(f.metadata()["uae_shard"]) == {"count": 8, "shard": 0, "start": 0}


_KILLED_EXPORT = """
import os, signal, sys
import torch
import uae
from uae.evaluation.common import build_dataset
from uae.evaluation.latents import export_latents

def kill(event, shard, batch):
    if event == "batch" and shard == 1 and batch == 2:  # shard 1 half streamed to its temp file
        os.kill(os.getpid(), signal.SIGKILL)

torch.manual_seed(0)
model = uae.create_model("uae_test").eval()
export_latents(model, build_dataset(sys.argv[1], 32), sys.argv[2], what=("bands",), shard_size=3,
               batch_size=1, progress=False, callback=kill)
"""


def test_a_sigkill_while_a_shard_is_streamed_leaves_its_temp_file_and_the_resume_is_exact(
    tiny_model, image_folder, tmp_path
):
    import os
    import signal
    import subprocess
    import sys

    out, clean = tmp_path / "export", tmp_path / "clean"
    script = tmp_path / "child.py"
    script.write_text(_KILLED_EXPORT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, str(script), str(image_folder), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    temps = [p for p in out.iterdir() if p.name.startswith(".tmp")]
    assert [p.name.endswith("-shard-00001.safetensors") for p in temps] == [True]  # the half-written shard
    assert 0 < temps[0].stat().st_size and not (out / "shard-00001.safetensors").exists()
    assert [e["shard"] for e in verify_export(out)["shards"]] == [0]  # shard 0 committed, whole
    kw = dict(what=("bands",), shard_size=3, batch_size=1, progress=False)
    ds = build_dataset(image_folder, 32)
    final = export_latents(tiny_model, ds, out, **kw)
    assert final["complete"] and not [p for p in out.iterdir() if p.name.startswith(".tmp")]
    export_latents(tiny_model, ds, clean, **kw)
    assert verify_export(out) == verify_export(clean)  # SHA-256 of every shard included
    assert {p.name: p.read_bytes() for p in out.glob("shard-*")} == {
        p.name: p.read_bytes() for p in clean.glob("shard-*")
    }
