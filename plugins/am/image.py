"""The image being optimised: pixel or Fourier parameters, decorrelated colour, sigmoid to [0, 1].

Everything here acts on each image of the batch on its own, so an image optimised alone and the
same image optimised inside a batch follow the same path (see ``am_engine``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

# Square root of the colour correlation of ImageNet images (Olah et al. 2017, Lucid's
# ``color_correlation_svd_sqrt``), normalised so its largest column has norm 1.
COLOUR_CORRELATION_SQRT = np.asarray(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32
)
COLOUR_DECORRELATION = COLOUR_CORRELATION_SQRT / np.max(np.linalg.norm(COLOUR_CORRELATION_SQRT, axis=0))
INIT_SD = 0.01
FOURIER_MAGIC = 4.0  # Lucid's divisor that keeps the initial image near grey


def rfft2d_freqs(height: int, width: int) -> np.ndarray:
    """Frequency magnitude (cycles per pixel) of each coefficient of ``torch.fft.rfft2`` of an HxW image."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    return np.sqrt(fx * fx + fy * fy)


class ImageParameters:
    """A batch of images as trainable parameters; ``images()`` gives them in [0, 1], (N, C, H, W).

    ``initial`` holds one standard normal draw per image (drawn from that image's own generator),
    shaped like ``shape_of(...)``; it is scaled by ``INIT_SD``.
    """

    def __init__(self, kind: str, initial: torch.Tensor, channels: int, size: tuple[int, int], decorrelate: bool):
        self.kind = kind
        self.channels = channels
        self.height, self.width = size
        self.decorrelate = decorrelate and channels == 3
        device = initial.device
        self.tensor = (initial * INIT_SD).requires_grad_(True)
        freqs = torch.from_numpy(rfft2d_freqs(self.height, self.width)).float().to(device)
        self.freqs = freqs
        if kind == "fourier":
            self.spectrum_scale = 1.0 / freqs.clamp(min=1.0 / max(self.height, self.width)) / FOURIER_MAGIC
        self.colour = torch.from_numpy(COLOUR_DECORRELATION).to(device)

    @staticmethod
    def shape_of(kind: str, channels: int, size: tuple[int, int]) -> tuple[int, ...]:
        """The shape of one image's parameters."""
        height, width = size
        if kind == "fourier":
            return (channels, height, width // 2 + 1, 2)
        return (channels, height, width)

    def parameters(self) -> list[torch.Tensor]:
        return [self.tensor]

    def unbounded(self) -> torch.Tensor:
        """The image before colour decorrelation and sigmoid."""
        if self.kind == "fourier":
            spectrum = torch.view_as_complex(self.tensor) * self.spectrum_scale
            return torch.fft.irfft2(spectrum, s=(self.height, self.width), norm="ortho")
        return self.tensor

    def images(self) -> torch.Tensor:
        image = self.unbounded()
        if self.decorrelate:
            image = torch.einsum("nchw,dc->ndhw", image, self.colour)
        return torch.sigmoid(image)

    @torch.no_grad()
    def blur_(self, sigma: float) -> None:
        """Blur each image (before the sigmoid) with a Gaussian of ``sigma`` pixels, wrapping at the edges.

        For Fourier parameters this is a product with the Gaussian's spectrum; for pixels, a circular
        convolution. Both commute with the colour decorrelation, a per-pixel linear map.
        """
        if self.kind == "fourier":
            gain = torch.exp(-2.0 * math.pi**2 * sigma**2 * self.freqs**2)
            self.tensor.mul_(gain[None, None, :, :, None])
            return
        n, c, h, w = self.tensor.shape
        radius = max(1, min(math.ceil(3 * sigma), h - 1, w - 1))
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=self.tensor.device)
        kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum()
        flat = self.tensor.reshape(n * c, 1, h, w)
        flat = torch.nn.functional.pad(flat, (radius, radius, 0, 0), mode="circular")
        flat = torch.nn.functional.conv2d(flat, kernel.view(1, 1, 1, -1))
        flat = torch.nn.functional.pad(flat, (0, 0, radius, radius), mode="circular")
        flat = torch.nn.functional.conv2d(flat, kernel.view(1, 1, -1, 1))
        self.tensor.copy_(flat.reshape(n, c, h, w))
