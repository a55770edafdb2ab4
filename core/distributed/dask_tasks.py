"""What dask workers run: extraction shards, measure chunks, blocks of shufflings and their summaries.

Every task reads the activation store by path (a measure task reads its chunk of units with file
reads, ``read_units``, so no worker holds a whole layer) and returns only small results: per-unit columns,
shard records. Each worker process loads a model and its data set once and keeps them (``loaded``)
for every later task of the same run or sweep. These functions import nothing from dask, so they
run (and are tested) in any process.
"""

from __future__ import annotations

import multiprocessing
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from selectivity_eval.core.measures.chance import null_distribution, summarise_null
from selectivity_eval.core.measures.compute import as_activation_tensor, compute_layer
from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.distributed.executor import StoredRows
from selectivity_eval.core.store.residency import read_units
from selectivity_eval.core.extraction.extract import InMemoryStore, ResolvedLayer, _run_model, readable_items
from selectivity_eval.core.statistics.labels import Labels
from selectivity_eval.core.store.shards import mark_done, open_rows, shard_done
from selectivity_eval.core.store.activation_store import content_key

KEEP_LOADED = 2  # models (with their data sets) a worker process keeps between tasks


@dataclass(frozen=True)
class ExtractJob:
    """Everything a worker needs to extract a run's layers: small, sent with every shard task."""

    spec: dict[str, Any]  # the run spec, as JSON
    untrained_seed: int | None  # the untrained baseline: the model re-initialised with this seed
    layers: tuple[ResolvedLayer, ...]
    directories: dict[str, str]  # layer label -> its directory in the store
    model_identity: dict[str, Any]
    data_identity: dict[str, Any]
    n_images: int


_loaded: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
_loading = threading.Lock()


def loaded(job: ExtractJob) -> tuple[Any, Any]:
    """This process's model and data set for ``job``, loaded on first use (seeded as a run loads them)."""
    from selectivity_eval.core.registry.manager import get_registry
    from selectivity_eval.core.study.run import load_dataset, load_model, seed_everything
    from selectivity_eval.schemas.spec import RunSpec

    spec = RunSpec.model_validate(job.spec)
    key = content_key(
        {"model": job.spec["model"], "dataset": job.spec["dataset"], "seed": spec.seed, "untrained": job.untrained_seed}
    )
    with _loading:  # one load at a time: plugins seed torch's global generator
        if key in _loaded:
            _loaded.move_to_end(key)
            return _loaded[key]
        registry = get_registry()
        seed_everything(spec.seed)
        model = load_model(spec, registry)
        if job.untrained_seed is not None:
            model = model.untrained(job.untrained_seed)
        data = load_dataset(spec, registry, model.transform)
        if multiprocessing.current_process().daemon and data.num_workers:
            data = replace(data, num_workers=0)  # a daemonic worker process cannot start loader processes
        if model.identity != job.model_identity or data.identity != job.data_identity or len(data) != job.n_images:
            raise RuntimeError(
                "This worker loads a different model or data set than the client does (identity "
                f"{model.identity} / {data.identity}, {len(data)} images; the client has {job.model_identity} / "
                f"{job.data_identity}, {job.n_images} images). Install the same plugins, weights and data on every "
                "worker, at the same paths."
            )
        _loaded[key] = (model, data)
        while len(_loaded) > KEEP_LOADED:
            _loaded.popitem(last=False)
        return model, data


def _device(job: ExtractJob):
    from selectivity_eval.core.study.run import resolve_device

    return resolve_device(job.spec["device"])


def probe_units(job: ExtractJob) -> dict[str, int]:
    """Units of each layer, from one forward pass of the first readable image."""
    import torch

    model, data = loaded(job)
    modules = dict(model.module.named_modules())
    captured: dict[str, int] = {}
    handles = [
        modules[layer.module_name].register_forward_hook(
            lambda _m, _i, output, layer=layer: captured.__setitem__(layer.label, _units(output, layer))
        )
        for layer in job.layers
    ]
    device = _device(job)
    model.module.to(device).eval()
    try:
        with torch.inference_mode():
            for index in range(len(data)):
                inputs, positions = readable_items([data.dataset[index]])
                if inputs is None and data.on_unreadable != "skip":
                    raise UserInputError(
                        f"Image {data.name_of(index)} (item {index}) could not be read. Fix or remove it, "
                        "or set `on_unreadable: skip` in the data set to skip unreadable images."
                    )
                if inputs is not None:
                    model.forward(inputs.to(device))
                    break
    finally:
        for handle in handles:
            handle.remove()
    return captured


