"""Per-image pixel metrics: PSNR and SSIM as torchmetrics defines them, and 8-bit rounding.

:func:`ssim_per_image` applies SSIM's 11x11 Gaussian window along each axis: as one matrix product per
axis with the reflect padding folded into the matrices (:class:`_GaussianBlur`) up to 128 px on CPU and
at every size on other devices, as two depthwise convolutions on CPU above 128 px; a few images at a
time on CPU (they stay in the caches). At 64 px on one core it is about 12x faster than torchmetrics'
(``benchmarks/metrics_speed.py``). The images are centred on their means before the window, so the
float32 error against a float64 computation is ~1e-7 where torchmetrics' reaches 1e-5 on flat images.
Everything runs in float32 even inside an enclosing ``torch.autocast`` (:func:`full_precision`).
:class:`uae.evaluation.metrics.ReconstructionMetrics` accumulates these per image.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F

from uae.errors import InputError


def _levels(x: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` images -> their 8-bit levels ``0..255`` as float32 (clamped, rounded half to even)."""
    return (x.detach().float().clamp(0.0, 1.0) * 255.0).round_()


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` float images -> uint8 ``0..255`` (rounded, clamped)."""
    return _levels(x).to(torch.uint8)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round ``[0, 1]`` images to the 8-bit grid (what a saved PNG holds), back to float.

    The same values as ``to_uint8(x).float() / 255``, without the round trip through uint8.
    """
    return _levels(x).div_(255.0)


def full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """A context where an enclosing ``torch.autocast`` on ``device`` is off: the metrics compute in
    float32 even when called from a mixed-precision step (SSIM's window in bfloat16 is off by ~1e-3).

    Args:
        device: The device of the tensors the metrics run on.

    Returns:
        ``torch.autocast(device.type, enabled=False)`` on CPU and CUDA, a no-op context elsewhere.
    """
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def psnr_per_image(recon: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB of each image (torchmetrics' ``peak_signal_noise_ratio(dim=(1, 2, 3))`` per image).

    Args:
        recon: ``(B, C, H, W)``.
        ref: ``(B, C, H, W)``.
        data_range: Value range of the images.

    Returns:
        ``(B,)`` float32; ``inf`` for identical images.
    """
    mse = (recon.float() - ref.float()).square().flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


#: Elements of one SSIM chunk on CPU (about 8 images of 3x64x64, 1 of 3x256x256).
CPU_CHUNK_ELEMENTS = 2**17


def _gaussian_window(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    """The normalised 1-D Gaussian of torchmetrics' SSIM, ``(size,)`` float32."""
    dist = torch.arange((1 - size) / 2, (1 + size) / 2, 1.0, dtype=torch.float32, device=device)
    g = torch.exp(-((dist / sigma) ** 2) / 2)
    return g / g.sum()


def _reflect_blur_matrix(n: int, window: torch.Tensor) -> torch.Tensor:
    """The 1-D filter ``window`` over ``n`` samples with reflect padding, as an ``(n, n)`` matrix.

    ``M @ v`` equals ``conv1d(pad(v, reflect), window)`` for a length-``n`` ``v``: row ``i`` holds the
    window's taps at the columns they read, the padded ones folded back onto the samples they mirror.
    Requires ``n > len(window) // 2``.
    """
    size = window.numel()
    pad = (size - 1) // 2
    cols = torch.arange(n, device=window.device).view(n, 1) + torch.arange(size, device=window.device) - pad
    cols = cols.abs()  # reflect on the left: -j -> j
    cols = torch.where(cols > n - 1, 2 * (n - 1) - cols, cols)  # and on the right
    m = torch.zeros(n, n, dtype=window.dtype, device=window.device)
    return m.scatter_add_(1, cols, window.expand(n, size).contiguous())


def ssim_per_image(
    recon: torch.Tensor,
    ref: torch.Tensor,
    data_range: float = 1.0,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """SSIM of each image, as torchmetrics' ``structural_similarity_index_measure`` (Gaussian window,
    11x11 for ``sigma`` 1.5, reflect padding, mean over every pixel and channel), the window applied
    along each axis (:class:`_GaussianBlur`).

    Args:
        recon: ``(B, C, H, W)`` (``H, W`` > 5).
        ref: ``(B, C, H, W)``.
        data_range: Value range of the images.
        sigma: Standard deviation of the Gaussian window.
        k1: SSIM constant of the means.
        k2: SSIM constant of the variances.

    Returns:
        ``(B,)`` float32.
    """
    with full_precision(recon.device):
        return _ssim_per_image(recon.float(), ref.float(), data_range, sigma, k1, k2)


def _ssim_per_image(
    x: torch.Tensor, y: torch.Tensor, data_range: float, sigma: float, k1: float, k2: float
) -> torch.Tensor:
    size = int(3.5 * sigma + 0.5) * 2 + 1
    if min(x.shape[-2:]) <= size // 2:
        raise InputError(
            f"SSIM needs images of more than {size // 2} px on each side (its {size}x{size} window with "
            f"reflect padding), got {x.shape[-2]}x{x.shape[-1]}"
        )
    h, w = x.shape[-2:]
    blur = _gaussian_blur(h, w, size, sigma, x.device, _blur_as_matrices(h, w, x.device))
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    b = x.shape[0]
    chunk = b
    if x.device.type == "cpu":  # a few images at a time stay in the CPU's caches: 2-6x faster
        chunk = max(1, CPU_CHUNK_ELEMENTS // max(1, x[0].numel()))
    parts = [_ssim_index(x[i : i + chunk], y[i : i + chunk], blur, c1, c2) for i in range(0, b, chunk)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


#: Largest image side whose Gaussian window runs as dense matrix products on CPU. A dense product's cost
#: per pixel grows with the side: 1.6x faster than two depthwise convolutions at 64 px, even at 96-128 px,
#: 0.8x at 192-224 px (``benchmarks/metrics_speed.py``).
_MATRIX_BLUR_MAX_SIDE = 128


def _blur_as_matrices(h: int, w: int, device: torch.device) -> bool:
    """Whether :class:`_GaussianBlur` applies the window as matrix products on ``h x w`` images on ``device``."""
    return device.type != "cpu" or max(h, w) <= _MATRIX_BLUR_MAX_SIDE


@functools.lru_cache(maxsize=16)
def _gaussian_blur(
    h: int, w: int, size: int, sigma: float, device: torch.device, as_matrices: bool
) -> _GaussianBlur:
    """The :class:`_GaussianBlur` of a ``size``-tap window of ``sigma`` over ``h x w`` images on ``device``,
    built once (a metric update calls SSIM a few images at a time, each with the same window; building it
    took ~75 us). ``as_matrices``, :func:`_blur_as_matrices`'s answer, is only part of the key: a cached
    blur follows the crossover in force (tests and ``benchmarks/metrics_speed.py`` change it)."""
    del as_matrices  # the key only
    return _GaussianBlur(h, w, _gaussian_window(size, sigma, device))


class _GaussianBlur:
    """The SSIM window over ``(..., H, W)`` images with reflect padding, the way that is fastest here.

    On CPU up to :data:`_MATRIX_BLUR_MAX_SIDE` px, and on other devices (where float32 matrix products do
    not use TF32 unless the user enabled it, unlike cuDNN's convolutions), one matrix product per axis,
    the padding folded into the matrices (:func:`_reflect_blur_matrix`); on CPU above it, reflect padding
    and two depthwise convolutions. Both give the same values within float32 rounding.

    Args:
        h: Image height.
        w: Image width.
        window: The 1-D window ``(size,)``; ``size // 2`` < ``h, w``.
    """

    def __init__(self, h: int, w: int, window: torch.Tensor) -> None:
        self.window = window
        self.matrices = _blur_as_matrices(h, w, window.device)
        if self.matrices:
            self.along_h = _reflect_blur_matrix(h, window)
            self.along_w_t = _reflect_blur_matrix(w, window).t()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> the same shape, blurred along H and W."""
        if self.matrices:
            return torch.matmul(torch.matmul(self.along_h, x), self.along_w_t)
        size, ch = self.window.numel(), x.shape[1]
        pad = (size - 1) // 2
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        x = F.conv2d(x, self.window.view(1, 1, size, 1).expand(ch, 1, size, 1), groups=ch)
        return F.conv2d(x, self.window.view(1, 1, 1, size).expand(ch, 1, 1, size), groups=ch)


def _ssim_index(x: torch.Tensor, y: torch.Tensor, blur: _GaussianBlur, c1: float, c2: float) -> torch.Tensor:
    """Mean SSIM of each image of ``(B, C, H, W)`` float32 ``x`` against ``y``: ``(B,)``.

    ``blur`` applies the Gaussian window; the arithmetic after it runs in place on its output.
    """
    b, c = x.shape[:2]
    # Local (co)variances from images centred on their mean: E[x^2] - E[x]^2 then cancels far less in
    # flat areas (float32 error ~1e-7 instead of ~1e-5 of torchmetrics' on flat reconstructions).
    mx = x.mean(dim=(2, 3), keepdim=True)
    my = y.mean(dim=(2, 3), keepdim=True)
    stack = x.new_empty((b, 5 * c) + x.shape[2:])
    xc, yc, xx, yy, xy = stack.split(c, dim=1)
    torch.sub(x, mx, out=xc)
    torch.sub(y, my, out=yc)
    torch.mul(xc, xc, out=xx)
    torch.mul(yc, yc, out=yy)
    torch.mul(xc, yc, out=xy)
    stack = blur(stack)
    mu_xc, mu_yc, xx, yy, xy = stack.split(c, dim=1)
    tmp = mu_xc * mu_yc
    cs_num = xy.sub_(tmp).mul_(2.0).add_(c2)  # 2 cov + c2
    var_x = xx.sub_(mu_xc * mu_xc).clamp_min_(0.0)
    var_y = yy.sub_(mu_yc * mu_yc).clamp_min_(0.0)
    cs_den = var_x.add_(var_y).add_(c2)
    mu_x, mu_y = mu_xc.add_(mx), mu_yc.add_(my)
    l_num = torch.mul(mu_x, mu_y, out=tmp).mul_(2.0).add_(c1)  # 2 mu_x mu_y + c1
    l_den = mu_x.mul_(mu_x).add_(mu_y.mul_(mu_y)).add_(c1)  # mu_x^2 + mu_y^2 + c1
    return l_num.mul_(cs_num).div_(l_den.mul_(cs_den)).reshape(b, -1).mean(-1)
