"""Chance baselines: every measure column recomputed under shuffled labels (measures.md section 6).

For each chosen column and unit: the mean and standard deviation (ddof=1) of the column over
``permutations`` shufflings of the labels, a z-score against them, and the permutation p-value
``(1 + #{null >= observed}) / (1 + permutations)``. All shufflings of a chunk of units share its
activations and the label-free statistics (the ranking, each unit's extremes), so many shufflings
cost far less than as many runs. Works for any measure, built-in or third-party, with no code of
its own: a shuffling is just another ``Labels``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Sequence
from typing import Literal

import numpy as np
import torch

from selectivity_eval.core.measures.compute import as_activation_tensor, measure_columns, resolve_measures, unit_chunks
from selectivity_eval.core.statistics.labels import Labels
from selectivity_eval.core.measures.base import Column, Measure, Role
from selectivity_eval.core.statistics.backend import compiled_kernels
from selectivity_eval.core.statistics.layer_stats import LayerStats

NULL_SUFFIXES = ("_null_mean", "_null_std", "_z", "_p")
GROUP_BYTES = 128 * 2**20
Correction = Literal["fdr_bh", "bonferroni", "none"]


def value_columns(measures: Sequence[tuple[Measure, str]], *, headline_only: bool = True) -> list[str]:
    """The columns chance baselines test when none are chosen: each measure's headline value and
    count columns (``localist``, ``precision``, ``ccmas``, ``topclass``, detection's four). With
    ``headline_only=False``, every value and count column, which is what ``chance.columns`` may
    choose from (detail columns such as ``precision_min`` or ``topclass_count`` too).
    """
    return [
        column
        for measure, label in measures
        for (column, kind), role in zip(measure.output_columns(label).items(), measure.output_roles(label).values())
        if kind in (Column.VALUE, Column.COUNT) and (role is Role.HEADLINE or not headline_only)
    ]


def null_distribution(
    matrix: torch.Tensor,
    labels: Labels,
    measures: Sequence[tuple[Measure, str]],
    columns: Sequence[str],
    *,
    permutations: int,
    seed: int,
    chunk_size: int | None = None,
    first: int = 0,
    chunk_done: Callable[[], None] | None = None,
) -> dict[str, np.ndarray]:
    """(permutations, units) of each column under seeded label shufflings, the same for any chunking.

    ``first`` skips that many shufflings of the seeded sequence: shufflings ``first`` to
    ``first + permutations`` of it, so blocks of shufflings computed apart add up to the whole.
    ``chunk_done`` is called after each chunk of units, as in ``compute_layer``.
    """
    collector = NullCollector(
        labels, measures, columns, n_units=matrix.shape[1], permutations=permutations, seed=seed, first=first
    )
    for chunk in unit_chunks(matrix.shape[1], matrix.shape[0], labels.n_classes, matrix.element_size(), chunk_size):
        stats = LayerStats(matrix[:, chunk], labels, reused=True)
        collector.add(stats, chunk)
        del stats
        if chunk_done is not None:
            chunk_done()
    return collector.null


class NullCollector:
    """A layer's null distributions, (permutations, units) per column, filled a chunk of units at a time.

    ``add`` takes the chunk's statistics made with ``reused=True``, so the label-free work (the
    ranking, each unit's sorted activations) is done once per chunk for every shuffling, and once
    for the observed columns too when ``compute_layer`` hands over the statistics it measured.
    """

    def __init__(
        self,
        labels: Labels,
        measures: Sequence[tuple[Measure, str]],
        columns: Sequence[str],
        *,
        n_units: int,
        permutations: int,
        seed: int,
        first: int = 0,
    ):
        self.labels = labels
        self.measures = list(measures)
        self.wanted = set(columns)
        self.null = {column: np.empty((permutations, n_units)) for column in columns}
        generator = torch.Generator().manual_seed(seed)
        for _ in range(first):
            labels.shuffled(generator)
        self.shufflings = [labels.shuffled(generator) for _ in range(permutations)]

    def add(self, stats: LayerStats, chunk: slice, skip: Collection[str] = ()) -> None:
        """Every shuffling's chosen columns on one chunk; measures labelled in ``skip`` are left out."""
        measures = [
            (measure, label)
            for measure, label in self.measures
            if label not in skip and self.wanted.intersection(measure.output_columns(label))
        ]
        # torch's class statistics of a batch of shufflings share each read of a row; the compiled
        # pass reads a labelling's classes in turn, so batching it would only hold more memory.
        compiled = compiled_kernels(stats.activations) is not None
        group = 1 if compiled else max(1, GROUP_BYTES // (self.labels.n_classes * stats.n_units * 16))
        for first in range(0, len(self.shufflings), group):
            batch = self.shufflings[first : first + group]
            class_stats = stats.class_statistics(batch, overwrite=True)  # each batch is measured before the next
            for offset, (shuffled, statistics) in enumerate(zip(batch, class_stats)):
                relabelled = stats.relabelled(shuffled, statistics)
                for measure, label in measures:
                    for column, values in measure_columns(measure, relabelled, label, self.wanted).items():
                        self.null[column][first + offset, chunk] = values
        invalid = ~stats.finite_units.cpu().numpy()
        if invalid.any():  # as their observed columns are: a measure's value for them means nothing
            for null in self.null.values():
                null[:, chunk][:, invalid] = np.nan


def summarise_null(observed: np.ndarray, null: np.ndarray, column: str) -> dict[str, np.ndarray]:
    """Null mean, standard deviation, z-score and permutation p-value of one column, per unit."""
    observed = observed.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(null, axis=0) if null.size else np.full(observed.shape, np.nan)
        std = np.nanstd(null, axis=0, ddof=1) if len(null) > 1 else np.full(observed.shape, np.nan)
        z = np.where(std > 0, (observed - mean) / std, np.nan)
    at_least = (null >= observed).sum(axis=0)
    p = (1 + at_least) / (1 + len(null))
    p = np.where(np.isnan(observed), np.nan, p)
    return {
        f"{column}_null_mean": mean,
        f"{column}_null_std": std,
        f"{column}_z": z,
        f"{column}_p": p,
    }


def significant(p_values: np.ndarray, alpha: float, correction: Correction) -> np.ndarray:
    """Units whose p-value beats chance at ``alpha`` after the multiple-comparison correction.

    ``fdr_bh`` is Benjamini-Hochberg (false discovery rate across the layer's units),
    ``bonferroni`` controls the family-wise error rate, ``none`` compares each p with alpha.
    """
    p = np.where(np.isnan(p_values), np.inf, p_values)
    m = int(np.isfinite(p).sum())
    if correction == "none" or m == 0:
        return p <= alpha
    if correction == "bonferroni":
        return p <= alpha / m
    order = np.argsort(p, kind="stable")
    passes = p[order] <= alpha * np.arange(1, len(p) + 1) / m
    cutoff = np.flatnonzero(passes).max() + 1 if passes.any() else 0
    result = np.zeros(len(p), dtype=bool)
    result[order[:cutoff]] = True
    return result


def chance_baselines(
    activations,
    labels,
    measures: Sequence[str | Measure] | None = None,
    params=None,
    *,
    permutations: int = 100,
    seed: int = 0,
    columns: Sequence[str] | None = None,
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
) -> dict[str, np.ndarray]:
    """The observed measure columns plus, for each chosen column, its chance baseline columns.

    ``columns`` defaults to the measures' headline value and count columns (``value_columns``);
    any value or count column may be chosen. Adds
    ``<column>_null_mean``, ``<column>_null_std``, ``<column>_z`` and ``<column>_p``.
    """
    from selectivity_eval.core.measures.compute import compute_layer

    instances = [(m, m.name) for m in resolve_measures(measures, params)]
    matrix = as_activation_tensor(activations, device)
    label_info = Labels.from_array(labels, matrix.device)
    chosen = list(columns) if columns is not None else value_columns(instances)
    known = {column for measure, label in instances for column in measure.output_columns(label)}
    unknown = [column for column in chosen if column not in known]
    if unknown:
        raise ValueError(f"no measure computes the column(s) {', '.join(unknown)}")
    collector = NullCollector(
        label_info, instances, chosen, n_units=matrix.shape[1], permutations=permutations, seed=seed
    )
    observed = compute_layer(matrix, label_info, instances, chunk_size=chunk_size, each_chunk=collector.add)
    for column in chosen:
        observed.update(summarise_null(observed[column], collector.null[column], column))
    return observed
