"""Helpers shared by the measure tests: the package's four columns and a NaN-aware comparison."""

from __future__ import annotations

import numpy as np

import selectivity_eval as se

from .reference_measures import CLASS_COLUMNS, COLUMNS, COUNT_COLUMNS, FLAG_COLUMNS, FOUR_MEASURES

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
