"""Class labels of a data set's images, coded for the shared statistics."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch


@dataclass(frozen=True)
class Labels:
    """Class labels of the images, coded 0..C-1 in ascending order of the original label values.

    Only classes with at least one image exist, so ``counts`` is never zero.
    """

    codes: torch.Tensor
    classes: np.ndarray
    counts: torch.Tensor

    @classmethod
    def from_array(cls, labels, device: torch.device | str = "cpu") -> Labels:
        values = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        if values.ndim != 1:
            raise ValueError(f"labels must be one-dimensional, got shape {values.shape}")
        if values.size == 0:
            raise ValueError("labels are empty: there are no images")
        classes, codes = np.unique(values, return_inverse=True)
        codes_t = torch.as_tensor(codes.astype(np.int64), device=device)
        counts = torch.bincount(codes_t, minlength=len(classes))
        return cls(codes=codes_t, classes=classes, counts=counts)

    @property
    def n_images(self) -> int:
        return int(self.codes.shape[0])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device | str) -> Labels:
        return Labels(self.codes.to(device), self.classes, self.counts.to(device))

    def shuffled(self, generator: torch.Generator) -> Labels:
        """The same labels assigned to the images in a random order (class sizes unchanged)."""
        order = torch.randperm(self.n_images, generator=generator).to(self.codes.device)
        return Labels(self.codes[order], self.classes, self.counts)

    @cached_property
    def grouped(self) -> tuple[np.ndarray, np.ndarray]:
        """Image indices grouped by class (ascending within a class), and where each class starts
        and ends in them: class ``c`` is ``order[starts[c]:starts[c + 1]]``."""
        codes = self.codes.cpu().numpy()
        # numpy sorts 16-bit integers stably by radix, ten times faster than 64-bit ones.
        order = np.argsort(codes.astype(np.int16) if self.n_classes <= 2**15 else codes, kind="stable")
        starts = np.zeros(self.n_classes + 1, dtype=np.int64)
        np.cumsum(np.bincount(codes, minlength=self.n_classes), out=starts[1:])
        return order, starts

    def class_values(self, codes: torch.Tensor) -> np.ndarray:
        """Original label values for a tensor of class codes."""
        return self.classes[codes.detach().cpu().numpy()]
