"""Training data of a generator (uae.training.latent_data, uae.generation.latent_space): shards streamed through an
LRU, band subsets, statistics, the tokenizer fingerprint check, the held-out split, the saved latent space."""

from __future__ import annotations

import copy
import json
import pickle

import pytest
import torch
from conftest import cpu_trainer
from ldm_fixtures import encode, save_tokenizer

from uae.errors import ConfigError
from uae.evaluation.common import tokenizer_fingerprint
from uae.evaluation.shards import load_shard, read_index
from uae.generation.latent_space import LatentSpace, parse_bands
from uae.training import LatentDataModule
from uae.training.latent_data import LatentShards, export_stats

# Training without a validation loader is the point of these tests.
pytestmark = pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")


@pytest.fixture
def export(image_folder, tmp_path):
    """8 photos (2 classes) encoded by a saved uae_test: 3 shards of 3, 3, 2; fused and band latents."""
    tok = save_tokenizer(tmp_path / "tok")
    return encode(tok, image_folder, tmp_path / "latents")


def test_shards_stream_through_an_lru_and_match_the_export(export) -> None:
    ds = LatentShards(export, key="fused", max_open=1)
    assert len(ds) == 8 and len(ds.files) == 3
    rows = {}
    for s in range(3):
        shard = load_shard(export, s)
        for r, i in enumerate(shard["index"].tolist()):
            rows[i] = (shard["fused"][r], int(shard["label"][r]))
    seen = []
    for i in range(len(ds)):
        item = ds[(i, 12345)]  # (index, sample seed) as ResumableSampler yields
        latent, label = rows[item["index"]]
        assert torch.equal(item["latent"], latent) and item["label"] == label
        assert len(ds._open) <= 1  # never more files open than max_open
        seen.append(item["index"])
    assert sorted(seen) == list(range(8)) and {rows[i][1] for i in seen} == {0, 1}
    assert (
        len(copy.deepcopy(ds)._open) == 0 and len(pickle.loads(pickle.dumps(ds))._open) == 0
    )  # workers reopen
    with pytest.raises(ValueError, match="stores"):
        LatentShards(export, key="latent")


def test_band_subsets_are_summed_and_their_statistics_combined(export) -> None:
    assert parse_bands(None, 3) == (0, 1, 2) and parse_bands("0:2", 3) == (0, 1) and parse_bands(2, 3) == (2,)
    assert (
        parse_bands([1, 0, 1], 3) == (0, 1) and parse_bands("1:", 3) == (1, 2) and parse_bands("1", 3) == (1,)
    )
    for bad in ("3", [0, 5], "a:b", "2:1", [True]):
        with pytest.raises(ConfigError, match="band") as e:
            parse_bands(bad, 3)
        assert e.value.param == "bands"
    ds = LatentShards(export, key="bands", bands=[0, 1])
    shard = load_shard(export, 0)
    assert torch.equal(ds[0]["latent"], shard["bands"][0, [0, 1]].sum(0))
    index = read_index(export)
    mean, std = export_stats(index, "bands", (0, 1))
    band_mean = torch.tensor(index["stats"]["bands"]["mean"], dtype=torch.float64)
    band_std = torch.tensor(index["stats"]["bands"]["std"], dtype=torch.float64)
    assert torch.allclose(mean, band_mean[:2].sum(0).float())
    assert torch.allclose(std, band_std[:2].pow(2).sum(0).sqrt().float())
    mean_all, _ = export_stats(index, "fused", None)
    assert mean_all.shape == (32,)


def test_statistics_come_from_the_tokenizer_where_it_has_some(export, image_folder, tmp_path) -> None:
    dm = LatentDataModule(str(export), batch_size=2, num_workers=0)  # the tokenizer uae encode recorded
    dm.setup("fit")
    space = dm.latent_space
    assert space.stats == "export" and space.what == "fused" and space.latent_shape == (32, 8, 8)
    assert space.tokenizer_fingerprint == tokenizer_fingerprint(dm.tokenizer_model)
    assert torch.equal(space.mean, export_stats(read_index(export), "fused", None)[0])
    tok = save_tokenizer(tmp_path / "tok_stats", seed=1, stats=True)
    other = encode(tok, image_folder, tmp_path / "lat_stats")
    dm = LatentDataModule(str(other), batch_size=2, num_workers=0)
    dm.setup("fit")
    space = dm.latent_space
    assert space.stats == "tokenizer" and space.mean.shape == (
        32,
        8,
        8,
    )  # a release's per-position statistics
    x = torch.stack([dm.train_set[i]["latent"] for i in range(2)])
    assert torch.equal(
        space.normalize(x), dm.tokenizer_model.normalize_latent(x)
    )  # the originals' arithmetic
    bands = LatentDataModule(str(other), what="bands", bands="0:2", batch_size=2, num_workers=0)
    bands.setup("fit")
    assert bands.latent_space.stats == "export" and bands.latent_space.bands == (0, 1)
    with pytest.raises(ConfigError, match="decoder's input") as e:
        LatentDataModule(str(other), what="bands", stats="tokenizer", num_workers=0).setup("fit")
    assert e.value.param == "stats"
    with pytest.raises(ConfigError, match="what='bands'"):
        LatentDataModule(str(other), bands=0)


