"""Property-based tests of the four built-in measures (docs/measures.md sections 1-4).

Activations are small integers, so ties are common and every sum is exact: the package must then
equal the plain reference (tests/reference_measures.py) exactly, ties included.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import selectivity_eval as se

from .reference_measures import (
    CLASS_COLUMNS,
    COLUMNS,
    COUNT_COLUMNS,
    FLAG_COLUMNS,
    FOUR_MEASURES,
    reference_columns,
)

EXACT_COLUMNS = CLASS_COLUMNS + FLAG_COLUMNS + COUNT_COLUMNS
LABEL_POOL = [-4, 0, 1, 3, 7, 42]

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


pytestmark = pytest.mark.usefixtures("single_torch_thread", "kernel_mode")


@st.composite
def layers(draw, low=-3, high=3, min_classes=1, max_images=24, max_units=4):
    """(activations, labels, top_n): small-integer activations (ties common), 1-5 classes."""
    n_classes = draw(st.integers(min_classes, 5))
    classes = draw(st.lists(st.sampled_from(LABEL_POOL), min_size=n_classes, max_size=n_classes, unique=True))
    n_images = draw(st.integers(n_classes, max_images))
    extra = draw(st.lists(st.sampled_from(classes), min_size=n_images - n_classes, max_size=n_images - n_classes))
    order = draw(st.permutations(classes + extra))
    labels = np.array(order, dtype=np.int64)
    n_units = draw(st.integers(1, max_units))
    values = draw(
        st.lists(st.integers(low, high), min_size=n_images * n_units, max_size=n_images * n_units)
    )
    activations = np.array(values, dtype=np.float64).reshape(n_images, n_units)
    top_n = draw(st.integers(1, n_images + 2))
    return activations, labels, top_n


def package_columns(activations, labels, top_n=100, others="pooled", eps=0.0, chunk_size=None):
    params = {"precision": {"top_n": top_n}, "ccmas": {"others": others, "eps": eps}}
    return se.compute_measures(activations, labels, FOUR_MEASURES, params=params, chunk_size=chunk_size)


def assert_columns_equal(actual, expected, columns=COLUMNS, rtol=0.0, atol=0.0):
    for column in columns:
        got, want = np.asarray(actual[column]), np.asarray(expected[column])
        if column in EXACT_COLUMNS or (rtol == 0 and atol == 0):
            np.testing.assert_array_equal(got, want, err_msg=column)
        else:
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True, err_msg=column)


@SETTINGS
@given(layers(), st.sampled_from([1, 2, None]))
def test_equals_reference_exactly(layer, chunk_size):
    activations, labels, top_n = layer
    actual = package_columns(activations, labels, top_n=top_n, chunk_size=chunk_size)
    assert set(actual) == set(COLUMNS)
    assert_columns_equal(actual, reference_columns(activations, labels, top_n=top_n))


@SETTINGS
@given(layers(low=0, high=4), st.sampled_from([0.0, 1e-7]))
def test_class_mean_equals_reference(layer, eps):
    # Non-negative input: a zero denominator means a dead unit, so rounding cannot create one.
    activations, labels, top_n = layer
    actual = package_columns(activations, labels, top_n=top_n, others="class_mean", eps=eps)
    reference = reference_columns(activations, labels, top_n=top_n, others="class_mean", eps=eps)
    assert_columns_equal(actual, reference, rtol=1e-12, atol=1e-15)


ORDER_FREE = [c for c in COLUMNS if not c.startswith("precision")]


@SETTINGS
@given(layers(), st.randoms(use_true_random=False))
def test_shuffling_images_changes_no_measure(layer, random):
    # Precision alone breaks ties by image index, so with ties only the other measures are
    # order-free; precision is checked on tie-free units below.
    activations, labels, top_n = layer
    perm = np.array(random.sample(range(len(labels)), len(labels)))
    before = package_columns(activations, labels, top_n=top_n)
    after = package_columns(activations[perm], labels[perm], top_n=top_n)
    assert_columns_equal(after, before, ORDER_FREE)


@st.composite
def tie_free_layers(draw):
    activations, labels, top_n = draw(layers())
    n_images, n_units = activations.shape
    columns = [draw(st.permutations(range(n_images))) for _ in range(n_units)]
    return np.array(columns, dtype=np.float64).T - n_images // 2, labels, top_n


@SETTINGS
@given(tie_free_layers(), st.randoms(use_true_random=False))
def test_shuffling_tie_free_images_changes_nothing(layer, random):
    activations, labels, top_n = layer
    perm = np.array(random.sample(range(len(labels)), len(labels)))
    before = package_columns(activations, labels, top_n=top_n)
    after = package_columns(activations[perm], labels[perm], top_n=top_n)
    assert_columns_equal(after, before)
    assert_columns_equal(before, reference_columns(activations, labels, top_n=top_n))


RANK_ONLY = [
    "precision",
    "precision_class",
    "topclass",
    "topclass_class",
    "topclass_count",
    "localist_class",
    "is_localist",
]

TRANSFORMS = {
    "affine": lambda x: 3 * x + 1,
    "exp": np.exp,
    "cube": lambda x: x**3 - 10,
    "shifted_log": lambda x: np.log(x + 4),
}


@SETTINGS
@given(layers(), st.sampled_from(sorted(TRANSFORMS)))
def test_strictly_increasing_transform_keeps_rank_measures(layer, name):
    activations, labels, top_n = layer
    before = package_columns(activations, labels, top_n=top_n)
    after = package_columns(TRANSFORMS[name](activations), labels, top_n=top_n)
    assert_columns_equal(after, before, RANK_ONLY)


@SETTINGS
@given(layers(), st.sampled_from([0.5, 2.0, 3.0, 7.25, 1e3]))
def test_positive_scaling_keeps_ccmas(layer, scale):
    activations, labels, top_n = layer
    before = package_columns(activations, labels)
    after = package_columns(activations * scale, labels)
    np.testing.assert_allclose(after["ccmas"], before["ccmas"], rtol=1e-12, atol=1e-12, equal_nan=True)


@SETTINGS
@given(layers(low=0, high=4), st.sampled_from([0.5, 3.0, 1e3]))
def test_positive_scaling_keeps_ccmas_class_mean(layer, scale):
    activations, labels, _ = layer
    before = package_columns(activations, labels, others="class_mean")
    after = package_columns(activations * scale, labels, others="class_mean")
    np.testing.assert_allclose(after["ccmas"], before["ccmas"], rtol=1e-12, atol=1e-12, equal_nan=True)


@SETTINGS
@given(layers())
def test_bounds(layer):
    activations, labels, top_n = layer
    cols = package_columns(activations, labels, top_n=top_n)
    single = len(np.unique(labels)) == 1
    assert np.all((cols["precision"] > 0) & (cols["precision"] <= 1))
    if single:
        assert np.all(np.isnan(cols["topclass"]))
        assert np.all(np.isnan(cols["localist_norm"]))
        assert not cols["is_localist"].any()
        counts = {c: int((labels == c).sum()) for c in np.unique(labels)}
        np.testing.assert_array_equal(cols["topclass_count"], [counts[c] for c in cols["topclass_class"]])
    else:
        assert np.all((cols["topclass"] >= 0) & (cols["topclass"] <= 1))
        assert np.all((cols["localist_norm"] >= -1) & (cols["localist_norm"] <= 1))
        assert not np.isnan(cols["localist"]).any() and not np.isnan(cols["localist_off"]).any()
    assert np.all(cols["topclass_count"] >= 0)
    for column in CLASS_COLUMNS:
        assert set(cols[column].tolist()) <= set(labels.tolist())


@SETTINGS
@given(layers(low=0, high=4))
def test_ccmas_in_unit_interval_for_non_negative_input(layer):
    activations, labels, top_n = layer
    for others in ("pooled", "class_mean"):
        ccmas = package_columns(activations, labels, top_n=top_n, others=others)["ccmas"]
        finite = ccmas[~np.isnan(ccmas)]
        assert np.all((finite >= 0) & (finite <= 1)), others
        if len(np.unique(labels)) > 1:
            # NaN only for a dead unit (every activation zero).
            np.testing.assert_array_equal(np.isnan(ccmas), ~activations.any(axis=0))


@SETTINGS
@given(layers())
def test_topclass_is_one_exactly_when_localist(layer):
    activations, labels, top_n = layer
    cols = package_columns(activations, labels, top_n=top_n)
    np.testing.assert_array_equal(cols["topclass"] == 1, cols["is_localist"])
    np.testing.assert_array_equal(cols["localist"] > 0, cols["is_localist"])
    localist = cols["is_localist"]
    np.testing.assert_array_equal(cols["topclass_class"][localist], cols["localist_class"][localist])


@st.composite
def planted_localist(draw):
    activations, labels, top_n = draw(layers(min_classes=2))
    target = draw(st.sampled_from(sorted(set(labels.tolist()))))
    is_target = labels == target
    n_images, n_units = activations.shape
    # Others keep their values in [-3, 3]; the target class lies strictly above, ties within it allowed.
    lifted = draw(st.lists(st.integers(4, 6), min_size=n_images * n_units, max_size=n_images * n_units))
    lifted = np.array(lifted, dtype=np.float64).reshape(n_images, n_units)
    activations = np.where(is_target[:, None], lifted, activations)
    return activations, labels, top_n, target


@SETTINGS
@given(planted_localist())
def test_planted_localist_unit_is_found(case):
    activations, labels, top_n, target = case
    cols = package_columns(activations, labels, top_n=top_n)
    assert cols["is_localist"].all()
    assert (cols["localist_class"] == target).all()
    assert (cols["topclass_class"] == target).all()
    assert (cols["topclass"] == 1).all()
    assert (cols["topclass_count"] == (labels == target).sum()).all()
    assert (cols["localist"] >= 1).all() and (cols["localist_norm"] > 0).all()
    # Flipped, the same class becomes an "off" unit.
    flipped = package_columns(-activations, labels, top_n=top_n)
    assert (flipped["localist_off"] >= 1).all()
    assert not flipped["is_localist"][flipped["localist_class"] == target].any()
