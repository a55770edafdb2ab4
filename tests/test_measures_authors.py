"""Each difference between our measures and the authors' code (docs/measures.md, "Against the
authors' code"): a hand-built unit, our result and the original rule's result, both asserted.

The original rules are restated in tests/authors_rules.py; the numbers here are the worked
examples of that section of the docs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import selectivity_eval as se

from . import authors_rules as authors

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def ours(activations, labels, measure, **params):
    matrix = np.asarray(activations).reshape(-1, 1)
    out = se.compute_measures(matrix, labels, [measure], {measure: params} if params else None)
    return {column: values[0] for column, values in out.items()}


# Localist: every class in turn, last passing class wins, gap 0 and off units selective, zero reset.

def test_localist_the_last_passing_class_wins_even_an_off_class():
    labels = [0, 0, 1, 1, 2, 2]
    acts = [5.0, 4.0, 2.0, 3.0, 0.0, 0.5]
    mine = ours(acts, labels, "localist")
    assert (mine["localist_class"], mine["localist"], mine["is_localist"]) == (0, 1.0, True)
    assert mine["localist_off"] == 1.5
    assert authors.localist(acts, labels) == (True, 1.5, 2)


def test_localist_a_gap_of_zero_is_selective_only_in_the_original():
    labels = [0, 0, 1, 1, 2, 2]
    acts = [3.0, 2.0, 2.0, 1.0, 1.5, 0.5]
    mine = ours(acts, labels, "localist")
    assert (mine["localist"], mine["is_localist"]) == (0.0, False)
    assert authors.localist(acts, labels) == (True, 0.0, 0)


def test_localist_an_off_unit_is_selective_only_in_the_original():
    labels = [0, 0, 1, 1, 2, 2]
    acts = [3.0, 1.0, 2.5, 1.5, 0.2, 0.1]
    mine = ours(acts, labels, "localist")
    assert mine["is_localist"] == False  # noqa: E712 (numpy bool)
    assert mine["localist_off"] == pytest.approx(0.8)
    selective, gap, found = authors.localist(acts, labels)
    assert (selective, found) == (True, 2) and gap == pytest.approx(0.8)


def test_localist_a_sparse_grandmother_unit_is_not_selective_in_the_original_unless_its_class_is_last():
    labels = [0, 0, 1, 1, 2, 2, 3, 3]
    first = [2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    mine = ours(first, labels, "localist")
    assert (mine["localist_class"], mine["localist"], mine["is_localist"]) == (0, 1.0, True)
    assert authors.localist(first, labels) == (False, 0.0, 0)  # flag reset; the class found stays
    last = first[2:] + first[:2]  # the same unit with the firing class last
    assert ours(last, labels, "localist")["is_localist"]
    assert authors.localist(last, labels) == (True, 1.0, 3)


# Precision: argsort's tie order picks the tied images; equal class counts; N = 60.

def test_precision_the_sort_order_of_ties_decides_in_the_original():
    labels = [0, 0, 1, 1, 2]
    acts = [2.0, 1.0, 1.0, 1.0, 0.0]
    mine = ours(acts, labels, "precision", top_n=2)
    assert (mine["precision_class"], mine["precision"]) == (0, 1.0)
    assert (mine["precision_min"], mine["precision_max"], mine["precision_ties"], mine["precision_tied"]) == (
        0.5, 1.0, 3, True,
    )
    assert authors.precision(acts, labels, 2) == (1, 0.5)  # a stable argsort: image 3 enters
    assert authors.precision(acts, labels, 2, ascending=[4, 2, 3, 1, 0]) == (0, 1.0)


def test_precision_equal_class_counts_go_to_the_class_met_first_from_place_n():
    labels = [0, 1, 2, 2]
    acts = [3.0, 2.0, 1.0, 0.0]
    mine = ours(acts, labels, "precision", top_n=2)
    assert (mine["precision_class"], mine["precision"]) == (0, 0.5)
    assert authors.precision(acts, labels, 2) == (1, 0.5)
    preset = ours(acts, labels, "precision", preset="gale2019")  # N = 60 > 4 images: all of them
    assert (preset["precision_class"], preset["precision"]) == authors.precision(acts, labels, 4) == (2, 0.5)


def test_precision_preset_gale2019_is_n_60():
    rng = np.random.default_rng(3)
    acts = rng.random(300)
    labels = rng.integers(0, 5, 300)
    preset = ours(acts, labels, "precision", preset="gale2019")
    sixty = ours(acts, labels, "precision", top_n=60)
    assert preset["precision"] == sixty["precision"]
    assert (preset["precision_class"], preset["precision"]) == authors.precision(acts, labels, 60)
    with pytest.raises(ValueError, match="preset gale2019 means top_n 60"):
        ours(acts, labels, "precision", preset="gale2019", top_n=100)


# Top-class: the window, the unchecked bottom image, the shared peak, the ratio.

def test_topclass_the_original_counts_only_inside_its_window():
    labels = [0, 0, 0, 0, 1, 1]
    acts = np.array([10.0, 9.0, 8.0, 1.5, 1.0, 0.0], dtype=np.float32)
    mine = ours(acts, labels, "topclass")
    assert (mine["topclass_count"], mine["topclass"]) == (4, 1.0)
    windowed = ours(acts, labels, "topclass", window="gale2019")
    assert (windowed["topclass_count"], windowed["topclass"]) == (3, 0.75)
    assert authors.topclass_count(acts, labels) == (0, 3)


def test_topclass_the_original_never_checks_the_window_s_lowest_image():
    labels = [0, 0, 1, 1]
    acts = np.array([10.0, 9.0, 5.0, 0.0], dtype=np.float32)
    windowed = ours(acts, labels, "topclass", window="gale2019")
    assert (windowed["topclass_count"], windowed["topclass"]) == (2, 1.0)
    top, count = authors.topclass_count(acts, labels)
    assert (top, count) == (0, 3)  # the class-1 image at 5 is counted
    assert count / labels.count(top) == 1.5  # the ratio their tables would compute


def test_topclass_a_shared_peak_is_zero_and_flagged_the_original_follows_the_sort():
    labels = [0, 0, 1, 1]
    acts = np.array([5.0, 4.0, 5.0, 0.0], dtype=np.float32)
    mine = ours(acts, labels, "topclass")
    assert (mine["topclass_class"], mine["topclass_count"], mine["topclass_tied"]) == (0, 0, True)
    assert authors.topclass_count(acts, labels) == (1, 1)
    assert authors.topclass_count(acts, labels, ascending=[3, 1, 2, 0]) == (0, 1)  # the class flips


# CCMAS: float32 means, and a zero denominator.

def test_ccmas_float32_means_round_where_ours_do_not():
    labels = [0, 0, 0, 1, 1, 1]
    acts = np.array([16777216.0, 1.0, 1.0, 3.0, 0.0, 0.0], dtype=np.float32)
    mine = ours(acts, labels, "ccmas")
    exact = (16777218 / 3 - 1) / (16777218 / 3 + 1)
    assert mine["ccmas"] == pytest.approx(exact, rel=1e-15)
    cls, theirs = authors.ccmas(acts, labels)
    assert cls == mine["ccmas_class"] == 0
    assert theirs != mine["ccmas"] and theirs == pytest.approx(exact, rel=1e-6)


def test_ccmas_a_zero_denominator_is_nan_here_and_inf_in_the_original_when_means_cancel():
    labels = [0, 0, 1, 1]
    signed = np.array([1.0, 1.0, -1.0, -1.0], dtype=np.float32)
    assert math.isnan(ours(signed, labels, "ccmas")["ccmas"])
    assert authors.ccmas(signed, labels)[1] == math.inf
    dead = np.zeros(4, dtype=np.float32)
    assert math.isnan(ours(dead, labels, "ccmas")["ccmas"]) and math.isnan(authors.ccmas(dead, labels)[1])
