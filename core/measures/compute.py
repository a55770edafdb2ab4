"""``compute_measures``: any activation matrix in, one numpy array per measure column out."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from selectivity_eval.core.statistics.labels import Labels
from selectivity_eval.core.measures.base import Column, Measure
from selectivity_eval.core.statistics.layer_stats import LayerStats

DEFAULT_CHUNK_BYTES = 128 * 2**20
CLASS_STATS_BYTES = 16 * 2**20


def as_activation_tensor(activations: Any, device: torch.device | str | None = None) -> torch.Tensor:
    """A 2-D float tensor (images x units) from numpy or torch input; float64 stays float64."""
    tensor = activations if isinstance(activations, torch.Tensor) else torch.as_tensor(np.asarray(activations))
    if tensor.ndim != 2:
        raise ValueError(f"activations must be a 2-D matrix (images x units), got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float64)
    elif tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.to(torch.float32)
    return tensor.to(device) if device is not None else tensor


def resolve_measures(
    measures: Iterable[str | Measure] | None, params: Mapping[str, Mapping[str, Any]] | None
) -> list[Measure]:
    """Measure instances from names (looked up in the registry) or instances; ``None``: all registered."""
    from selectivity_eval.core.registry.manager import get_registry

    params = dict(params or {})
    registry = None
    if measures is None:
        registry = get_registry()
        measures = registry.names("measure")
    resolved = []
    for measure in measures:
        if isinstance(measure, Measure):
            resolved.append(measure)
            continue
        registry = registry or get_registry()
        resolved.append(registry.get("measure", measure)(params.pop(measure, None)))
    if params:
        raise ValueError(f"params given for measures not computed: {', '.join(sorted(params))}")
    return resolved


def unit_chunks(n_units: int, n_images: int, n_classes: int, itemsize: int, chunk_size: int | None) -> Iterable[slice]:
    """Slices of units; by default as many as keep the chunk and its class statistics small."""
    if chunk_size is None:
        by_images = DEFAULT_CHUNK_BYTES // max(1, n_images * itemsize)
        by_classes = CLASS_STATS_BYTES // max(1, n_classes * 16)
        chunk_size = max(1, min(by_images, by_classes))
    for start in range(0, n_units, chunk_size):
        yield slice(start, min(start + chunk_size, n_units))


def compute_measures(
    activations: Any,
    labels: Any,
    measures: Sequence[str | Measure] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    layer: str = "activations",
) -> dict[str, np.ndarray]:
    """Compute selectivity measures for every unit (column) of ``activations``.

    ``labels`` gives each image's class. ``measures`` names registered measures or passes instances;
    ``None`` computes every registered measure. ``params`` maps a measure's name to its parameters,
    e.g. ``{"precision": {"top_n": 60}}``. Units are processed ``chunk_size`` at a time (default: as
    many as keep memory small), which bounds memory and never changes a result. Returns a mapping
    of column name to a numpy array of shape (units,); class columns hold the original label values.
    A unit with any NaN or infinite activation gets NaN in every column (False in flag columns, and
    class and count columns then become float, or object for non-numeric labels), with a warning
    naming ``layer`` and how many units are affected.
    """
    instances = resolve_measures(measures, params)
    matrix = as_activation_tensor(activations, device)
    label_info = Labels.from_array(labels, matrix.device)
    return compute_layer(matrix, label_info, [(m, m.name) for m in instances], chunk_size=chunk_size, layer=layer)


def compute_layer(
    matrix: torch.Tensor,
    labels: Labels,
    measures: Sequence[tuple[Measure, str]],
    *,
    chunk_size: int | None = None,
    failures: dict[str, BaseException] | None = None,
    layer: str = "activations",
    chunk_done: Callable[[], None] | None = None,
    each_chunk: Callable[[LayerStats, slice], None] | None = None,
    read_chunk: Callable[[slice], torch.Tensor] | None = None,
) -> dict[str, np.ndarray]:
    """Every (measure, column label) pair on one layer, chunk by chunk of units.

    With ``failures`` given, a measure that raises is recorded there under its label and left out,
    and the other measures still complete; without it the error propagates. ``chunk_done`` is
    called after each chunk (a run gives a memory-mapped layer's pages back there). ``each_chunk``
    gets each chunk's statistics, made with ``reused=True``, once its measures are taken: chance
    baselines shuffle the labels of the same statistics (``NullCollector.add``). ``read_chunk``
    reads a chunk of units, ``matrix[:, chunk]`` by default (a run reads stored layers from file).
    """
    if matrix.shape[0] != labels.n_images:
        raise ValueError(f"activations have {matrix.shape[0]} images (rows) but there are {labels.n_images} labels")
    check_distinct_columns(measures)
    pieces: dict[str, list[np.ndarray]] = {}
    finite: list[np.ndarray] = []
    chunks = unit_chunks(matrix.shape[1], matrix.shape[0], labels.n_classes, matrix.element_size(), chunk_size)
    for chunk in chunks:
        part = read_chunk(chunk) if read_chunk is not None else matrix[:, chunk]
        stats = LayerStats(part, labels, reused=each_chunk is not None)
        finite.append(stats.finite_units.cpu().numpy())
        for measure, label in measures:
            if failures is not None and label in failures:
                continue
            try:
                columns = measure_columns(measure, stats, label)
            except Exception as error:
                if failures is None:
                    raise
                failures[label] = error
                continue
            for column, values in columns.items():
                pieces.setdefault(column, []).append(values)
        if each_chunk is not None:
            each_chunk(stats, chunk)
        del stats, part
        if chunk_done is not None:
            chunk_done()
    failed = set(failures or ())
    kinds = {
        column: kind
        for measure, label in measures
        if label not in failed
        for column, kind in measure.output_columns(label).items()
    }
    results = {column: np.concatenate(pieces[column]) if column in pieces else np.empty(0) for column in kinds}
    invalid = ~np.concatenate(finite) if finite else np.zeros(0, dtype=bool)
    if invalid.any():
        warnings.warn(
            f"Layer {layer!r}: {int(invalid.sum())} of {len(invalid)} units have NaN or infinite "
            "activations; every measure of those units is NaN.",
            stacklevel=2,
        )
        for column, kind in kinds.items():
            results[column] = _blank_invalid(results[column], invalid, kind)
    return results


def check_distinct_columns(measures: Sequence[tuple[Measure, str]]) -> None:
    """Two measures writing one column name would overwrite each other: refuse, naming both."""
    owner: dict[str, str] = {}
    for measure, label in measures:
        for column in measure.output_columns(label):
            if column in owner:
                raise ValueError(
                    f"measures {owner[column]!r} and {label!r} both produce the column {column!r}; "
                    "give one of them a different `label`"
                )
            owner[column] = label


def _blank_invalid(values: np.ndarray, invalid: np.ndarray, kind: Column) -> np.ndarray:
    if kind is Column.FLAG:
        return np.where(invalid, False, values)
    if values.dtype.kind in "biuf":
        values = values.astype(np.float64)
        values[invalid] = np.nan
        return values
    values = values.astype(object)
    values[invalid] = None
    return values


def measure_columns(
    measure: Measure, stats: LayerStats, label: str | None = None, wanted: Collection[str] | None = None
) -> dict[str, np.ndarray]:
    """Run one measure on one chunk and convert its output to numpy, checking the contract.

    ``wanted`` names the output columns needed (default: all); only those are returned, and the
    measure is asked for them alone (``Measure.compute_columns``).
    """
    declared = measure.columns
    names = dict(zip(declared, measure.output_columns(label)))
    if wanted is None:
        raw = measure.compute(stats)
        if set(raw) != set(declared):
            raise ValueError(
                f"measure {measure.name!r} returned columns {sorted(raw)} but declares {sorted(declared)}"
            )
    else:
        needed = frozenset(column for column, name in names.items() if name in wanted)
        raw = measure.compute_columns(stats, needed)
        missing, undeclared = needed - set(raw), set(raw) - set(declared)
        if missing or undeclared:
            raise ValueError(
                f"measure {measure.name!r}: compute_columns returned columns {sorted(raw)} when asked for "
                f"{sorted(needed)} (missing {sorted(missing)}, not declared {sorted(undeclared)})"
            )
        names = {column: name for column, name in names.items() if column in needed}
    out = {}
    for column, name in names.items():
        kind = declared[column]
        values = raw[column]
        if tuple(values.shape) != (stats.n_units,):
            raise ValueError(
                f"measure {measure.name!r} column {column!r} has shape {tuple(values.shape)}, "
                f"expected ({stats.n_units},)"
            )
        array = values.detach().cpu().numpy()
        if kind is Column.VALUE:
            _refuse_infinite(measure, column, array, stats)
        if kind is Column.CLASS:
            array = stats.labels.classes[array]
        elif kind is Column.FLAG:
            array = array.astype(bool)
        out[name] = array
    return out


def _refuse_infinite(measure: Measure, column: str, array: np.ndarray, stats: LayerStats) -> None:
    """A value column holds finite numbers or NaN; +-inf fails the measure (on this layer only).

    Units with non-finite activations are exempt: every column of theirs is blanked to NaN anyway.
    """
    if array.dtype.kind != "f":
        return
    infinite = np.isinf(array) & stats.finite_units.cpu().numpy()
    if infinite.any():
        raise ValueError(
            f"measure {measure.name!r} column {column!r} is infinite for {int(infinite.sum())} of "
            f"{len(array)} units with finite activations; a value column must hold finite numbers "
            "(NaN where a unit has no value)"
        )
