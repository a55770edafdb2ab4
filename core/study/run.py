"""Run a whole study from a validated spec: load, extract, measure, write."""

from __future__ import annotations

import platform
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selectivity_eval._version import __version__
from selectivity_eval.core.am.method import AMContext
from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.distributed.executor import executor_record, executor_scope
from selectivity_eval.core.extraction.extract import resolve_layers
from selectivity_eval.core.statistics.labels import Labels
from selectivity_eval.core.measures.base import Column, Measure, Role
from selectivity_eval.core.outputs.results import (
    SILENT_COLUMN,
    silent_units,
    summarise_layer,
    write_json,
    write_resolved_spec,
    write_units_csv,
)
from selectivity_eval.core.registry.manager import Registry, get_registry
from selectivity_eval.core.cli.progress import Reporter
from selectivity_eval.core.report.build import report_after_run
from selectivity_eval.core.report.inputs import record_rows
from selectivity_eval.core.study.steps import (
    MeasureFailureRecord,
    extract_step,
    measure_step,
    measured_images,
    rows,
    untrained_step,
)
from selectivity_eval.core.sources.base import LoadedDataset, LoadedModel
from selectivity_eval.core.sources.loading import load_dataset_source, load_model_source
from selectivity_eval.core.statistics.backend import kernel_mode
from selectivity_eval.core.store.residency import page_out_weights, release, row_blocks, trim_heap
from selectivity_eval.schemas.spec import RunSpec


@dataclass
class RunResult:
    """A finished run: its output folder, per-layer results and summary, failures and report.

    ``results[layer][column]`` holds one value per unit (as units.csv has them); ``summary`` is
    summary.json's content; ``failures`` lists measures that failed on a layer (the rest was
    written); ``report`` is report.html's path, or None when the spec turned the report off.
    ``tables()`` gives the run as pandas tables, as ``se.load_run(output_dir)`` does.
    """

    output_dir: Path
    results: dict[str, dict[str, np.ndarray]]
    summary: dict[str, Any]
    failures: list[MeasureFailureRecord] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    report: Path | None = None

    def tables(self):
        """The run's outputs as pandas DataFrames: ``se.load_run`` on the output folder."""
        from selectivity_eval.core.outputs.tables import load_run

        return load_run(self.output_dir)


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserInputError("device: cuda was asked for, but torch sees no CUDA device. Use device: cpu or auto.")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def check_output_dir(path: Path) -> None:
    """The output directory exists or can be made: no part of its path is a file (checked before any work)."""
    for place in (path, *path.parents):
        if place.exists():
            if not place.is_dir():
                what = "is" if place == path else f"has {str(place)!r} in its path, which is"
                raise UserInputError(
                    f"The output directory {str(path)!r} {what} a file, not a directory. "
                    "Choose another output (`output:` in the spec, or --output)."
                )
            return


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_model(spec: RunSpec, registry: Registry) -> LoadedModel:
    return load_model_source(registry, spec.model.plugin, spec.model.params(), spec.seed)


def load_dataset(spec: RunSpec, registry: Registry, transform) -> LoadedDataset:
    return load_dataset_source(registry, spec.dataset.plugin, spec.dataset.params(), spec.seed, transform)


def run_spec(spec: RunSpec, *, reporter: Reporter | None = None, registry: Registry | None = None) -> RunResult:
    """Run the study ``spec`` describes, on the executor ``spec.executor`` names (in this process by default)."""
    kernel_mode()
    with executor_scope(spec.executor, reporter):
        return _run_spec(spec, reporter=reporter, registry=registry)


