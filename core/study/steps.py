"""The steps of a run between loading and writing: extract activations, measure them, chance levels."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from selectivity_eval.core.measures.chance import NullCollector, significant, summarise_null, value_columns
from selectivity_eval.core.measures.compute import as_activation_tensor, compute_layer
from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.distributed.executor import current_executor, remember_rows
from selectivity_eval.core.extraction.extract import Extraction, ResolvedLayer, extract_activations
from selectivity_eval.core.statistics.labels import Labels
from selectivity_eval.core.statistics.backend import kernels_ready, prepare_kernels
from selectivity_eval.core.measures.base import Measure
from selectivity_eval.core.cli.progress import Reporter
from selectivity_eval.core.sources.base import LoadedDataset, LoadedModel
from selectivity_eval.core.store.activation_store import ActivationStore, content_key
from selectivity_eval.core.store.residency import read_units, release
from selectivity_eval.schemas.spec import RunSpec

NOT_CONTENT_PARAMS = frozenset({"workers", "on_unreadable", "correct_only", "class_to_model_index"})


def layer_key(spec: RunSpec, model: LoadedModel, data: LoadedDataset, layer: ResolvedLayer) -> str:
    """What determines a layer's activations: weights, preprocessing, data listing, layer settings."""
    dataset_params = {k: v for k, v in spec.dataset.params().items() if k not in NOT_CONTENT_PARAMS}
    return content_key(
        {
            "model": {"plugin": spec.model.plugin, "params": spec.model.params(), "identity": model.identity},
            "preprocessing": repr(model.transform),
            "dataset": {"plugin": spec.dataset.plugin, "params": dataset_params, "identity": data.identity},
            "layer": {"module": layer.module_name, "pool": layer.pool, "relu": layer.relu, **layer.reduction.key()},
        }
    )


def extract_step(
    spec: RunSpec,
    model: LoadedModel,
    data: LoadedDataset,
    layers: list[ResolvedLayer],
    device: torch.device,
    reporter: Reporter,
    output_dir: Path,
) -> Extraction:
    keys = {layer.label: layer_key(spec, model, data, layer) for layer in layers}
    executor = current_executor()
    if executor.distributed:  # shards of the data set as tasks on the executor's workers
        with reporter.live():
            store = ActivationStore(output_dir / "activations")
            return executor.extract(spec, model, data, layers, keys, store, reporter)
    with reporter.live():
        return extract_activations(
            model,
            data,
            layers,
            batch_size=spec.batch_size,
            device=device,
            reporter=reporter,
            store=ActivationStore(output_dir / "activations"),
            keys=keys,
        )


def measured_images(extraction: Extraction, data: LoadedDataset) -> np.ndarray:
    """Readable images, and with ``correct_only`` only those the network classifies correctly."""
    measured = extraction.readable.copy()
    if data.correct_only:
        if (extraction.predicted[measured] < 0).any():
            raise UserInputError(
                "correct_only needs a model whose output is class scores (batch x classes); this model's is not."
            )
        targets = data.labels if data.model_class_of_label is None else data.model_class_of_label[data.labels]
        measured &= extraction.predicted == targets
    if not measured.any():
        raise UserInputError("No image is left to measure (all unreadable, or none classified correctly).")
    return measured


def rows(values: np.ndarray, measured: np.ndarray) -> np.ndarray:
    if measured.all():
        return values
    subset = values[measured]
    remember_rows(subset, values, measured)  # a distributed executor's workers read these rows from the store
    return subset


@dataclass
class MeasureFailureRecord:
    measure: str
    plugin: str
    layer: str
    error: str


@dataclass
class Measured:
    results: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    chance: dict[str, dict[str, dict]] = field(default_factory=dict)
    failures: list[MeasureFailureRecord] = field(default_factory=list)
    activations: dict[str, np.ndarray] = field(default_factory=dict)


def measure_step(
    spec: RunSpec,
    activations: dict[str, np.ndarray],
    labels: Labels,
    measures: list[tuple[Measure, str]],
    plugin_of: dict[str, str],
    device: torch.device,
    reporter: Reporter,
    description: str = "Computing measures",
) -> Measured:
    """Every measure on every layer; with ``spec.chance``, their chance levels too."""
    executor = current_executor()
    if executor.distributed:  # chunks of units (and blocks of shufflings) as tasks on the executor's workers
        with reporter.live():
            return executor.measure(spec, activations, labels, measures, plugin_of, reporter, description)
    prepare_kernels(max((values.size for values in activations.values()), default=0), device)
    kernels_ready(reporter)
    out = Measured()
    with reporter.live():
        steps = reporter.steps(description, len(activations))
        for layer, values in activations.items():
            errors: dict[str, BaseException] = {}
            matrix = as_activation_tensor(values)  # where chunks come from; read_chunk moves each to the device
            collector, each_chunk = None, None
            if spec.chance is not None:
                chance = spec.chance
                collector = NullCollector(
                    labels, measures, chance.columns or value_columns(measures), n_units=matrix.shape[1],
                    permutations=chance.permutations, seed=chance.seed,
                )
                each_chunk = partial(collector.add, skip=errors)
            out.results[layer] = compute_layer(
                matrix, labels, measures, failures=errors, layer=layer, chunk_done=lambda: release(values),
                each_chunk=each_chunk, read_chunk=lambda chunk: as_activation_tensor(read_units(values, chunk), device),
            )
            out.failures.extend(
                MeasureFailureRecord(label, plugin_of[label], layer, f"{type(e).__name__}: {e}")
                for label, e in errors.items()
            )
            if collector is not None:
                out.chance[layer] = chance_columns(spec.chance, out.results[layer], collector.null)
            del matrix
            release(values)
            steps.advance()
    return out


def untrained_step(spec, model, data, layers, measured, labels, measures, plugin_of, device, reporter) -> Measured:
    """The same layers, images and measures on the architecture's seeded random initialisation."""
    untrained_model = model.untrained(spec.seed)
    extraction = extract_step(spec, untrained_model, data, layers, device, reporter, Path(spec.output))
    activations = {label: rows(values, measured) for label, values in extraction.activations.items()}
    out = measure_step(spec, activations, labels, measures, plugin_of, device, reporter, "Measuring untrained network")
    out.activations = activations
    return out


def chance_columns(chance, results: dict[str, np.ndarray], null: dict[str, np.ndarray]) -> dict:
    """Adds the null columns of each tested column that ``results`` has (a failed measure's are
    left out) to ``results``; returns the layer's chance summary."""
    summary = {}
    for column in null:
        if column in results:
            results.update(summarise_null(results[column], null[column], column))
            summary[column] = chance_entry(chance, results, column)
    return summary


def chance_entry(chance, results: dict[str, np.ndarray], column: str) -> dict:
    """A column's chance summary, from its observed and null columns in ``results``."""
    return {
        "observed_mean": _mean(results[column].astype(np.float64)),
        "null_mean": _mean(results[f"{column}_null_mean"]),
        "n_above_chance": int(significant(results[f"{column}_p"], chance.alpha, chance.correction).sum()),
        "alpha": chance.alpha,
        "correction": chance.correction,
        "permutations": chance.permutations,
    }


def _mean(values: np.ndarray) -> float | None:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else None
