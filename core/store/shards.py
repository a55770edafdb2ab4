"""Sharded writing into the activation store: many tasks, one layer directory, never a half chunk as done.

A layer extracted on a distributed executor is split into shards of consecutive images. The client
creates the layer's memory maps at full size and writes ``shards/plan.json`` (images, units, shard
size). Each shard task opens the maps by path, writes only its own rows, flushes them, and then
records its completion as ``shards/<i>.done``, written atomically (a temporary file, then a rename):
a shard without its marker is rewritten by the next attempt, so a task killed mid-write costs only
its own rows. The client writes the layer's ``complete.json`` (the store's completion marker) only
after every shard's marker is there; a rerun finds the markers and skips the finished shards.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from selectivity_eval.core.store.activation_store import COMPLETE, PROGRESS, ActivationStore, StoredLayer

SHARDS = "shards"
PLAN = "plan.json"


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w") as handle:
        json.dump(data, handle, indent=2, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def shard_bounds(n_images: int, shard_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + shard_size, n_images)) for start in range(0, n_images, shard_size)]


def read_plan(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / SHARDS / PLAN).read_text())
    except (OSError, ValueError):
        return None


def _stored_shape(directory: Path) -> tuple[int, ...] | None:
    try:
        return tuple(np.load(directory / "values.npy", mmap_mode="r").shape)
    except (OSError, ValueError):
        return None


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
    if not rows_done:
        layer = store.create(label, key, n_images, n_units)
        for array in (layer.values, layer.readable, layer.predicted):
            array.flush()
        del layer
    shutil.rmtree(directory / SHARDS, ignore_errors=True)
    (directory / SHARDS).mkdir(parents=True)
    for index, (start, stop) in enumerate(shard_bounds(n_images, shard_size)):
        if stop <= rows_done:
            _write_atomically(directory / SHARDS / f"{index}.done", {"start": start, "stop": stop, "unreadable": []})
    _write_atomically(directory / SHARDS / PLAN, wanted)
    return directory


def shard_done(directory: Path, index: int) -> dict[str, Any] | None:
    """The shard's completion record, or None while the shard is not safely on disk."""
    try:
        return json.loads((directory / SHARDS / f"{index}.done").read_text())
    except (OSError, ValueError):
        return None


def open_rows(directory: Path) -> StoredLayer:
    """The layer's memory maps opened for writing by path, as a shard task does."""
    return StoredLayer(
        directory,
        np.load(directory / "values.npy", mmap_mode="r+"),
        np.load(directory / "readable.npy", mmap_mode="r+"),
        np.load(directory / "predicted.npy", mmap_mode="r+"),
    )


def mark_done(layer: StoredLayer, index: int, start: int, stop: int, unreadable: list[str]) -> None:
    """Flush the shard's rows to disk, then record the shard as done (atomically)."""
    for array in (layer.values, layer.readable, layer.predicted):
        array.flush()
    record = {"start": start, "stop": stop, "unreadable": unreadable}
    _write_atomically(layer.directory / SHARDS / f"{index}.done", record)


def finish_layer(directory: Path, n_shards: int, description: dict[str, Any]) -> None:
    """Mark the layer complete, once every shard recorded its completion; then drop the shard records."""
    missing = [index for index in range(n_shards) if shard_done(directory, index) is None]
    if missing:
        raise RuntimeError(f"{directory}: shards {missing[:10]} have not finished; the layer stays incomplete.")
    shape = _stored_shape(directory)
    _write_atomically(directory / COMPLETE, {"shape": list(shape or ()), **description})
    (directory / PROGRESS).unlink(missing_ok=True)
    shutil.rmtree(directory / SHARDS, ignore_errors=True)
