"""The one image conversion model transforms share: any image a data set gives, as an RGB PIL image."""

from __future__ import annotations

from typing import Any

import torch


def as_rgb(image: Any):
    """A PIL image (or an HxWxC / HxW array, converted to one) in RGB mode: grey and RGBA images are
    converted, so a network that takes three channels gets them. A tensor passes through unchanged."""
    from PIL import Image

    if not isinstance(image, (Image.Image, torch.Tensor)):
        import numpy as np

        image = Image.fromarray(np.asarray(image))
    if isinstance(image, Image.Image) and image.mode != "RGB":
        image = image.convert("RGB")
    return image
