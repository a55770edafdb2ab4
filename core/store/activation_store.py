"""The activation store: each layer's activations on disk, keyed by everything that determines them.

Format (version 2): one directory per layer and key under ``<output>/activations/``, holding ``.npy``
files opened as numpy memory maps: ``values.npy`` (images x units, float32), ``readable.npy`` (bool
per image) and ``predicted.npy`` (the network's top-1 class per image, -1 where unknown). Memory maps
need no extra dependency, are written batch by batch without holding a layer in memory, and are
handed to torch without a copy; any numpy reads them.

While a layer is written its arrays are ``values.partial.npy`` and so on, allocated in full on disk
first (so a full disk is an error naming the path, never a SIGBUS later), and the entry is locked
(``<entry>.lock``, ``lock.py``): a second run waits, then reuses the finished entry. ``progress.json``
(replaced atomically after the memory maps are flushed) records how many leading images are safely
on disk, the unreadable images among them, and checksums of those bytes, so an interrupted
extraction resumes there. Finishing renames the arrays to their final names and then writes
``complete.json``: the shape, the unreadable images, and xxh3 checksums of every 64 MiB chunk of
every array (``checksums.py``). A layer is reused only when ``complete.json`` and every array pass
their checksums; a file that fails is named in a warning, and the entry is discarded and recomputed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from selectivity_eval.core.errors import StoreCorruption
from selectivity_eval.core.outputs.atomic import disk_full, no_space
from selectivity_eval.core.store.checksums import chunk_checksums, read_sealed, verify_file, write_sealed
from selectivity_eval.core.store.lock import entry_locks
from selectivity_eval.core.store.residency import release

FORMAT = 2
COMPLETE = "complete.json"
PROGRESS = "progress.json"
ARRAYS = ("values", "readable", "predicted")


class StoreWarning(UserWarning):
    """A store entry failed its check and is being recomputed, or a run waits for another's entry."""


def content_key(parts: dict[str, Any]) -> str:
    """A stable hash of a JSON-able description of what determines a layer's activations."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def array_path(directory: Path, name: str, *, partial: bool) -> Path:
    return directory / (f"{name}.partial.npy" if partial else f"{name}.npy")


@dataclass
class StoredLayer:
    """One layer's arrays in the store, complete or being written; ``record`` is complete.json's content."""

    directory: Path
    values: np.ndarray
    readable: np.ndarray
    predicted: np.ndarray
    record: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)

    @property
    def n_units(self) -> int:
        return int(self.values.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"values": self.values, "readable": self.readable, "predicted": self.predicted}


def _row_bytes(array: np.ndarray) -> int:
    return int(array.dtype.itemsize * (array.shape[1] if array.ndim == 2 else 1))


def _prefix_length(array: np.ndarray, rows: int) -> int:
    """Bytes of the .npy file up to the end of row ``rows``: its header, then the rows."""
    return int(array.offset) + rows * _row_bytes(array)


def discard(directory: Path, reason: str) -> None:
    """Warn that the entry at ``directory`` failed its check (``reason`` names the file).

    The entry is deleted by ``create``, under the entry's lock: deleting it here, unlocked, could
    delete the fresh entry another run has started writing since this one read the damaged record.
    """
    warnings.warn(
        f"Activation store: {reason}. The entry {directory.name} is discarded and will be recomputed.",
        StoreWarning,
        stacklevel=3,
    )


def _open_arrays(directory: Path, *, partial: bool, mode: str) -> dict[str, np.ndarray]:
    return {name: np.load(array_path(directory, name, partial=partial), mmap_mode=mode) for name in ARRAYS}


def verified_complete(directory: Path, *, verify: bool = True) -> StoredLayer | None:
    """The complete entry at ``directory`` read through copy-on-write maps, or None (discarded if it fails)."""
    if not (directory / COMPLETE).is_file():
        return None
    try:
        record = read_sealed(directory / COMPLETE)
        if record.get("format") != FORMAT:
            raise StoreCorruption(f"{directory / COMPLETE} is of an older store format")
        for name in ARRAYS:
            path = array_path(directory, name, partial=False)
            if verify:
                verify_file(path, record["checksums"][name], whole=True)
            elif path.stat().st_size != int(record["checksums"][name]["length"]):
                raise StoreCorruption(f"{path} is truncated or resized")
        arrays = _open_arrays(directory, partial=False, mode="c")
        if list(arrays["values"].shape) != list(record["shape"]):
            raise StoreCorruption(f"{array_path(directory, 'values', partial=False)} has shape {arrays['values'].shape}")
    except (StoreCorruption, KeyError, TypeError, OSError, ValueError) as error:
        discard(directory, str(error) if isinstance(error, StoreCorruption) else f"{directory / COMPLETE}: {error!r}")
        return None
    return StoredLayer(directory, arrays["values"], arrays["readable"], arrays["predicted"], record=record)


def seal_complete(directory: Path, description: dict[str, Any], unreadable: list[str]) -> None:
    """Checksum the finished partial arrays, give them their final names, then write complete.json."""
    checksums = {name: chunk_checksums(array_path(directory, name, partial=True)) for name in ARRAYS}
    shape = list(np.load(array_path(directory, "values", partial=True), mmap_mode="r").shape)
    for name in ARRAYS:
        os.replace(array_path(directory, name, partial=True), array_path(directory, name, partial=False))
    record = {"format": FORMAT, "shape": shape, "unreadable": list(unreadable), "checksums": checksums, **description}
    write_sealed(directory / COMPLETE, record)
    (directory / PROGRESS).unlink(missing_ok=True)


def _allocate(path: Path, needed: int) -> None:
    """Reserve the file's blocks now, so writing through its memory map cannot hit a full disk (SIGBUS)."""
    if not hasattr(os, "posix_fallocate"):
        return
    descriptor = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(descriptor, 0, os.fstat(descriptor).st_size)
    except OSError as error:
        if no_space(error):
            raise disk_full(path, needed) from None
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without fallocate
            raise
    finally:
        os.close(descriptor)


