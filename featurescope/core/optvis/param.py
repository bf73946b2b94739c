"""How the optimised image is parameterised: a Fourier spectrum and decorrelated colours.

Olah et al., "Feature Visualization" (Distill 2017), and Lucid / Lucent
(``lucent/optvis/param/spatial.py`` and ``color.py``): optimising pixels directly gives
high-frequency noise that excites a channel without looking like anything. Instead the
image is the inverse real FFT of a spectrum whose entries are scaled by 1 / frequency
(so every frequency is about equally easy to change), divided by Lucid's "magic" 4,
mixed through the square root of ImageNet's colour correlation matrix (so the
optimiser moves in decorrelated colour directions), and squashed into [0, 1] with a
sigmoid. One-channel networks get a grey image (no colour mixing).
"""
from __future__ import annotations

import numpy as np
import torch

# Square root of ImageNet's colour correlation matrix (Lucid), columns normalised.
COLOR_CORRELATION_SVD_SQRT = np.asarray([[0.26, 0.09, 0.02],
                                         [0.27, 0.00, -0.05],
                                         [0.27, -0.09, 0.03]], dtype=np.float32)
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))

INIT_SD = 0.01  # spectrum initialisation scale (Lucent's default)
MAGIC = 4.0  # Lucid's constant: a larger value gives less saturated colours


def rfft2d_freqs(height: int, width: int) -> np.ndarray:
    """The (height, width // 2 + 1) spatial frequencies of a real 2-D FFT."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)  # width // 2 + 1 entries, also for odd widths
    return np.sqrt(fx * fx + fy * fy)


def spectrum_scale(height: int, width: int, decay_power: float = 1.0) -> torch.Tensor:
    """(1, 1, H, W//2+1, 1) float32: 1 / frequency, the lowest frequency clamped."""
    freqs = rfft2d_freqs(height, width)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(height, width)) ** decay_power
    return torch.from_numpy(scale.astype(np.float32))[None, None, ..., None]


def init_spectrum(seeds: list[int], channels: int, height: int, width: int) -> torch.Tensor:
    """(N, channels, H, W//2+1, 2) starting spectra, image i drawn from its own seed, so
    an image does not depend on which others share its batch."""
    shape = (channels, height, width // 2 + 1, 2)
    parts = []
    for seed in seeds:
        generator = torch.Generator().manual_seed(int(seed))
        parts.append(torch.randn(shape, generator=generator) * INIT_SD)
    return torch.stack(parts)


def spectrum_to_image(spectrum: torch.Tensor, scale: torch.Tensor, height: int, width: int,
                      decorrelate: bool = True) -> torch.Tensor:
    """The (N, C, H, W) image in [0, 1] that ``spectrum`` stands for (differentiable)."""
    complex_spectrum = torch.view_as_complex((scale * spectrum).contiguous())
    image = torch.fft.irfftn(complex_spectrum, s=(height, width), norm="ortho") / MAGIC
    if decorrelate and image.shape[1] == 3:
        matrix = torch.as_tensor(COLOR_CORRELATION.T, device=image.device, dtype=image.dtype)
        image = torch.einsum("nchw,cd->ndhw", image, matrix)
    return torch.sigmoid(image)


def seeds_for(seed: int, channels: list[int]) -> list[int]:
    """One seed per channel, fixed by (``seed``, channel): a channel's image is the same
    whether it is optimised alone or in a batch with others."""
    return [int(np.random.SeedSequence([int(seed), int(c)]).generate_state(1, np.uint32)[0])
            for c in channels]


def image_to_spectrum(image: torch.Tensor, scale: torch.Tensor, decorrelate: bool = True) -> torch.Tensor:
    """The spectrum :func:`spectrum_to_image` turns into ``image`` ((N, C, H, W) in [0, 1],
    clamped just inside it so the sigmoid can be undone): an optimisation can start from
    a photo instead of noise."""
    height, width = image.shape[-2:]
    x = torch.logit(image.float().clamp(0.02, 0.98))
    if decorrelate and x.shape[1] == 3:
        inverse = torch.linalg.inv(torch.as_tensor(COLOR_CORRELATION.T, dtype=x.dtype))
        x = torch.einsum("nchw,cd->ndhw", x, inverse)
    spectrum = torch.fft.rfftn(x * MAGIC, s=(height, width), norm="ortho")
    return torch.view_as_real(spectrum) / scale.to(x.device)
