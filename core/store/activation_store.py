"""The activation store: each layer's activations on disk, keyed by everything that determines them.

Format: one directory per layer and key under ``<output>/activations/``, holding ``.npy`` files
opened as numpy memory maps: ``values.npy`` (images x units, float32), ``readable.npy`` (bool per
image) and ``predicted.npy`` (the network's top-1 class per image, -1 where unknown). Memory maps
need no extra dependency, are written batch by batch without holding a layer in memory, and are
handed to torch without a copy; any numpy reads them.

A layer is complete only once ``complete.json`` exists; it is written last, atomically (write to a
temporary file, then rename). Until then ``progress.json`` (also replaced atomically, after the
memory maps are flushed) records how many leading images are safely on disk, so an interrupted
extraction resumes there and a half-written file is never taken as complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

COMPLETE = "complete.json"
PROGRESS = "progress.json"


def content_key(parts: dict[str, Any]) -> str:
    """A stable hash of a JSON-able description of what determines a layer's activations."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=2, default=str))
    os.replace(temporary, path)


@dataclass
class StoredLayer:
    """One layer's arrays in the store, complete or being written."""

    directory: Path
    values: np.ndarray
    readable: np.ndarray
    predicted: np.ndarray

    @property
    def n_units(self) -> int:
        return int(self.values.shape[1])


class ActivationStore:
    """Completed and partial layers under one root directory."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def directory(self, label: str, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
        return self.root / f"{safe}-{key}"

    def complete(self, label: str, key: str) -> StoredLayer | None:
        """The stored layer if it was completed, read through copy-on-write memory maps."""
        directory = self.directory(label, key)
        if not (directory / COMPLETE).is_file():
            return None
        return StoredLayer(
            directory,
            np.load(directory / "values.npy", mmap_mode="c"),
            np.load(directory / "readable.npy"),
            np.load(directory / "predicted.npy"),
        )

    def resumable_rows(self, label: str, key: str) -> int:
        """How many leading images an interrupted extraction of this layer left safely on disk."""
        directory = self.directory(label, key)
        try:
            return int(json.loads((directory / PROGRESS).read_text())["rows_done"])
        except (OSError, ValueError, KeyError):
            return 0

    def reopen(self, label: str, key: str) -> StoredLayer:
        """The partial arrays of an interrupted extraction, for writing the rest."""
        directory = self.directory(label, key)
        return StoredLayer(
            directory,
            np.load(directory / "values.npy", mmap_mode="r+"),
            np.load(directory / "readable.npy", mmap_mode="r+"),
            np.load(directory / "predicted.npy", mmap_mode="r+"),
        )

    def create(self, label: str, key: str, n_images: int, n_units: int) -> StoredLayer:
        directory = self.directory(label, key)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in (COMPLETE, PROGRESS):
            (directory / stale).unlink(missing_ok=True)
        shutil.rmtree(directory / "shards", ignore_errors=True)  # a sharded extraction's records (shard_store.py)
        layer = StoredLayer(
            directory,
            np.lib.format.open_memmap(directory / "values.npy", mode="w+", dtype=np.float32, shape=(n_images, n_units)),
            np.lib.format.open_memmap(directory / "readable.npy", mode="w+", dtype=bool, shape=(n_images,)),
            np.lib.format.open_memmap(directory / "predicted.npy", mode="w+", dtype=np.int64, shape=(n_images,)),
        )
        layer.predicted[:] = -1
        return layer

    @staticmethod
    def checkpoint(layer: StoredLayer, rows_done: int) -> None:
        for array in (layer.values, layer.readable, layer.predicted):
            array.flush()
        _write_json_atomically(layer.directory / PROGRESS, {"rows_done": rows_done})

    @staticmethod
    def finish(layer: StoredLayer, description: dict[str, Any]) -> None:
        for array in (layer.values, layer.readable, layer.predicted):
            array.flush()
        _write_json_atomically(layer.directory / COMPLETE, {"shape": list(layer.values.shape), **description})
        (layer.directory / PROGRESS).unlink(missing_ok=True)
