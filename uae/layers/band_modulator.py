"""Band modulator: high-band noise injection (training only) and the spectral-transform residual."""

from __future__ import annotations

import torch
from torch import nn

from uae.errors import InputError


class BandModulator(nn.Module):
    """Fuse ``K`` bands into one latent: ``q = sum_k b_k + delta(concat_k b_k)``.

    In training mode Gaussian noise ``N(0, noise_std^2)`` is added to every band ``k >= noise_min_band``
    first (band 0 is never noised). ``delta`` is the *spectral transform*: conv -> SiLU -> conv over
    the channel-concatenated bands. Its last conv is zero-initialised, so a fresh modulator is the
    identity on the sum of bands.

    Args:
        latent_dim: Latent channels ``C``.
        num_bands: ``K``.
        hidden_dim: Hidden channels of the spectral transform.
        in_kernel: Kernel size of the first conv (``K*C -> hidden``).
        out_kernel: Kernel size of the second conv (``hidden -> C``).
        noise_std: Noise std for the high bands; 0 disables noise.
        noise_min_band: First noised band (>= 1).
        band_mixing: Learnable ``K x K`` band-mixing pair (identity-initialised) applied before fusion.
    """

    def __init__(
        self,
        latent_dim: int,
        num_bands: int,
        hidden_dim: int = 256,
        in_kernel: int = 1,
        out_kernel: int = 3,
        noise_std: float = 0.0,
        noise_min_band: int = 1,
        band_mixing: bool = False,
    ) -> None:
        super().__init__()
        if noise_min_band < 1:
            raise InputError(
                f"noise_min_band must be >= 1 (band 0 is never noised), got {noise_min_band}",
                param="noise_min_band",
            )
        self.num_bands = num_bands
        self.noise_std = float(noise_std)
        self.noise_min_band = noise_min_band
        self.conv_in = nn.Conv2d(num_bands * latent_dim, hidden_dim, in_kernel, padding=in_kernel // 2)
        self.act = nn.SiLU()
        self.conv_out = nn.Conv2d(hidden_dim, latent_dim, out_kernel, padding=out_kernel // 2)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        if band_mixing:
            self.mix_in = nn.Parameter(torch.eye(num_bands))
            self.mix_out = nn.Parameter(torch.eye(num_bands))
        else:
            self.mix_in = None
            self.mix_out = None

    def extra_repr(self) -> str:
        return f"num_bands={self.num_bands}, noise_std={self.noise_std}, noise_min_band={self.noise_min_band}"

    def noise_mask(self, device: torch.device | None = None) -> torch.Tensor:
        """Binary mask ``m`` of shape ``(K,)``: 1 for the bands that receive noise."""
        m = torch.zeros(self.num_bands, device=device)
        m[self.noise_min_band :] = 1.0
        return m

    def add_noise(self, bands: torch.Tensor) -> torch.Tensor:
        """Add ``N(0, noise_std^2)`` to the high bands; identity in eval mode or when ``noise_std == 0``.

        Args:
            bands: ``(B, K, C, H, W)``.

        Returns:
            Bands of the same shape.
        """
        if not self.training or self.noise_std <= 0 or self.noise_min_band >= self.num_bands:
            return bands
        mask = self.noise_mask(bands.device).to(bands.dtype).view(1, -1, 1, 1, 1)
        return bands + torch.randn_like(bands) * (self.noise_std * mask)

    def forward(self, bands: torch.Tensor) -> torch.Tensor:
        """Fuse bands into the decoder's latent.

        Args:
            bands: ``(B, K, C, H, W)``.

        Returns:
            Fused latent ``q`` of shape ``(B, C, H, W)``.
        """
        if bands.ndim != 5 or bands.shape[1] != self.num_bands:
            raise InputError(
                f"BandModulator expects bands (B, {self.num_bands}, C, H, W), got shape {tuple(bands.shape)}",
                param="bands",
            )
        bands = self.add_noise(bands)
        if self.mix_in is not None:
            mix = self.mix_out @ self.mix_in
            bands = torch.einsum("jk,bkchw->bjchw", mix.to(bands.dtype), bands)
        delta = self.conv_out(self.act(self.conv_in(bands.flatten(1, 2))))
        return bands.sum(dim=1) + delta.to(bands.dtype)