def test_latents_of_another_tokenizer_are_refused(export, tmp_path) -> None:
    other = save_tokenizer(tmp_path / "other", seed=7)
    with pytest.raises(ConfigError, match="were not made by tokenizer") as e:
        LatentDataModule(str(export), tokenizer=str(other), num_workers=0).setup("fit")
    assert e.value.param == "tokenizer" and "\n" not in str(e.value)
    # An export from before the fingerprint was recorded: refused with what to do; encode again adds it.
    path = export / "index.json"
    index = json.loads(path.read_text())
    recorded = index["model"].pop("fingerprint")
    path.write_text(json.dumps(index))
    with pytest.raises(ConfigError, match="run the same uae encode command again"):
        LatentDataModule(str(export), num_workers=0).setup("fit")
    LatentDataModule(str(export), check_tokenizer=False, num_workers=0).setup("fit")
    tok = index["metadata"]["model"]
    encode(tok, index["metadata"]["data_path"], export)  # the same command resumes: nothing to encode
    assert read_index(export)["model"]["fingerprint"] == recorded


def test_held_out_split_and_batches(export) -> None:
    dm = LatentDataModule(str(export), val_fraction=0.25, batch_size=2, num_workers=0, seed=3)
    dm.setup("fit")
    train = {dm.train_set[i]["index"] for i in range(len(dm.train_set))}
    val = {dm.val_set[i]["index"] for i in range(len(dm.val_set))}
    assert len(val) == 2 and len(train) == 6 and not train & val
    again = LatentDataModule(str(export), val_fraction=0.25, batch_size=2, num_workers=0, seed=3)
    again.setup("fit")
    assert [again.val_set[i]["index"] for i in range(2)] == [dm.val_set[i]["index"] for i in range(2)]
    batch = next(iter(dm.train_dataloader()))
    assert batch["latent"].shape == (2, 32, 8, 8) and batch["latent"].dtype == torch.float32
    assert batch["label"].dtype == torch.long
    assert len(dm.train_dataloader()) == 3 and len(dm.val_dataloader()) == 1


def test_latent_space_saves_normalises_and_decodes(tmp_path, tiny_model) -> None:
    c = tiny_model.config.latent_dim
    tiny_model.set_latent_stats(torch.linspace(-1, 1, c), torch.linspace(0.5, 2, c))
    z = torch.randn(2, c, 8, 8)
    space = LatentSpace(
        "fused", None, "tokenizer", tiny_model.latent_mean, tiny_model.latent_std, (c, 8, 8), "t", "f"
    )
    assert torch.allclose(space.denormalize(space.normalize(z)), z, atol=1e-6)
    assert torch.equal(space.normalize(z), tiny_model.normalize_latent(z))
    assert torch.equal(
        space.decode(tiny_model, z), tiny_model.decode_latent(z, normalized=True, clamp=True).sample
    )
    space.save(tmp_path)
    back = LatentSpace.load(tmp_path)
    assert back.to_dict() == space.to_dict() and torch.equal(back.std, space.std)
    latent = LatentSpace("latent", None, "export", torch.zeros(c), torch.full((c,), 2.0), (c, 8, 8))
    with torch.no_grad():
        assert torch.equal(latent.decode(tiny_model, z), tiny_model.decode(z * 2.0, clamp=True).sample)
    bands = LatentSpace("bands", (0,), "none", latent_shape=(c, 8, 8))
    x = torch.randn(2, 3, c, 8, 8)
    assert torch.equal(bands.select(x), x[:, 0])
    assert LatentSpace.load(tmp_path / "nothing") is None


def test_a_generator_trained_on_band_0_decodes_through_its_latent_space(export, tmp_path) -> None:

    from uae.generation.pipeline import GenerationPipeline
    from uae.training import LatentDiffusionModule

    dm = LatentDataModule(str(export), what="bands", bands="0", batch_size=4, num_workers=0)
    module = LatentDiffusionModule(
        model_name="dit_dh_test", log_images_every_n_steps=0, export_dir=str(tmp_path / "g")
    )
    trainer = cpu_trainer(tmp_path, 2, enable_checkpointing=False)
    trainer.fit(module, dm)
    space = LatentSpace.load(tmp_path / "g")
    assert space.what == "bands" and space.bands == (0,) and space.stats == "export"
    pipe = GenerationPipeline.from_pretrained(str(tmp_path / "g"))
    out = pipe([0, 1], steps=3)
    expected = pipe.tokenizer.decode(space.denormalize(out.latents), clamp=True).sample  # split, fuse, render
    assert out.images.shape == (2, 3, 32, 32) and torch.allclose(out.images, expected, atol=1e-6)
