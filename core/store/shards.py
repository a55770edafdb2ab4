"""Sharded writing into the activation store: many tasks, one layer directory, never a half chunk as done.

A layer extracted on a distributed executor is split into shards of consecutive images. The client
creates the layer's partial memory maps at full size and writes ``shards/plan.json`` (images, units,
shard size). Each shard task opens the maps by path, writes only its own rows, flushes them, and then
records its completion as ``shards/<i>.done`` with the checksum of its rows, written atomically and
sealed (``checksums.py``): a shard without a valid marker is rewritten by the next attempt, so a
task killed mid-write costs only its own rows. The client holds the entry's lock throughout, and
seals the layer (checksums, final names, ``complete.json``) only after every shard's marker is
there; a rerun finds the markers and skips the finished shards whose rows still match them.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from selectivity_eval.core.errors import StoreCorruption
from selectivity_eval.core.store.activation_store import (
    ActivationStore,
    StoredLayer,
    StoreWarning,
    ARRAYS,
    array_path,
    seal_complete,
)
from selectivity_eval.core.store.checksums import read_sealed, write_sealed

SHARDS = "shards"
PLAN = "plan.json"


def shard_bounds(n_images: int, shard_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + shard_size, n_images)) for start in range(0, n_images, shard_size)]


def _read_record(path: Path) -> dict[str, Any] | None:
    """A sealed shard record or plan; None when absent, and when altered (with a warning naming it)."""
    if not path.is_file():
        return None
    try:
        return read_sealed(path)
    except StoreCorruption as error:
        warnings.warn(f"Activation store: {error}; it is ignored and its rows rewritten.", StoreWarning, stacklevel=3)
        return None


def read_plan(directory: Path) -> dict[str, Any] | None:
    return _read_record(directory / SHARDS / PLAN)


def _stored_shape(directory: Path) -> tuple[int, ...] | None:
    try:
        return tuple(np.load(array_path(directory, "values", partial=True), mmap_mode="r").shape)
    except (OSError, ValueError):
        return None


def _rows_checksum(layer: StoredLayer, start: int, stop: int) -> str:
    digest = xxhash.xxh3_128()
    for array in layer.arrays().values():
        digest.update(np.ascontiguousarray(array[start:stop]))
    return digest.hexdigest()


def existing_shard_size(store: ActivationStore, label: str, key: str, n_images: int, n_units: int) -> int | None:
    """The shard size of an unfinished sharded extraction of this layer that a rerun can continue."""
    directory = store.directory(label, key)
    plan = read_plan(directory)
    if plan and plan.get("n_images") == n_images and plan.get("n_units") == n_units:
        if _stored_shape(directory) == (n_images, n_units):
            return int(plan["shard_size"])
    return None


def prepare_layer(store: ActivationStore, label: str, key: str, n_images: int, n_units: int, shard_size: int) -> Path:
    """The layer's directory, ready for shard tasks: continued when its plan matches, else created afresh.

    Rows an interrupted in-process extraction left on disk (``progress.json``) count as done too.
    """
    directory = store.directory(label, key)
    plan = read_plan(directory)
    shape_matches = _stored_shape(directory) == (n_images, n_units)
    wanted = {"n_images": n_images, "n_units": n_units, "shard_size": shard_size}
    if plan is not None and shape_matches and all(plan.get(k) == v for k, v in wanted.items()):
        return directory
    rows_done = store.resumable_rows(label, key) if shape_matches and plan is None else 0
    if rows_done:
        resumed_unreadable = store.resumed_unreadable(label, key)
        layer = open_rows(directory)
    else:
        resumed_unreadable = []
        layer = store.create(label, key, n_images, n_units)
        for array in layer.arrays().values():
            array.flush()
    shutil.rmtree(directory / SHARDS, ignore_errors=True)
    (directory / SHARDS).mkdir(parents=True)
    for index, (start, stop) in enumerate(shard_bounds(n_images, shard_size)):
        if stop <= rows_done:
            names = resumed_unreadable if index == 0 else []  # every name of the resumed rows, in order
            record = {"start": start, "stop": stop, "unreadable": names, "rows": _rows_checksum(layer, start, stop)}
            write_sealed(directory / SHARDS / f"{index}.done", record)
    del layer
    write_sealed(directory / SHARDS / PLAN, wanted)
    return directory


def shard_done(directory: Path, index: int) -> dict[str, Any] | None:
    """The shard's completion record, or None while the shard is not safely on disk (or its record is altered)."""
    return _read_record(directory / SHARDS / f"{index}.done")


def shard_rows_intact(directory: Path, index: int, record: dict[str, Any]) -> bool:
    """Whether the shard's rows on disk still match the checksum its record holds (a warning names them if not)."""
    layer = open_rows(directory, mode="r")
    if _rows_checksum(layer, int(record["start"]), int(record["stop"])) == record.get("rows"):
        return True
    warnings.warn(
        f"Activation store: rows {record['start']} to {record['stop']} of {array_path(directory, 'values', partial=True)} "
        "fail their checksum; the shard is rewritten.",
        StoreWarning,
        stacklevel=2,
    )
    (directory / SHARDS / f"{index}.done").unlink(missing_ok=True)
    return False


def open_rows(directory: Path, mode: str = "r+") -> StoredLayer:
    """The layer's partial memory maps opened for writing by path, as a shard task does."""
    arrays = {name: np.load(array_path(directory, name, partial=True), mmap_mode=mode) for name in ARRAYS}
    return StoredLayer(directory, **arrays)


def mark_done(layer: StoredLayer, index: int, start: int, stop: int, unreadable: list[str]) -> None:
    """Flush the shard's rows to disk, then record the shard as done with their checksum (atomically)."""
    for array in layer.arrays().values():
        array.flush()
    record = {"start": start, "stop": stop, "unreadable": unreadable, "rows": _rows_checksum(layer, start, stop)}
    write_sealed(layer.directory / SHARDS / f"{index}.done", record)


def finish_layer(directory: Path, n_shards: int, description: dict[str, Any], unreadable: list[str]) -> None:
    """Seal the layer complete, once every shard recorded its completion; then drop the shard records."""
    missing = [index for index in range(n_shards) if shard_done(directory, index) is None]
    if missing:
        raise RuntimeError(f"{directory}: shards {missing[:10]} have not finished; the layer stays incomplete.")
    seal_complete(directory, description, unreadable)
    shutil.rmtree(directory / SHARDS, ignore_errors=True)