class ActivationStore:
    """Completed and partial layers under one root directory."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def directory(self, label: str, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
        return self.root / f"{safe}-{key}"

    def locked(self, entries: list[tuple[str, str]], on_wait: Callable[[str], None] | None = None) -> AbstractContextManager:
        """Hold the exclusive write locks of these (label, key) entries for the block."""
        return entry_locks([self.directory(label, key) for label, key in entries], on_wait)

    def complete(self, label: str, key: str, *, verify: bool = True) -> StoredLayer | None:
        """The stored layer if it was completed and passes its checksums, read through copy-on-write maps."""
        return verified_complete(self.directory(label, key), verify=verify)

    def resumable_rows(self, label: str, key: str) -> int:
        """How many leading images an interrupted extraction of this layer left safely (checked) on disk."""
        return int(self._progress(label, key).get("rows_done", 0))

    def resumed_unreadable(self, label: str, key: str) -> list[str]:
        return list(self._progress(label, key).get("unreadable", []))

    def _progress(self, label: str, key: str) -> dict[str, Any]:
        directory = self.directory(label, key)
        if not (directory / PROGRESS).is_file():
            return {}
        try:
            progress = read_sealed(directory / PROGRESS)
            for name in ARRAYS:
                verify_file(array_path(directory, name, partial=True), progress["checksums"][name], whole=False)
        except (StoreCorruption, KeyError, TypeError) as error:
            discard(directory, str(error) if isinstance(error, StoreCorruption) else f"{directory / PROGRESS}: {error!r}")
            return {}
        return progress

    def reopen(self, label: str, key: str) -> StoredLayer:
        """The partial arrays of an interrupted extraction, for writing the rest."""
        directory = self.directory(label, key)
        arrays = _open_arrays(directory, partial=True, mode="r+")
        return StoredLayer(directory, **arrays, progress=self._progress(label, key))

    def create(self, label: str, key: str, n_images: int, n_units: int) -> StoredLayer:
        """Fresh partial arrays at full size, their space checked and reserved before anything is written."""
        directory = self.directory(label, key)
        shutil.rmtree(directory, ignore_errors=True)  # a discarded or abandoned entry, shard records included
        directory.mkdir(parents=True, exist_ok=True)
        shapes = {"values": ((n_images, n_units), np.float32), "readable": ((n_images,), bool),
                  "predicted": ((n_images,), np.int64)}
        needed = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize + 128 for shape, dtype in shapes.values())
        if shutil.disk_usage(directory).free < needed:
            raise disk_full(array_path(directory, "values", partial=True), needed)
        arrays = {}
        for name, (shape, dtype) in shapes.items():
            path = array_path(directory, name, partial=True)
            try:
                arrays[name] = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
            except OSError as error:
                if no_space(error):
                    raise disk_full(path, needed) from None
                raise
            _allocate(path, needed)
        layer = StoredLayer(directory, **arrays)
        layer.predicted[:] = -1
        return layer

    @staticmethod
    def checkpoint(layer: StoredLayer, rows_done: int, unreadable: list[str]) -> None:
        """Flush the arrays, then record (atomically) how many leading rows are on disk, with their checksums."""
        previous = layer.progress.get("checksums", {})
        checksums = {}
        for name, array in layer.arrays().items():
            array.flush()
            path = array_path(layer.directory, name, partial=True)
            checksums[name] = chunk_checksums(path, _prefix_length(array, rows_done), previous.get(name))
            release(array)
        layer.progress = {"rows_done": rows_done, "unreadable": list(unreadable), "checksums": checksums}
        write_sealed(layer.directory / PROGRESS, layer.progress)

    @staticmethod
    def finish(layer: StoredLayer, description: dict[str, Any], unreadable: list[str]) -> None:
        for array in layer.arrays().values():
            array.flush()
            release(array)
        seal_complete(layer.directory, description, unreadable)
