"""The authors' v2 band scheme ``dct_zigzag``: zigzag order, keep-N masks, training-only random N."""

from __future__ import annotations

import pytest
import torch

import uae
from uae.layers.bands import build_band_scheme
from uae.layers.bands.dct_zigzag import ZigzagLowpass, zigzag_keep_mask
from uae.layers.spectral import dct_matrix, zigzag_order, zigzag_rank


def _coefficients(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D DCT-II of ``(..., H, W)``."""
    h, w = x.shape[-2:]
    return dct_matrix(h) @ x @ dct_matrix(w).mT


# Written out by hand from the anti-diagonal walk (y, x): even diagonals go down-left, odd ones up-right.
ZIGZAG_BY_HAND = {
    (3, 3): [(0, 0), (1, 0), (0, 1), (0, 2), (1, 1), (2, 0), (2, 1), (1, 2), (2, 2)],
    (2, 4): [(0, 0), (1, 0), (0, 1), (0, 2), (1, 1), (1, 2), (0, 3), (1, 3)],
    (4, 2): [(0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (3, 0), (2, 1), (3, 1)],
    (1, 3): [(0, 0), (0, 1), (0, 2)],
}


@pytest.mark.parametrize("hw", list(ZIGZAG_BY_HAND))
def test_zigzag_order_matches_hand_written_scan(hw: tuple[int, int]) -> None:
    h, w = hw
    expected = [y * w + x for y, x in ZIGZAG_BY_HAND[hw]]
    assert zigzag_order(h, w).tolist() == expected
    rank = zigzag_rank(h, w)
    assert [rank[y, x].item() for y, x in ZIGZAG_BY_HAND[hw]] == list(range(h * w))


def test_zigzag_order_is_a_permutation_starting_at_dc_on_large_grids() -> None:
    for h, w in [(16, 16), (7, 5), (5, 7)]:
        order = zigzag_order(h, w)
        assert sorted(order.tolist()) == list(range(h * w))
        assert order[0] == 0 and order[-1] == h * w - 1
    with pytest.raises(ValueError, match="non-empty"):
        zigzag_order(0, 4)


@pytest.mark.parametrize("hw", [(4, 4), (3, 5)])
def test_keep_n_masks_count_and_nest(hw: tuple[int, int]) -> None:
    h, w = hw
    previous = torch.zeros(h, w)
    for n in range(h * w + 1):
        mask = zigzag_keep_mask(h, w, n)
        assert mask.sum() == n
        assert bool((mask >= previous).all())  # N+1 keeps everything N kept
        previous = mask
    assert zigzag_keep_mask(h, w, 10**6).sum() == h * w
    batched = zigzag_keep_mask(h, w, torch.tensor([0, 3, h * w]))
    assert batched.shape == (3, 1, h, w)
    assert batched.flatten(1).sum(1).tolist() == [0, 3, h * w]


def test_eval_split_keeps_exactly_the_first_n_coefficients_and_is_deterministic() -> None:
    torch.manual_seed(0)
    z = torch.randn(2, 3, 6, 6)
    proj = build_band_scheme(
        2, transform="dct", scheme="dct_zigzag", grid_size=6, zigzag={"keep_count": 9}
    ).eval()
    bands = proj(z)
    assert bands.shape == (2, 2, 3, 6, 6)
    torch.testing.assert_close(bands.sum(1), z, atol=1e-6, rtol=0)
    mask = zigzag_keep_mask(6, 6, 9).bool()
    low = _coefficients(bands[:, 0])
    high = _coefficients(bands[:, 1])
    torch.testing.assert_close(low[..., mask], _coefficients(z)[..., mask], atol=1e-5, rtol=0)
    assert low[..., ~mask].abs().max() < 1e-5
    assert high[..., mask].abs().max() < 1e-5
    torch.testing.assert_close(proj(bands[:, 0])[:, 0], bands[:, 0], atol=1e-5, rtol=0)  # idempotent
    torch.manual_seed(123)
    assert torch.equal(proj(z), bands)  # no randomness at evaluation
    torch.testing.assert_close(proj.split_iterative(z), bands)
    energy = proj.band_energy(z)
    expected = low.pow(2).sum((1, 2, 3)) / _coefficients(z).pow(2).sum((1, 2, 3))
    torch.testing.assert_close(energy[:, 0], expected, atol=1e-5, rtol=0)


def test_eval_off_passes_the_latent_through() -> None:
    z = torch.randn(2, 3, 4, 4)
    proj = build_band_scheme(2, transform="dct", scheme="dct_zigzag", grid_size=4).eval()
    bands = proj(z)
    assert torch.equal(bands[:, 0], z)
    assert torch.equal(bands[:, 1], torch.zeros_like(z))


def _kept_counts(bands: torch.Tensor) -> list[int]:
    return (_coefficients(bands[:, 0]).abs().amax(1) > 1e-4).flatten(1).sum(1).tolist()


def test_random_n_only_in_training_mode_per_sample_within_range() -> None:
    torch.manual_seed(0)
    z = torch.randn(64, 2, 8, 8) + 0.5
    opts = {"keep_count": 20, "count_min": 10, "count_max": 30, "apply_prob": 1.0}
    proj = build_band_scheme(2, transform="dct", scheme="dct_zigzag", grid_size=8, zigzag=opts)
    proj.train()
    counts = _kept_counts(proj(z))
    assert min(counts) >= 10 and max(counts) <= 30
    assert len(set(counts)) > 5  # one N per sample
    torch.testing.assert_close(proj(z).sum(1), z, atol=1e-5, rtol=0)
    proj.eval()
    assert set(_kept_counts(proj(z))) == {20}


def test_apply_prob_draws_once_per_training_batch() -> None:
    z = torch.randn(4, 2, 8, 8) + 0.5
    low = ZigzagLowpass(keep_count=5, count_min=3, count_max=6, apply_prob=0.5).train()
    torch.manual_seed(0)
    results = [low.keep_counts(4, 8, 8, z.device) for _ in range(200)]
    off = [bool((r == 64).all()) for r in results]
    assert 60 < sum(off) < 140  # about half of the batches are not low-passed at all
    assert all(bool((r <= 6).all() and (r >= 3).all()) for r, o in zip(results, off) if not o)
    never = ZigzagLowpass(keep_count=5, apply_prob=0.0).train()
    assert never.keep_counts(4, 8, 8, z.device).tolist() == [64] * 4
    fixed = ZigzagLowpass(keep_count=5).train()
    assert fixed.keep_counts(2, 8, 8, z.device).tolist() == [5, 5]
    assert fixed.eval().keep_counts(2, 2, 2, z.device).tolist() == [4, 4]  # clipped to the grid


def test_zigzag_options_are_validated() -> None:
    with pytest.raises(ValueError, match="together"):
        ZigzagLowpass(count_min=3)
    with pytest.raises(ValueError, match="apply_prob"):
        ZigzagLowpass(apply_prob=1.5)
    with pytest.raises(ValueError, match="num_bands=2"):
        build_band_scheme(3, transform="dct", scheme="dct_zigzag")
    with pytest.raises(ValueError, match="only used"):
        build_band_scheme(2, transform="dct", zigzag={"keep_count": 3})


def _zigzag_config(**overrides) -> uae.UAEConfig:
    base = uae.create_model("uae_test").config.to_dict()
    base.update(
        band_scheme="dct_zigzag",
        band_transform="dct",
        num_bands=2,
        band_mixing=True,
        zigzag_keep_count=5,
        zigzag_count_min=2,
        zigzag_count_max=9,
        zigzag_apply_prob=0.5,
    )
    base.update(overrides)
    return uae.UAEConfig(**base)


def test_config_fields_validated_and_defaults_leave_other_schemes_alone() -> None:
    assert uae.UAEConfig().zigzag_keep_count is None
    _zigzag_config()
    for bad, match in [
        ({"num_bands": 3}, "num_bands=2"),
        ({"band_mixing": False}, "band_mixing=True"),
        ({"band_transform": "fft"}, "band_transform='dct'"),
        ({"zigzag_count_max": None}, "together"),
        ({"zigzag_count_min": 10}, "> zigzag_count_max"),
        ({"zigzag_keep_count": -1}, "non-negative"),
        ({"zigzag_apply_prob": 2.0}, r"\[0, 1\]"),
        ({"band_scheme": "smooth", "band_transform": "fft", "num_bands": 4}, "only apply"),
    ]:
        with pytest.raises(ValueError, match=match):
            _zigzag_config(**bad)


def test_model_decodes_the_kept_coefficients_only() -> None:
    torch.manual_seed(0)
    model = uae.UAE(_zigzag_config()).eval()
    with torch.no_grad():
        model.modulator.conv_out.weight.normal_()  # a non-trivial modulator must still see band 0 only
        x = torch.rand(2, 3, 32, 32)
        out = model(x)
        torch.testing.assert_close(out.bands.sum(1), out.latent, atol=1e-5, rtol=0)
        only_low = model.render(
            model.fuse(torch.stack([out.bands[:, 0], torch.zeros_like(out.bands[:, 1])], 1))
        )
        torch.testing.assert_close(out.sample, only_low)
        torch.testing.assert_close(model.decode(out.latent).sample, out.sample)
        torch.testing.assert_close(model.decode(out.bands[:, 0]).sample, out.sample, atol=1e-5, rtol=0)
