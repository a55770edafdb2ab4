"""The gale2019 variants against plain loops of the authors' rules, precision's tie bounds against
every tie order, and silent units (docs/measures.md, "Against the authors' code", "Tie-dependent
values", "Silent units")."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import selectivity_eval as se
from selectivity_eval.core.measures.base import Column
from selectivity_eval.core.outputs.results import silent_units, summarise_layer
from selectivity_eval.core.statistics.labels import Labels
from selectivity_eval.core.statistics.layer_stats import LayerStats
from selectivity_eval.schemas.spec import RunSpec

from .reference_measures import precision_gale2019_unit, precision_unit, topclass_gale2019_unit

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

pytestmark = pytest.mark.usefixtures("single_torch_thread", "kernel_mode")


@st.composite
def units(draw, max_images=150, max_units=3, tied=None):
    """(float32 activations (images, units), labels): small integers (many ties) or continuous values."""
    n_classes = draw(st.integers(2, 6))
    n_images = draw(st.integers(n_classes, max_images))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.arange(n_classes), rng.integers(0, n_classes, n_images - n_classes)])
    labels = rng.permutation(labels)
    n_units = draw(st.integers(1, max_units))
    tied = draw(st.booleans()) if tied is None else tied
    if tied:
        values = rng.integers(0, draw(st.integers(1, 6)), size=(n_images, n_units))
    else:
        values = rng.standard_normal((n_images, n_units)) * 3
    return values.astype(np.float32), labels


def columns(activations, labels, measure, **params):
    return se.compute_measures(activations, labels, [measure], {measure: params})


@SETTINGS
@given(units())
def test_precision_preset_gale2019_equals_the_authors_rule_in_a_loop(layer):
    activations, labels = layer
    out = columns(activations, labels, "precision", preset="gale2019")
    for unit in range(activations.shape[1]):
        expected = precision_gale2019_unit(activations[:, unit].tolist(), labels.tolist())
        assert out["precision_class"][unit] == expected["precision_class"]
        assert out["precision"][unit] == expected["precision"]


@SETTINGS
@given(units(max_images=80))
def test_topclass_window_gale2019_equals_the_authors_rule_in_a_loop(layer):
    activations, labels = layer
    out = columns(activations, labels, "topclass", window="gale2019")
    for unit in range(activations.shape[1]):
        expected = topclass_gale2019_unit(activations[:, unit], labels.tolist())
        for column in ("topclass_class", "topclass_count", "topclass", "topclass_tied"):
            assert out[column][unit] == expected[column], column


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.booleans())
def test_topclass_window_gale2019_past_1000_images_above_the_middle(seed, tied):
    """Over 1,000 images above the middle: the window reaches down to the 1,000th highest."""
    rng = np.random.default_rng(seed)
    n_images = int(rng.integers(3300, 4000))
    labels = rng.integers(0, 3, n_images)
    values = rng.integers(0, 40, (n_images, 2)) if tied else rng.random((n_images, 2))
    values[:, 1] += 50 * (labels == 0)  # class 0 on top: a long run inside the window
    activations = values.astype(np.float32)
    out = columns(activations, labels, "topclass", window="gale2019")
    full = columns(activations, labels, "topclass")
    for unit in range(2):
        expected = topclass_gale2019_unit(activations[:, unit], labels.tolist())
        assert out["topclass_count"][unit] == expected["topclass_count"]
    thousandth = np.sort(activations[:, 1])[-1000]
    assert out["topclass_count"][1] == np.count_nonzero(activations[:, 1] >= thousandth)  # ties at it: more
    assert out["topclass_count"][1] < full["topclass_count"][1]


@SETTINGS
@given(units(tied=False))
def test_without_ties_both_bounds_equal_precision(layer):
    activations, labels = layer
    for top_n in (1, 7, 60, 100):
        out = columns(activations, labels, "precision", top_n=top_n)
        np.testing.assert_array_equal(out["precision_min"], out["precision"])
        np.testing.assert_array_equal(out["precision_max"], out["precision"])
        assert not out["precision_tied"].any() and not out["precision_ties"].any()


def precision_in_order(a, y, k, tie_break):
    """Precision when equal activations are ranked by ``tie_break`` (any order of the ties)."""
    order = sorted(range(len(a)), key=lambda i: (-a[i], tie_break[i]))
    counts: dict = {}
    for i in order[:k]:
        counts[y[i]] = counts.get(y[i], 0) + 1
    return max(counts.values()) / k


@SETTINGS
@given(units(max_images=7, max_units=2, tied=True), st.integers(1, 8))
def test_tie_bounds_are_exactly_the_extremes_over_every_tie_order(layer, top_n):
    activations, labels = layer
    k = min(top_n, len(labels))
    out = columns(activations, labels, "precision", top_n=top_n)
    for unit in range(activations.shape[1]):
        a, y = activations[:, unit].tolist(), labels.tolist()
        seen = {precision_in_order(a, y, k, order) for order in itertools.permutations(range(len(a)))}
        assert (out["precision_min"][unit], out["precision_max"][unit]) == (min(seen), max(seen))
        assert out["precision_tied"][unit] == (len(seen) > 1)


@SETTINGS
@given(units(tied=True), st.integers(1, 120), st.integers(0, 2**32 - 1))
def test_every_random_tie_order_lies_within_the_bounds(layer, top_n, seed):
    activations, labels = layer
    k = min(top_n, len(labels))
    out = columns(activations, labels, "precision", top_n=top_n)
    rng = np.random.default_rng(seed)
    for unit in range(activations.shape[1]):
        a, y = activations[:, unit].tolist(), labels.tolist()
        reference = precision_unit(a, y, top_n)
        assert out["precision_min"][unit] == reference["precision_min"]
        assert out["precision_max"][unit] == reference["precision_max"]
        assert out["precision_ties"][unit] == reference["precision_ties"]
        for _ in range(5):
            shuffled = precision_in_order(a, y, k, rng.permutation(len(a)).tolist())
            assert out["precision_min"][unit] <= shuffled <= out["precision_max"][unit]


def test_hand_built_ties_give_the_extremes():
    """Places 2-3 of 3 go to four images tied at 1 (classes 0, 1, 1, 2) after a class-0 image at 2:
    at best class 1 takes both (2/3), at worst the two places go to two classes (1/3)."""
    labels = [0, 0, 1, 1, 2]
    acts = np.array([[2.0], [1.0], [1.0], [1.0], [1.0]])
    out = columns(acts, labels, "precision", top_n=3)
    assert out["precision"][0] == pytest.approx(2 / 3)  # by index, images 1 and 2 (classes 0 and 1) enter
    assert (out["precision_min"][0], out["precision_max"][0]) == (pytest.approx(1 / 3), pytest.approx(2 / 3))
    assert (out["precision_ties"][0], out["precision_tied"][0]) == (4, True)


@SETTINGS
@given(units(max_units=6), st.lists(st.integers(0, 5), max_size=4))
def test_silent_units_are_flagged_exactly_when_max_equals_min(layer, constant):
    activations, labels = layer
    activations = activations.copy()
    for unit in constant:
        if unit < activations.shape[1]:
            activations[:, unit] = activations[0, unit]
    expected = activations.max(0) == activations.min(0)
    np.testing.assert_array_equal(silent_units(activations), expected)
    stats = LayerStats(torch.from_numpy(activations), Labels.from_array(labels))
    np.testing.assert_array_equal(stats.constant_units.numpy(), expected)


def test_summary_means_over_responsive_units_and_over_all():
    precision = np.array([0.9, 0.12, 0.5, 0.12])
    silent = np.array([False, True, False, True])
    tied = np.array([True, True, False, False])
    results = {"precision": precision, "precision_tied": tied, "silent": silent}
    kinds = {"precision": Column.VALUE, "precision_tied": Column.FLAG, "silent": Column.FLAG}
    responsive = summarise_layer(results, kinds)
    everything = summarise_layer(results, kinds, units="all")
    assert responsive["columns"]["precision"]["mean"] == pytest.approx(0.7)
    assert everything["columns"]["precision"]["mean"] == pytest.approx(precision.mean())
    assert (responsive["n_silent"], responsive["n_responsive"], responsive["n_units"]) == (2, 2, 4)
    assert responsive["summary_units"] == "responsive" and everything["summary_units"] == "all"
    assert responsive["n_tie_dependent"] == {"precision_tied": 1} and everything["n_tie_dependent"] == {
        "precision_tied": 2
    }
    assert responsive["columns"]["silent"]["mean"] == 0.5
    with pytest.raises(ValueError, match="units must be one of"):
        summarise_layer(results, kinds, units="some")


def test_the_spec_switch_for_summary_units():
    base = {"model": "digits-cnn", "dataset": "digits", "layers": ["fc1"]}
    assert RunSpec.model_validate(base).summary_units == "responsive"
    assert RunSpec.model_validate({**base, "summary_units": "all"}).summary_units == "all"
    with pytest.raises(ValueError, match="summary_units"):
        RunSpec.model_validate({**base, "summary_units": "silent"})
