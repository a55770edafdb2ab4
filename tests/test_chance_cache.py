"""Chance baselines reuse label-free work across shufflings; none of it may carry labels over.

Each null distribution computed with statistics shared across shufflings (``LayerStats.relabelled``
of statistics made with ``reused=True``: the ranking, each unit's sorted activations, precision's
tie layout) must equal, bit for bit, the measures recomputed from scratch for each shuffling with
fresh statistics, on data with many ties, a NaN unit and a constant unit, for any chunking and
with both kernel paths.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selectivity_eval.core.measures.chance import null_distribution
from selectivity_eval.core.measures.compute import measure_columns, resolve_measures
from selectivity_eval.core.statistics.labels import Labels
from selectivity_eval.core.statistics.layer_stats import LayerStats

pytestmark = pytest.mark.usefixtures("single_torch_thread", "kernel_mode")

PERMUTATIONS = 6
SEED = 11
NAN_UNIT = 8


def tied_matrix(seed: int = 0) -> tuple[torch.Tensor, Labels]:
    """120 images of 7 classes of unequal size, 23 units of small integers (ties everywhere)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(7), [30, 25, 20, 15, 12, 10, 8]))
    matrix = rng.integers(0, 4, size=(120, 23)).astype(np.float32)
    matrix[:, 3] = np.where(rng.random(120) < 0.9, 0.0, matrix[:, 3])  # mostly-zero ReLU unit
    matrix[:, 5] = 2.0  # constant
    matrix[7, NAN_UNIT] = np.nan  # non-finite unit
    matrix[:, 9] = rng.standard_normal(120).astype(np.float32)  # no ties
    matrix[:, 10] = np.where(labels == 2, 3.0, matrix[:, 10])  # selective, tied at its top
    return torch.from_numpy(matrix), Labels.from_array(labels)


MEASURES = [
    ("detection", {}),
    ("detection", {"target": "top"}),
    ("precision", {"top_n": 10}),
    ("precision", {"top_n": 25, "preset": "none"}),
    ("topclass", {}),
    ("topclass", {"window": "gale2019"}),
    ("localist", {}),
    ("ccmas", {}),
]


def instances():
    found = []
    for index, (name, params) in enumerate(MEASURES):
        measure = resolve_measures([name], {name: params})[0]
        found.append((measure, f"{name}{index}"))
    return found


def from_scratch(matrix, labels, measures, columns):
    """Each shuffling's columns from fresh statistics of the whole matrix: nothing shared."""
    generator = torch.Generator().manual_seed(SEED)
    null = {column: np.empty((PERMUTATIONS, matrix.shape[1])) for column in columns}
    for permutation in range(PERMUTATIONS):
        stats = LayerStats(matrix, labels.shuffled(generator))
        for measure, label in measures:
            for column, values in measure_columns(measure, stats, label).items():
                if column in null:
                    null[column][permutation] = values
    return null


def assert_same_null(null: np.ndarray, expected: np.ndarray, column: str) -> None:
    """Equal to ``from_scratch``'s, but for the unit with a NaN, which has NaN in every observed
    column and so in every null column."""
    units = np.arange(null.shape[1]) != NAN_UNIT
    np.testing.assert_array_equal(null[:, units], expected[:, units], err_msg=column)
    assert np.isnan(null[:, NAN_UNIT]).all(), column


@pytest.mark.parametrize("chunk_size", [None, 1, 5])
def test_shared_label_free_work_gives_each_shufflings_own_columns(chunk_size):
    matrix, labels = tied_matrix()
    measures = instances()
    columns = [
        column
        for measure, label in measures
        for column, kind in measure.output_columns(label).items()
        if kind.value in ("value", "count")
    ]
    expected = from_scratch(matrix, labels, measures, columns)
    null = null_distribution(
        matrix, labels, measures, columns, permutations=PERMUTATIONS, seed=SEED, chunk_size=chunk_size
    )
    for column in columns:
        assert_same_null(null[column], expected[column], column)
    # The shufflings really differ, so a cache that kept the first one's labels would show.
    assert not np.array_equal(null["detection0_auroc"][0], null["detection0_auroc"][1])


def test_reused_statistics_measure_the_same_as_fresh_ones():
    """Statistics kept for many labellings (sorted activations, count_above by search) change no value."""
    matrix, labels = tied_matrix(1)
    measures = instances()
    shared = LayerStats(matrix, labels, reused=True)
    generator = torch.Generator().manual_seed(3)
    for labelling in [labels, labels.shuffled(generator), labels.shuffled(generator), labels]:
        relabelled = shared.relabelled(labelling)
        fresh = LayerStats(matrix, labelling)
        for measure, label in measures:
            got = measure_columns(measure, relabelled, label)
            want = measure_columns(measure, fresh, label)
            for column in want:
                np.testing.assert_array_equal(got[column], want[column], err_msg=column)
    thresholds = torch.tensor([0.0, 1.0, 2.5, -1.0] * 5 + [3.0, 10.0, float("nan")], dtype=torch.float32)
    np.testing.assert_array_equal(
        shared.count_above(thresholds).numpy(), LayerStats(matrix, labels).count_above(thresholds).numpy()
    )
    assert "sorted" in shared._label_free


def test_shufflings_compute_only_the_tested_columns(monkeypatch):
    """Testing precision alone never computes its tie-order columns, and changes no value."""
    from selectivity_eval.plugins.measures import precision as precision_module

    matrix, labels = tied_matrix(2)
    measures = [(m, label) for m, label in instances() if label.startswith("precision")]
    columns = [label for _, label in measures]
    expected = from_scratch(matrix, labels, measures, columns)

    def refuse(*args, **kwargs):
        raise AssertionError("tie bounds computed for a shuffling that does not test them")

    monkeypatch.setattr(precision_module, "tie_bounds", refuse)
    null = null_distribution(matrix, labels, measures, columns, permutations=PERMUTATIONS, seed=SEED)
    for column in columns:
        assert_same_null(null[column], expected[column], column)
    with pytest.raises(AssertionError, match="tie bounds computed"):
        null_distribution(matrix, labels, measures, ["precision2_min"], permutations=1, seed=SEED)


def test_measure_columns_returns_the_wanted_columns_and_names_a_missing_one():
    matrix, labels = tied_matrix()
    measure, label = instances()[2]
    stats = LayerStats(matrix, labels)
    assert list(measure_columns(measure, stats, label, {"precision2", "precision2_max"})) == [
        "precision2",
        "precision2_max",
    ]

    class Forgetful(type(measure)):
        def compute_columns(self, stats, wanted):
            return {"precision": torch.zeros(stats.n_units, dtype=torch.float64)}

    with pytest.raises(ValueError, match=r"missing \['precision_min'\]"):
        measure_columns(Forgetful(), stats, None, {"precision", "precision_min"})
