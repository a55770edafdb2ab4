"""The ``digits`` data set: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes)."""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import TensorDataset

from selectivity_eval.core.registry.hookspecs import hookimpl
from selectivity_eval.core.sources.base import DatasetSource, LoadedDataset
from selectivity_eval.schemas.params import PluginParams


class DigitsParams(PluginParams):
    split: Literal["all", "train", "test"] = Field("all", description="Which images: all, or one side of the split.")
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0, description="Share of each class held out as the test split.")
    split_seed: int = Field(0, description="Seed of the stratified train/test split.")


def split_indices(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified, seeded train/test split of image indices."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    train, test = train_test_split(indices, test_size=test_fraction, random_state=seed, stratify=labels)
    return np.sort(train), np.sort(test)


def digits_arrays(split: str = "all", test_fraction: float = 0.25, split_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 (N, 1, 8, 8) scaled to [0, 1], and int64 labels, for one split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    if split != "all":
        train, test = split_indices(labels, test_fraction, split_seed)
        chosen = train if split == "train" else test
        images, labels = images[chosen], labels[chosen]
    return images, labels


class Digits(DatasetSource):
    """scikit-learn's bundled handwritten digits: 1,797 real 8x8 images of 0-9, no download."""

    name = "digits"
    Params = DigitsParams

    def load(self, *, seed: int, transform=None) -> LoadedDataset:
        p = self.params
        images, labels = digits_arrays(p.split, p.test_fraction, p.split_seed)
        tensor = torch.from_numpy(images)
        if transform is not None:
            tensor = torch.stack([transform(image) for image in tensor])
        digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
        return LoadedDataset(
            dataset=TensorDataset(tensor, torch.from_numpy(labels)),
            labels=labels,
            class_names=[str(digit) for digit in range(10)],
            identity={"source": "sklearn.datasets.load_digits", "n_images": len(labels), "sha256": digest},
        )


@hookimpl
def register_datasets(register):
    register(Digits)
