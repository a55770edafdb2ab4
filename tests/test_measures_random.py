"""The four built-in measures on seeded random matrices: reference agreement, chunking, dtype, device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import selectivity_eval as se

from .measure_checks import assert_same_columns, package_columns
from .reference_measures import (
    CLASS_COLUMNS,
    COUNT_COLUMNS,
    FLAG_COLUMNS,
    FOUR_MEASURES,
    VALUE_COLUMNS,
    reference_columns,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread", "kernel_mode")


LABEL_VALUES = np.array([2, 5, 11, 13, 40])


def random_case(kind, seed, n_images=57, n_units=23, n_classes=4):
    rng = np.random.default_rng(seed)
    labels = rng.choice(LABEL_VALUES[:n_classes], size=n_images)
    if kind == "float":
        matrix = rng.standard_normal((n_images, n_units))
    elif kind == "relu":
        matrix = np.maximum(rng.standard_normal((n_images, n_units)), 0.0)
    elif kind == "int":
        matrix = rng.integers(-3, 4, size=(n_images, n_units)).astype(np.float64)
    elif kind == "nonneg_int":
        matrix = rng.integers(0, 4, size=(n_images, n_units)).astype(np.float64)
    else:
        raise ValueError(kind)
    # A few planted localist and dead units among the random ones.
    matrix[:, 0] = np.where(labels == labels[0], 10.0, 0.0) + rng.random(n_images)
    matrix[:, 1] = 0.0
    return matrix, labels


KINDS = ["float", "relu", "int", "nonneg_int"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("top_n", [1, 5, 100])
def test_random_matrix_matches_reference(kind, seed, top_n):
    matrix, labels = random_case(kind, seed)
    actual = package_columns(matrix, labels, top_n=top_n)
    assert_same_columns(actual, reference_columns(matrix, labels, top_n=top_n), rtol=1e-12, atol=1e-12)
    assert actual["is_localist"][0] and actual["localist_class"][0] == labels[0]


@pytest.mark.parametrize("kind", ["relu", "nonneg_int"])
@pytest.mark.parametrize("eps", [0.0, 1e-7])
def test_random_matrix_class_mean_matches_reference(kind, eps):
    matrix, labels = random_case(kind, 3)
    actual = package_columns(matrix, labels, top_n=10, others="class_mean", eps=eps)
    reference = reference_columns(matrix, labels, top_n=10, others="class_mean", eps=eps)
    assert_same_columns(actual, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_chunk_size_never_changes_a_result(kind):
    matrix, labels = random_case(kind, 7, n_images=80, n_units=31)
    results = [package_columns(matrix, labels, top_n=9, chunk_size=c) for c in (1, 7, None)]
    for other in results[1:]:
        assert set(other) == set(results[0])
        for column in results[0]:
            assert other[column].dtype == results[0][column].dtype, column
            np.testing.assert_array_equal(other[column], results[0][column], err_msg=column)
    assert_same_columns(results[0], reference_columns(matrix, labels, top_n=9), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_and_float64_agree(kind):
    matrix, labels = random_case(kind, 9)
    as32 = matrix.astype(np.float32)
    result32 = package_columns(as32, labels, top_n=8)
    # The same numbers in float64: identical classes, flags and counts, values equal up to rounding.
    result64 = package_columns(as32.astype(np.float64), labels, top_n=8)
    assert_same_columns(result32, result64, rtol=1e-6, atol=1e-6, context="float32 vs float64")
    assert_same_columns(result32, reference_columns(as32, labels, top_n=8), rtol=1e-6, atol=1e-6)
    # And against the original float64 matrix (float32 rounding must not move any class here).
    original = package_columns(matrix, labels, top_n=8)
    assert_same_columns(result32, original, rtol=1e-5, atol=1e-5, context="float32 vs original")


def test_integer_input_matches_float_input():
    matrix, labels = random_case("int", 4)
    matrix = np.floor(matrix)  # the planted unit has fractional parts
    as_int = package_columns(matrix.astype(np.int64), labels, top_n=6)
    as_float = package_columns(matrix, labels, top_n=6)
    assert_same_columns(as_int, as_float)


def test_columns_have_expected_dtypes():
    matrix, labels = random_case("float", 0)
    result = package_columns(matrix, labels)
    for column in CLASS_COLUMNS + COUNT_COLUMNS:
        assert np.issubdtype(result[column].dtype, np.integer), column
    for column in FLAG_COLUMNS:
        assert result[column].dtype == np.bool_, column
    for column in VALUE_COLUMNS:
        assert np.issubdtype(result[column].dtype, np.floating), column
    for column in CLASS_COLUMNS:
        assert set(result[column]) <= set(labels), column


@pytest.mark.parametrize("top_n", [60, 100])
def test_sparse_relu_layer_tie_at_zero_straddles_top_set(top_n):
    # A realistic post-ReLU layer: most activations are exactly 0, and many units have fewer than
    # top_n positive images, so the top set ends inside the block of zeros and must take the zeros
    # with the lowest image indices.
    rng = np.random.default_rng(21)
    n_images, n_units = 3000, 24
    labels = rng.choice([1, 4, 6, 9], size=n_images)
    positive = rng.random((n_images, n_units)) < np.linspace(0.0, 0.05, n_units)
    matrix = np.where(positive, rng.random((n_images, n_units)), 0.0)
    # Make the class of the lowest-index zeros differ by unit, so the wrong zeros change the answer.
    matrix[: n_images // 2, ::2] = np.where(labels[: n_images // 2, None] == 9, matrix[: n_images // 2, ::2], 0.0)
    actual = package_columns(matrix, labels, top_n=top_n)
    assert_same_columns(actual, reference_columns(matrix, labels, top_n=top_n), rtol=1e-12, atol=1e-12)
    for chunk_size in (1, 5):
        chunked = package_columns(matrix, labels, top_n=top_n, chunk_size=chunk_size)
        assert_same_columns(chunked, actual)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_available_device_matches_reference(kind, device):
    """CPU always; CUDA too where torch sees a GPU (the device check runs this file there)."""
    matrix, labels = random_case(kind, 13, n_images=300, n_units=40)
    for top_n in (1, 17, 100):
        params = {"precision": {"top_n": top_n}}
        columns = se.compute_measures(matrix, labels, FOUR_MEASURES, params=params, device=device)
        assert_same_columns(columns, reference_columns(matrix, labels, top_n=top_n), rtol=1e-12, atol=1e-12)