def _run_spec(spec: RunSpec, *, reporter: Reporter | None = None, registry: Registry | None = None) -> RunResult:
    """Run the study ``spec`` describes; the spec must already be validated (see ``load_spec``)."""
    registry = registry or get_registry()
    reporter = reporter or Reporter(quiet=True)
    timings: dict[str, float] = {}
    device = resolve_device(spec.device)
    check_output_dir(Path(spec.output))
    seed_everything(spec.seed)
    started = time.perf_counter()
    model = load_model(spec, registry)
    layers = resolve_layers(model, spec.layers)
    am_method = registry.get("am", spec.am.method)(spec.am.params()) if spec.am is not None else None
    if am_method is not None:
        am_method.validate(model, layers)  # unknown layers, units out of range: before any extraction
    am_layers = am_method.data_layers(model, layers) if am_method is not None else []
    data = load_dataset(spec, registry, model.transform)
    timings["load"] = time.perf_counter() - started
    output_dir = Path(spec.output)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_resolved_spec(output_dir / "spec.resolved.yaml", spec)

    started = time.perf_counter()
    extraction = extract_step(spec, model, data, [*layers, *am_layers], device, reporter, output_dir)
    measured = measured_images(extraction, data)
    am_readings = {layer.label: rows(extraction.activations.pop(layer.label), measured) for layer in am_layers}
    record_rows(output_dir, data.labels, measured, data.class_names, extraction.activations)
    activations = {label: rows(values, measured) for label, values in extraction.activations.items()}
    page_out_weights(model.module, output_dir)  # idle until AM, while the measures need the memory
    trim_heap()  # the decoding and forward passes' freed buffers, before the measures read the largest layer
    timings["extract"] = time.perf_counter() - started

    started = time.perf_counter()
    measures = [
        (registry.get("measure", ref.name)(ref.params()), ref.column_label) for ref in spec.measures or []
    ]
    plugin_of = {ref.column_label: registry.entry("measure", ref.name).origin.plugin for ref in spec.measures or []}
    labels = Labels.from_array(data.labels[measured], device)
    trained = measure_step(spec, activations, labels, measures, plugin_of, device, reporter)
    results, failures = trained.results, trained.failures
    timings["measures"] = time.perf_counter() - started

    flag_silent_units(results, activations)
    kinds, roles = column_kinds(measures), column_roles(measures)
    summary = summarise(results, kinds, roles, activations, trained.chance, spec.summary_units)
    if spec.untrained_baseline:
        started = time.perf_counter()
        untrained = untrained_step(spec, model, data, layers, measured, labels, measures, plugin_of, device, reporter)
        failures += untrained.failures
        flag_silent_units(untrained.results, untrained.activations)
        (output_dir / "untrained").mkdir(exist_ok=True)
        write_units_csv(output_dir / "untrained" / "units.csv", untrained.results)
        untrained_summary = summarise(
            untrained.results, kinds, roles, untrained.activations, untrained.chance, spec.summary_units
        )
        for layer in summary:
            summary[layer]["untrained"] = untrained_summary[layer]
        timings["untrained_baseline"] = time.perf_counter() - started
    write_units_csv(output_dir / "units.csv", results)
    write_json(output_dir / "summary.json", summary)

    result = RunResult(output_dir, results, summary, failures, timings)

    def write_record(**extra: Any) -> None:
        record = run_record(spec, model, data.identity, device, result, registry)
        record["images"] = {
            "in_data_set": len(data),
            "measured": int(measured.sum()),
            "unreadable_skipped": len(extraction.unreadable),
            "unreadable": extraction.unreadable[:100],
            "dropped_incorrect": int((extraction.readable & ~measured).sum()),
        }
        record["activation_cache"] = extraction.cache
        write_json(output_dir / "run.json", {**record, **extra})

    write_record()  # before AM, so a failing AM method loses nothing already computed
    if spec.am is not None:
        started = time.perf_counter()
        context = AMContext(
            model=model,
            layers={layer.label: layer.module_name for layer in layers},
            activations={**activations, **am_readings},
            results=results,
            output_dir=output_dir,
            device=device,
            seed=spec.seed,
            data=data,
            measured=measured,
            layer_settings={layer.label: layer for layer in layers},
            reporter=reporter,
        )
        with reporter.live():
            am_method.run(context)
        timings["am"] = time.perf_counter() - started
        write_record()
    started = time.perf_counter()
    result.report = report_after_run(output_dir, spec.report, reporter)
    if result.report is not None:  # apart from timings_s, which the report shows: a rebuild stays the same
        write_record(report_s=round(time.perf_counter() - started, 4))
    return result


def flag_silent_units(results: dict[str, dict[str, np.ndarray]], activations) -> None:
    """Add each measured layer's ``silent`` flag column (a constant unit, such as a dead ReLU)."""
    for layer, columns in results.items():
        if columns and layer in activations:
            columns[SILENT_COLUMN] = silent_units(activations[layer])
            release(activations[layer])


def summarise(results, kinds, roles, activations, chance, units: str = "responsive") -> dict[str, Any]:
    summary = {layer: summarise_layer(columns, kinds, roles, units) for layer, columns in results.items()}
    for layer, matrix in activations.items():
        summary[layer]["signed_activations"] = any(bool((block < 0).any()) for _, block in row_blocks(matrix))
        release(matrix)
        if layer in chance:
            summary[layer]["chance"] = chance[layer]
    return summary


def column_kinds(measures: list[tuple[Measure, str]]) -> dict[str, Column]:
    kinds: dict[str, Column] = {SILENT_COLUMN: Column.FLAG}
    for measure, label in measures:
        kinds.update(measure.output_columns(label))
    return kinds


def column_roles(measures: list[tuple[Measure, str]]) -> dict[str, Role]:
    roles: dict[str, Role] = {}
    for measure, label in measures:
        roles.update(measure.output_roles(label))
    return roles


def run_record(spec, model, dataset_identity, device, result: RunResult, registry: Registry) -> dict[str, Any]:
    plugins = sorted(
        {(e.origin.plugin, e.origin.distribution, e.origin.version) for e in registry}, key=lambda row: row[0]
    )
    return {
        "selectivity_eval": __version__,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "plugins": [{"plugin": p, "distribution": d, "version": v} for p, d, v in plugins],
        "seed": spec.seed,
        "device": str(device),
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
        "model": {"plugin": spec.model.plugin, "params": spec.model.params(), "identity": model.identity},
        "dataset": {"plugin": spec.dataset.plugin, "params": spec.dataset.params(), "identity": dataset_identity},
        "layers": {layer: summary["n_units"] for layer, summary in result.summary.items()},
        "failures": [vars(f) for f in result.failures],
        "executor": executor_record(),
        "status": "failed" if result.failures else "ok",
    }
