"""Extraction on dask: the data set in shards of whole batches, each shard a task writing its rows of the store.

The client checks the store (complete layers are hits), asks one worker for each missing layer's
unit count (one forward pass of one image), creates the layers' memory maps and shard plans
(``core/store/shards.py``), submits one task per shard that some layer still lacks, and marks each
layer complete only after every shard task reported success. Shard tasks load the model once per
worker process and write every missing layer from one forward pass, as the in-process engine does.
Shards are whole batches at the same offsets as in process, so the values are the same bit for bit.
"""

from __future__ import annotations

from dataclasses import replace

from selectivity_eval.core.distributed.dask_tasks import ExtractJob, extract_shard, probe_units
from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.extraction.extract import Extraction, through_store
from selectivity_eval.core.store.shards import (
    existing_shard_size,
    finish_layer,
    prepare_layer,
    shard_bounds,
    shard_done,
    shard_rows_intact,
)


def extract_on_dask(executor, spec, model, data, layers, keys, store, reporter) -> Extraction:
    def run_missing(missing, cache) -> list[str]:
        return _extract_missing(executor, spec, model, data, missing, keys, store, reporter, cache)

    return through_store(store, data, layers, keys, reporter, run_missing)


def _extract_missing(executor, spec, model, data, missing, keys, store, reporter, cache) -> list[str]:
    executor.check_workers(spec)
    untrained_seed = model.identity.get("init_seed") if "untrained_of" in model.identity else None
    job = ExtractJob(
        spec=spec.model_dump(mode="json"),
        untrained_seed=untrained_seed,
        layers=tuple(missing),
        directories={},
        model_identity=model.identity,
        data_identity=data.identity,
        n_images=len(data),
    )
    units = executor.client.submit(probe_units, job, pure=False).result()
    never_ran = [layer.label for layer in missing if layer.label not in units]
    if not units:
        raise UserInputError("No image could be read, so no activations were extracted.")
    if never_ran:
        raise UserInputError(f"Layers {', '.join(never_ran)} never ran in the model's forward pass.")
    return _run_shards(executor, job, missing, keys, units, store, reporter, cache)


def _run_shards(executor, job, missing, keys, units, store, reporter, cache) -> list[str]:
    n_images = job.n_images
    shard_size = executor.shard_size(n_images, int(job.spec["batch_size"]))
    for layer in missing:  # continue an unfinished sharded extraction with its own shard size
        previous = existing_shard_size(store, layer.label, keys[layer.label], n_images, units[layer.label])
        if previous is not None:
            shard_size = previous
            break
    directories = {
        layer.label: prepare_layer(store, layer.label, keys[layer.label], n_images, units[layer.label], shard_size)
        for layer in missing
    }
    job = replace(job, directories={label: str(path) for label, path in directories.items()})
    bounds = shard_bounds(n_images, shard_size)
    todo: dict[int, list[str]] = {}
    names: dict[int, list[str]] = {}
    for index in range(len(bounds)):
        for layer in missing:
            record = shard_done(directories[layer.label], index)
            if record is not None and not shard_rows_intact(directories[layer.label], index, record):
                record = None
            if record is None:
                todo.setdefault(index, []).append(layer.label)
            else:
                names[index] = record["unreadable"]
    for layer in missing:
        done = sum(1 for index in range(len(bounds)) if layer.label not in todo.get(index, []))
        cache[layer.label] = f"resumed ({done} of {len(bounds)} shards on disk)" if done else "miss"
    futures = [
        executor.submit(extract_shard, job, index, *bounds[index], labels, name=f"extract-shard-{index}")
        for index, labels in sorted(todo.items())
    ]
    executor.stats["shard_tasks"] += len(futures)
    executor.stats["shards_skipped"] += len(bounds) - len(futures)
    for index, result in zip(sorted(todo), executor.gather(futures, reporter, "Extracting activations (dask)")):
        names[index] = result
    unreadable = [name for index in sorted(names) for name in names[index]]
    for layer in missing:
        description = {"layer": layer.label, "module": layer.module_name}
        finish_layer(directories[layer.label], len(bounds), description, unreadable)
    return unreadable
