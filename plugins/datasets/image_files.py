"""Shared pieces of the image data sets read from disk: reading images, the Dataset, listing and selection.

Data sets list their files once at load, select a deterministic subset of them (``limit_per_class``,
then a seeded ``subset``) and read each image lazily with Pillow in ``dataset[i]``. An image that
cannot be read or decoded gives ``(None, label)`` instead of raising; the engine then skips or
stops according to ``on_unreadable``. ImageNet-1k class indices follow torchvision's order (the
1,000 WordNet ids sorted), so a torchvision classifier's output index compares with them directly;
``plugins/datasets/imagenet_wnids.txt`` holds that list. No plugin is registered here.
"""

from __future__ import annotations

import hashlib
import os
import struct
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xxhash
from pydantic import Field, field_validator
from torch.utils.data import Dataset

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.sources.base import LoadedDataset
from selectivity_eval.schemas.params import PluginParams, Seed

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's warning threshold: 1024 * 1024 * 1024 // 4 // 3
PILLOW_MAX_PIXELS = 2 * DEFAULT_MAX_PIXELS  # Pillow refuses larger images itself
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
WNIDS_FILE = "imagenet_wnids.txt"


# ----------------------------------------------------------------------------------------------
# Reading one image


def _unreadable_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image

    # UnidentifiedImageError, truncated files, missing or unreadable files are OSErrors; broken
    # headers surface as SyntaxError, ValueError, EOFError or struct.error in Pillow's decoders.
    return (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


def read_rgb(path: str, max_pixels: int = DEFAULT_MAX_PIXELS, before_decoding=None):
    """The image at ``path`` decoded as an RGB PIL image, or None when it cannot be read or decoded.

    An image of more than ``max_pixels`` pixels is refused from its header, before decoding: a
    small file can declare a huge image (a decompression bomb). Pillow's own warning for such
    images is silenced here, since the limit is ours; Pillow still refuses beyond ``PILLOW_MAX_PIXELS``.
    ``before_decoding(image)`` is called on the opened, accepted image before it is decoded (the
    report's tiles set a reduced JPEG decoding size there).
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            width, height = image.size
            if width * height > max_pixels:
                return None
            if before_decoding is not None:
                before_decoding(image)
            return image.convert("RGB")  # convert() decodes the whole image, so truncation shows here
    except _unreadable_errors():
        return None


def _to_tensor(image):
    from torchvision.transforms.functional import to_tensor

    return to_tensor(image)


class ImageFiles(Dataset):
    """Image files with labels; item ``i`` is ``(transform(image), label)``, or ``(None, label)`` if unreadable.

    A plain class holding paths, labels and the transform, so DataLoader workers can pickle it.
    Without a transform an item is a float tensor (3, H, W) in [0, 1].
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[int],
        transform: Callable[[Any], Any] | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        if len(paths) != len(labels):
            raise ValueError("paths and labels differ in length")
        self.paths = list(paths)
        self.labels = [int(label) for label in labels]
        self.transform = transform
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        label = self.labels[index]
        image = read_rgb(self.paths[index], self.max_pixels)
        if image is None:
            return None, label
        return (_to_tensor(image) if self.transform is None else self.transform(image)), label

    def describe(self, index: int) -> str:
        """The path of item ``index``."""
        return self.paths[index]


# ----------------------------------------------------------------------------------------------
# Listing, selection, identity


@dataclass(frozen=True)
class Item:
    """One image file: its path relative to the data set root (with ``/``), its absolute path, its label."""

    relative: str
    path: str
    label: int


def select_items(items: list[Item], limit_per_class: int | None, subset: int | None, seed: int) -> list[Item]:
    """The first ``limit_per_class`` items of each label (in listing order), then ``subset`` of them at random.

    The random choice is seeded, so the same seed gives the same images; the chosen items keep
    listing order. A ``subset`` at least as large as what is left keeps everything.
    """
    if limit_per_class is not None:
        taken: dict[int, int] = {}
        kept = []
        for item in items:
            if taken.get(item.label, 0) < limit_per_class:
                taken[item.label] = taken.get(item.label, 0) + 1
                kept.append(item)
        items = kept
    if subset is not None and subset < len(items):
        rng = np.random.default_rng(seed % 2**32)
        chosen = np.sort(rng.choice(len(items), size=subset, replace=False))
        items = [items[i] for i in chosen]
    return items


def file_digest(path: str) -> str:
    """xxh3-128 of a file's bytes ("missing" when it cannot be read): its identity, whatever its size and dates say."""
    digest = xxhash.xxh3_128()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    except OSError:
        return "missing"
    return digest.hexdigest()


def listing_sha256(items: list[Item]) -> str:
    """sha256 over the chosen listing in order: relative path, content digest and label of each item.

    The content decides, not size and modification time: an image edited in place with its size
    and time restored changes the identity, and a copy or a touch does not. Reading every image
    costs 70 to 145 us per 400 x 300 px JPEG from the page cache, 1 to 1.5% of decoding it
    (``benchmarks/bench_store.py``); a cold disk adds the read that a cache miss would need anyway.
    """
    digest = hashlib.sha256()
    for item in items:
        digest.update(f"{item.relative}\t{file_digest(item.path)}\t{item.label}\n".encode())
    return digest.hexdigest()


def _extensions(value: Sequence[str]) -> tuple[str, ...]:
    return tuple(ext.lower() if ext.startswith(".") else f".{ext.lower()}" for ext in value)


def _existing(value: str | None, what: str, *, directory: bool | None) -> str | None:
    """Check that a path parameter exists (directory True: a folder; False: a file; None: either)."""
    if value is None:
        return value
    path = Path(value).expanduser()
    if directory is None:
        ok, kind = path.exists(), "file or directory"
    elif directory:
        ok, kind = path.is_dir(), "directory"
    else:
        ok, kind = path.is_file(), "file"
    if not ok:
        raise ValueError(
            f"{what} {value!r} is not an existing {kind} (a relative path is relative to the current working directory)"
        )
    return value


def _resolved_root(root: str) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise UserInputError(f"Data set root {root!r} does not exist or is not a directory.")
    return path.resolve()


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k WordNet ids in torchvision's class order (sorted); index = class index."""
    text = resources.files("selectivity_eval.plugins.datasets").joinpath(WNIDS_FILE).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@lru_cache(maxsize=1)
def imagenet_index() -> dict[str, int]:
    return {wnid: index for index, wnid in enumerate(imagenet_wnids())}


# ----------------------------------------------------------------------------------------------
# Parameters shared by the image data sets


class ImageParams(PluginParams):
    root: str = Field(description="Folder holding the images (relative to the current working directory).")
    extensions: list[str] = Field(
        list(IMAGE_EXTENSIONS), min_length=1, description="File name endings read as images (case-insensitive)."
    )
    limit_per_class: int | None = Field(
        None, ge=1, description="Keep only the first N images of each class (in file name order)."
    )
    subset: int | None = Field(
        None, ge=1, description="Keep a seeded random subset of N images (after limit_per_class)."
    )
    subset_seed: Seed | None = Field(None, description="Seed of `subset`; the run's seed when not given.")
    correct_only: bool = Field(False, description="Measure only images the network classifies correctly (top-1).")
    on_unreadable: Literal["skip", "fail"] = Field(
        "fail", description="An image that cannot be read: 'skip' it (recorded in run.json) or 'fail' the run."
    )
    workers: int | None = Field(
        None,
        ge=0,
        description="DataLoader worker processes that read and decode the images; None: one per two CPU cores "
        "this process may use, at most 8 (0, the main process, on one core).",
    )
    max_pixels: int = Field(
        DEFAULT_MAX_PIXELS,
        ge=1,
        le=PILLOW_MAX_PIXELS,
        description="An image of more pixels is refused before decoding (a decompression bomb) and treated as "
        "unreadable (see on_unreadable).",
    )

    @field_validator("root")
    @classmethod
    def _root_exists(cls, value: str) -> str:
        return _existing(value, "root", directory=True)

    @field_validator("extensions")
    @classmethod
    def _normalise_extensions(cls, value: list[str]) -> list[str]:
        if any(not ext.strip(".") for ext in value):
            raise ValueError("an extension must not be empty")
        return list(_extensions(value))


MAX_DEFAULT_WORKERS = 8


def default_workers() -> int:
    """Decoding workers when a spec gives none: half the CPU cores this process may use, at most 8.

    A JPEG decode and resize costs about as much CPU as AlexNet's forward pass of the image, so on
    few cores decoding in the main process between batches leaves the network idle; half the cores
    for decoding leaves the other half to the network's own threads.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(MAX_DEFAULT_WORKERS, cores // 2)


def _loaded(
    params: ImageParams,
    items: list[Item],
    transform,
    class_names: list[str],
    identity: dict[str, Any],
    model_class_of_label: np.ndarray | None,
) -> LoadedDataset:
    dataset = ImageFiles([item.path for item in items], [item.label for item in items], transform, params.max_pixels)
    identity = {
        **identity,
        "n_images": len(items),
        "n_classes": len({item.label for item in items}),
        "sha256": listing_sha256(items),
    }
    return LoadedDataset(
        dataset=dataset,
        labels=np.asarray(dataset.labels, dtype=np.int64),
        class_names=class_names,
        identity=identity,
        describe=dataset.describe,
        num_workers=default_workers() if params.workers is None else params.workers,
        on_unreadable=params.on_unreadable,
        correct_only=params.correct_only,
        model_class_of_label=model_class_of_label,
    )


def _seed(params: ImageParams, seed: int) -> int:
    return seed if params.subset_seed is None else params.subset_seed
