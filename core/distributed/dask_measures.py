"""Measures and chance levels on dask: chunks of units, and blocks of label shufflings, as tasks.

Each layer's activations stay in the store: a task gets the ``.npy`` file's path and which rows are
measured (``StoredRows``), reads its chunk of units through a memory map, and returns that chunk's
columns. The client puts the chunks together in unit order, so ``units.csv`` is the same as the
in-process run's. With ``chance:``, every chunk's shufflings are split into blocks (each block
replays the seeded sequence up to its first shuffling, so the blocks are the in-process shufflings),
and one more task per chunk turns its blocks into the null columns; only those come back.
"""

from __future__ import annotations

import warnings

import numpy as np

from selectivity_eval.core.measures.chance import NULL_SUFFIXES, value_columns
from selectivity_eval.core.measures.compute import unit_chunks
from selectivity_eval.core.distributed.dask_tasks import measure_chunk, null_block, null_summary
from selectivity_eval.core.distributed.executor import stored_rows


def _scatter(client, value):
    [future] = client.scatter([value], hash=False)
    return future


def _chunks(executor, values, n_classes: int) -> list[tuple[int, int]]:
    n_images, n_units = values.shape
    itemsize = 8 if values.dtype == np.float64 else 4
    local = next(iter(unit_chunks(n_units, n_images, n_classes, itemsize, None)))
    size = executor.chunk_units(n_units, local.stop - local.start)
    return [(start, min(start + size, n_units)) for start in range(0, n_units, size)]


def measure_on_dask(executor, spec, activations, labels, measures, plugin_of, reporter, description):
    from selectivity_eval.core.study.steps import MeasureFailureRecord, Measured

    client = executor.client
    labels_future = _scatter(client, labels.to("cpu"))
    sources, chunks, futures = {}, {}, []
    for layer, values in activations.items():
        source = stored_rows(values)
        if source is None:  # not in the store (in memory only): the workers get a copy
            source = np.ascontiguousarray(values)
            executor.stats["layers_sent_in_memory"] = executor.stats.get("layers_sent_in_memory", 0) + 1
        sources[layer] = _scatter(client, source)
        chunks[layer] = _chunks(executor, values, labels.n_classes)
        for first, last in chunks[layer]:
            futures.append(
                executor.submit(
                    measure_chunk,
                    sources[layer],
                    labels_future,
                    list(measures),
                    first,
                    last,
                    spec.device,
                    layer,
                    name=f"measure-{layer}-{first}",
                )
            )
    executor.stats["measure_tasks"] += len(futures)
    parts = iter(executor.gather(futures, reporter, f"{description} (dask)"))
    out = Measured()
    failed_of: dict[str, dict[str, str]] = {}
    for layer, values in activations.items():
        layer_parts = [next(parts) for _ in chunks[layer]]
        failed: dict[str, str] = {}
        for part in layer_parts:
            for label, message in part["errors"].items():
                failed.setdefault(label, message)
        columns = [
            column for measure, label in measures if label not in failed for column in measure.output_columns(label)
        ]
        out.results[layer] = {column: np.concatenate([p["results"][column] for p in layer_parts]) for column in columns}
        out.failures.extend(
            MeasureFailureRecord(label, plugin_of[label], layer, error) for label, error in failed.items()
        )
        failed_of[layer] = failed
        invalid = sum(part["invalid"] for part in layer_parts)
        if invalid:
            warnings.warn(
                f"Layer {layer!r}: {invalid} of {values.shape[1]} units have NaN or infinite activations; "
                "every measure of those units is NaN.",
                stacklevel=2,
            )
    if spec.chance is not None:
        _chance(executor, spec, activations, measures, out, failed_of, sources, chunks, labels_future, reporter)
    return out


def _chance(executor, spec, activations, measures, out, failed_of, sources, chunks, labels_future, reporter) -> None:
    from selectivity_eval.core.study.steps import chance_entry

    chance = spec.chance
    block = executor.permutation_block(chance.permutations)
    summaries, chosen = [], {}
    for layer in activations:
        working = [(m, label) for m, label in measures if label not in failed_of[layer]]
        results = out.results[layer]
        columns = [c for c in (chance.columns or value_columns(working)) if c in results]
        chosen[layer] = columns
        if not columns:
            continue
        for first, last in chunks[layer]:
            blocks = [
                executor.submit(
                    null_block,
                    sources[layer],
                    labels_future,
                    working,
                    columns,
                    first,
                    last,
                    spec.device,
                    chance.seed,
                    start,
                    min(block, chance.permutations - start),
                    name=f"chance-{layer}-{first}-{start}",
                )
                for start in range(0, chance.permutations, block)
            ]
            executor.stats["chance_tasks"] += len(blocks)
            observed = {column: results[column][first:last] for column in columns}
            summaries.append(
                executor.submit(
                    null_summary, len(results[columns[0]]), observed, *blocks, name=f"chance-summary-{layer}-{first}"
                )
            )
    gathered = iter(executor.gather(summaries, reporter, "Shuffling labels (dask)"))
    for layer in activations:
        columns = chosen[layer]
        results = out.results[layer]
        parts = [next(gathered) for _ in chunks[layer]] if columns else []
        for column in columns:
            for suffix in NULL_SUFFIXES:
                name = f"{column}{suffix}"
                results[name] = np.concatenate([part[name] for part in parts])
        out.chance[layer] = {column: chance_entry(chance, results, column) for column in columns}