def _units(output, layer: ResolvedLayer) -> int:
    return int(layer.reduce(output).shape[1])


def extract_shard(job: ExtractJob, index: int, start: int, stop: int, labels: list[str]) -> list[str]:
    """Images ``start`` to ``stop`` of the layers ``labels`` into the store; the unreadable images' names.

    Idempotent: a layer whose shard is already recorded as done is left alone, and the rows of the
    others are rewritten in full before the shard is recorded, so rerunning a lost task is safe.
    """
    todo = [layer for layer in job.layers if layer.label in labels]
    records = {layer.label: shard_done(_path(job, layer), index) for layer in todo}
    todo = [layer for layer in todo if records[layer.label] is None]
    if not todo:
        return next((record["unreadable"] for record in records.values() if record), [])
    model, data = loaded(job)
    writing = {layer.label: open_rows(_path(job, layer)) for layer in todo}
    for target in writing.values():
        target.readable[start:stop] = False
        target.predicted[start:stop] = -1
    batch_size = int(job.spec["batch_size"])
    keys = {layer.label: "" for layer in todo}
    unreadable = _run_model(
        model, data, todo, start, writing, InMemoryStore(), keys, batch_size, _device(job), None, stop=stop
    )
    for layer in todo:
        mark_done(writing[layer.label], index, start, stop, unreadable)
    return unreadable


def _path(job: ExtractJob, layer: ResolvedLayer):
    from pathlib import Path

    return Path(job.directories[layer.label])


def chunk_matrix(source: StoredRows | np.ndarray, first: int, last: int, device: str):
    """Units ``first`` to ``last`` of a layer (only its measured rows), read from the store by path."""
    if isinstance(source, StoredRows):
        values = read_units(np.load(source.path, mmap_mode="r"), slice(first, last))
        if source.rows is not None:
            values = values[source.rows]
    else:
        values = source[:, first:last]
    return as_activation_tensor(values, _measure_device(device))


def _measure_device(requested: str):
    from selectivity_eval.core.study.run import resolve_device

    return resolve_device(requested)


def measure_chunk(source, labels: Labels, measures, first: int, last: int, device: str, layer: str) -> dict:
    """Every measure on one chunk of units: its columns, the measures that raised, its non-finite units."""
    matrix = chunk_matrix(source, first, last, device)
    errors: dict[str, BaseException] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = compute_layer(matrix, labels.to(matrix.device), measures, failures=errors, layer=layer)
    invalid = sum(1 for w in caught if "NaN or infinite" in str(w.message))
    n_invalid = _count_invalid(matrix) if invalid else 0
    return {
        "results": results,
        "errors": {label: f"{type(e).__name__}: {e}" for label, e in errors.items()},
        "invalid": n_invalid,
    }


def _count_invalid(matrix) -> int:
    import torch

    return int((~torch.isfinite(matrix).all(0)).sum())


def null_block(
    source,
    labels: Labels,
    measures,
    columns,
    first: int,
    last: int,
    device: str,
    seed: int,
    first_shuffle: int,
    n_shuffles: int,
) -> dict[str, np.ndarray]:
    """Shufflings ``first_shuffle`` to ``first_shuffle + n_shuffles`` of the seeded sequence, on one chunk of units."""
    matrix = chunk_matrix(source, first, last, device)
    return null_distribution(
        matrix, labels.to(matrix.device), measures, columns, permutations=n_shuffles, seed=seed, first=first_shuffle
    )


def null_summary(
    layer_units: int, observed: dict[str, np.ndarray], *blocks: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Null mean, standard deviation, z and p of each column of one chunk, from all its blocks of shufflings.

    numpy sums a one-column (shufflings x 1) array pairwise but a wider one row by row, which can
    differ in the last bit; a one-unit chunk of a wider layer is therefore summarised as two copies
    of itself, exactly as the in-process run summarises it within the whole layer.
    """
    out: dict[str, np.ndarray] = {}
    for column, values in observed.items():
        null = np.concatenate([block[column] for block in blocks], axis=0)
        if null.shape[1] == 1 and layer_units > 1:
            wide = summarise_null(np.repeat(values, 2), np.repeat(null, 2, axis=1), column)
            out.update({name: array[:1] for name, array in wide.items()})
        else:
            out.update(summarise_null(values, null, column))
    return out
