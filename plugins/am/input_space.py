"""The AM image's space: its shape, and the normalisation that turns a [0, 1] image into the model's input."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.sources.base import LoadedModel
from selectivity_eval.plugins.am.params import OptimiseParams

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class InputSpace:
    """The AM image (C, H, W) in [0, 1], and the normalisation that turns it into the model's input."""

    channels: int
    size: tuple[int, int]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def to_model(self, images: torch.Tensor) -> torch.Tensor:
        if self.mean is None or self.std is None:
            return images
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        return (images - mean) / std

    def zeros(self, n: int = 1, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.zeros(n, self.channels, *self.size, device=device)


def transform_normalisation(transform) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The ``mean``/``std`` of a transform, or of one it wraps (``preset``, ``transforms``, ``transform``)."""
    pending, seen = [transform], set()
    while pending:
        item = pending.pop(0)
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        mean, std = getattr(item, "mean", None), getattr(item, "std", None)
        if mean is not None and std is not None and not callable(mean):
            try:
                return tuple(float(m) for m in mean), tuple(float(s) for s in std)
            except TypeError:
                pass
        for attribute in ("preset", "transforms", "transform"):
            child = getattr(item, attribute, None)
            pending.extend(child if isinstance(child, (list, tuple)) else [child])
    return None


def input_space(model: LoadedModel, params: OptimiseParams, where: str = "") -> InputSpace:
    """The AM image's shape (``image_size``/``channels``, else the model's ``example_input``) and normalisation."""
    example = model.example_input
    if example is not None and example.ndim != 4:
        raise UserInputError(
            f"The model's example input has shape {tuple(example.shape)}; gradient ascent makes images "
            "and needs a (batch, channels, height, width) input."
        )
    if example is None and (params.image_size is None or params.channels is None):
        missing = "image_size" if params.image_size is None else "channels"
        raise UserInputError(
            f"{where}{missing}: the model gives no example input, so give the image's `image_size` and `channels`."
        )
    channels = params.channels or int(example.shape[1])
    size = (params.image_size, params.image_size) if params.image_size else (int(example.shape[2]), int(example.shape[3]))
    normalisation = None
    if params.normalise == "imagenet":
        normalisation = (IMAGENET_MEAN, IMAGENET_STD)
    elif params.normalise == "auto":
        normalisation = transform_normalisation(model.transform)
    if normalisation is not None and len(normalisation[0]) not in (1, channels):
        raise UserInputError(
            f"{where}normalise: the normalisation has {len(normalisation[0])} channels, the image {channels}; "
            "set normalise: none, or channels."
        )
    return InputSpace(channels, size, *(normalisation or (None, None)))
