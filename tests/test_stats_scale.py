"""Shared statistics at scale: the fast top-k path, chunking, dtypes and non-finite units."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import selectivity_eval as se
from selectivity_eval.core.statistics.layer_stats import Labels, LayerStats, ranked_top_indices

from .reference_measures import COLUMNS, reference_columns

pytestmark = pytest.mark.usefixtures("kernel_mode")

BUILTIN = ["localist", "precision", "ccmas", "topclass", "detection"]


def ranking_reference(values: np.ndarray, k: int) -> np.ndarray:
    """Per unit: sort images by (-activation, index) and take the first k."""
    return np.stack([np.lexsort((np.arange(len(col)), -col))[:k] for col in values.T], axis=1)


def many_class_case(seed, n_images=600, n_units=30, n_classes=60, kind="int"):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n_images)
    labels[:n_classes] = np.arange(n_classes)
    if kind == "int":
        matrix = rng.integers(0, 5, (n_images, n_units)).astype(np.float32)
    elif kind == "sparse":
        matrix = np.where(rng.random((n_images, n_units)) < 0.02, rng.random((n_images, n_units)), 0).astype(np.float32)
    else:
        matrix = np.maximum(rng.standard_normal((n_images, n_units)), 0).astype(np.float32)
    matrix[:, 0] = 0.0
    return matrix, labels


@pytest.mark.parametrize("kind", ["int", "sparse", "relu"])
@pytest.mark.parametrize("k", [1, 7, 40, 60])
def test_class_bound_top_k_equals_the_plain_ranking(kind, k):
    """With at least k classes the candidate path runs; ties and loose bounds must not change it."""
    matrix, labels = many_class_case(3, kind=kind)
    stats = LayerStats(torch.from_numpy(matrix), Labels.from_array(labels))
    expected = ranking_reference(matrix, k)
    np.testing.assert_array_equal(stats.top_indices(k).numpy(), expected)
    np.testing.assert_array_equal(ranked_top_indices(torch.from_numpy(matrix), k).numpy(), expected)


@settings(max_examples=60, deadline=None)
@given(
    matrix=arrays(np.float64, st.tuples(st.integers(12, 40), st.integers(1, 6)), elements=st.integers(-2, 3).map(float)),
    n_classes=st.integers(6, 12),
    top_n=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_many_classes_small_top_n_match_the_reference(matrix, n_classes, top_n, seed):
    labels = np.random.default_rng(seed).integers(0, n_classes, len(matrix))
    ours = se.compute_measures(matrix, labels, BUILTIN, params={"precision": {"top_n": top_n}})
    expected = reference_columns(matrix, labels, top_n=top_n)
    for column in COLUMNS:
        np.testing.assert_array_equal(np.asarray(ours[column]), expected[column], err_msg=column)


def test_row_blocks_do_not_change_results(monkeypatch):
    matrix, labels = many_class_case(5, n_images=900, n_units=16, kind="relu")
    whole = se.compute_measures(matrix, labels, BUILTIN, params={"precision": {"top_n": 30}})
    monkeypatch.setattr("selectivity_eval.core.statistics.layer_stats.ROW_BLOCK_BYTES", 64)
    blocked = se.compute_measures(matrix, labels, BUILTIN, params={"precision": {"top_n": 30}})
    for column in whole:
        np.testing.assert_array_equal(whole[column], blocked[column], err_msg=column)


@pytest.mark.parametrize("chunk_size", [1, 7, None])
def test_chunk_sizes_give_identical_results(chunk_size):
    matrix, labels = many_class_case(8, n_units=23, kind="int")
    whole = se.compute_measures(matrix, labels, BUILTIN, params={"precision": {"top_n": 20}}, chunk_size=10_000)
    chunked = se.compute_measures(matrix, labels, BUILTIN, params={"precision": {"top_n": 20}}, chunk_size=chunk_size)
    for column in whole:
        np.testing.assert_array_equal(whole[column], chunked[column], err_msg=column)


def test_float32_and_float64_agree():
    matrix, labels = many_class_case(9, kind="relu")
    single = se.compute_measures(matrix, labels, BUILTIN, params={"precision": {"top_n": 25}})
    double = se.compute_measures(matrix.astype(np.float64), labels, BUILTIN, params={"precision": {"top_n": 25}})
    for column, values in single.items():
        if values.dtype.kind == "f":
            np.testing.assert_allclose(values, double[column], rtol=1e-6, atol=1e-6, err_msg=column)
        else:
            np.testing.assert_array_equal(values, double[column], err_msg=column)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_unit_is_nan_with_a_warning_and_others_unaffected(bad):
    matrix, labels = many_class_case(10, n_units=6, kind="relu")
    clean = se.compute_measures(matrix, labels, BUILTIN, params={"precision": {"top_n": 10}})
    matrix[17, 2] = bad
    matrix[3, 4] = bad
    with pytest.warns(UserWarning, match=r"Layer 'fc7': 2 of 6 units have NaN or infinite"):
        dirty = se.compute_measures(matrix, labels, BUILTIN, params={"precision": {"top_n": 10}}, layer="fc7")
    good = [0, 1, 3, 5]
    for column, values in dirty.items():
        if values.dtype == bool:  # flags: is_localist, precision_tied, topclass_tied
            assert not values[[2, 4]].any(), column
        else:
            assert np.isnan(values[[2, 4]].astype(float)).all(), column
        np.testing.assert_array_equal(values[good].astype(clean[column].dtype), clean[column][good], err_msg=column)


def test_finite_input_gives_no_warning_and_integer_class_columns():
    matrix, labels = many_class_case(11, n_units=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        columns = se.compute_measures(matrix, labels, BUILTIN)
    assert columns["precision_class"].dtype.kind == "i" and columns["topclass_count"].dtype.kind == "i"
