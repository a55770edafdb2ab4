"""Helpers shared by the measure tests: the package's four columns, a NaN-aware comparison, and
one hand-built unit checked against the reference and its hand values."""

from __future__ import annotations

import math

import numpy as np
import pytest

import selectivity_eval as se

from .reference_measures import CLASS_COLUMNS, COLUMNS, COUNT_COLUMNS, FLAG_COLUMNS, FOUR_MEASURES, reference_columns

EXACT_COLUMNS = CLASS_COLUMNS + FLAG_COLUMNS + COUNT_COLUMNS


def package_columns(activations, labels, top_n=100, others="pooled", eps=0.0, chunk_size=None):
    params = {"precision": {"top_n": top_n}, "ccmas": {"others": others, "eps": eps}}
    return se.compute_measures(activations, labels, FOUR_MEASURES, params=params, chunk_size=chunk_size)


def assert_same_columns(actual, expected, rtol=0.0, atol=0.0, context=""):
    """Class, flag and count columns exactly; value columns NaN-aware within (rtol, atol)."""
    assert set(actual) == set(COLUMNS), f"{context}: columns {sorted(actual)}"
    for column in COLUMNS:
        got, want = np.asarray(actual[column]), np.asarray(expected[column])
        assert got.shape == want.shape, f"{context}: {column} shape {got.shape} != {want.shape}"
        message = f"{context}: column {column}"
        if column in EXACT_COLUMNS:
            np.testing.assert_array_equal(got, want, err_msg=message)
        else:
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True, err_msg=message)


def check_unit(activations, labels, expected, rtol=1e-12, **params):
    """One unit (a 1-D activation vector): package == reference, and both == hand values."""
    matrix = np.asarray(activations, dtype=np.float64).reshape(-1, 1)
    labels = np.asarray(labels)
    actual = package_columns(matrix, labels, **params)
    reference = reference_columns(matrix, labels, **params)
    assert_same_columns(actual, reference, rtol=rtol, context="package vs reference")
    for column, value in expected.items():
        for source, columns in (("package", actual), ("reference", reference)):
            got = columns[column][0]
            message = f"{source}: {column} = {got!r}, expected {value!r}"
            if column in EXACT_COLUMNS:
                assert got == value, message
                if column in FLAG_COLUMNS:
                    assert isinstance(got, (bool, np.bool_)), message
            elif isinstance(value, float) and math.isnan(value):
                assert math.isnan(got), message
            else:
                assert got == pytest.approx(value, rel=1e-12, abs=1e-15), message
    return actual
