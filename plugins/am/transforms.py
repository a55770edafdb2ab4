"""Robustness transforms (jitter, scale, rotate) and regularisers (L2 decay, total variation).

Each image draws its own transforms from its own generator, every step's draws made up front, so
a unit's image sees the same transforms whether it is optimised alone or in a batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class RandomAffine:
    """Per image and step: a shift of up to ``jitter`` pixels, a zoom in ``scale``, a turn of up to ``rotate`` degrees.

    One ``grid_sample`` applies the whole batch's transforms; the output keeps the input's size, and
    what comes in from outside the image is grey (0.5), as in Lucid's padding.
    """

    def __init__(
        self,
        generators: list[torch.Generator],
        steps: int,
        size: tuple[int, int],
        jitter: float,
        scale: tuple[float, float],
        rotate: float,
        device: torch.device,
    ):
        self.active = jitter > 0 or scale != (1.0, 1.0) or rotate > 0
        if not self.active:
            return
        # (steps, images, 4) uniform draws in [0, 1): shift x, shift y, zoom, angle.
        draws = torch.stack([torch.rand(steps, 4, generator=g) for g in generators], dim=1).double()
        height, width = size
        shift_x = (2 * draws[..., 0] - 1) * jitter * 2 / width
        shift_y = (2 * draws[..., 1] - 1) * jitter * 2 / height
        zoom = scale[0] + (scale[1] - scale[0]) * draws[..., 2]
        angle = (2 * draws[..., 3] - 1) * math.radians(rotate)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [torch.stack([cos, -sin, shift_x], dim=-1), torch.stack([sin, cos, shift_y], dim=-1)], dim=-2
        )
        self.theta = theta.float().to(device)  # (steps, images, 2, 3)

    def __call__(self, images: torch.Tensor, step: int) -> torch.Tensor:
        if not self.active:
            return images
        grid = F.affine_grid(self.theta[step], list(images.shape), align_corners=False)
        return F.grid_sample(images - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5


def l2_decay(images: torch.Tensor) -> torch.Tensor:
    """Per image: the mean squared distance of its pixels from grey (0.5)."""
    return (images - 0.5).pow(2).flatten(1).mean(1)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Per image: the mean absolute difference between horizontal and vertical neighbours."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1)
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1)
    count = max(dx.shape[1] + dy.shape[1], 1)
    return (dx.sum(1) + dy.sum(1)) / count
