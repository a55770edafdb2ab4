"""The four built-in measures on hand-built units, the tie rules above all: package, plain reference
and hand values agree.

Each unit is checked column by column twice: against the reference (tests/reference_measures.py),
and against values worked out by hand from the measure contract (sections 1-4).
"""

from __future__ import annotations

import numpy as np
import pytest

from .measure_checks import assert_same_columns, check_unit, package_columns
from .reference_measures import reference_columns

pytestmark = pytest.mark.usefixtures("single_torch_thread", "kernel_mode")


def test_localist_unit():
    # class 0 = {5, 6}, class 1 = {1, 2}, class 2 = {0, 3}: every class-0 image beats every other.
    check_unit(
        [5, 6, 1, 2, 0, 3],
        [0, 0, 1, 1, 2, 2],
        dict(
            localist_class=0,
            localist=5 - 3,
            localist_norm=2 / 6,
            is_localist=True,
            localist_off=1 - 3,  # c_ = 2 (holds the 0); min(others) = 1, max(class 2) = 3
            precision_class=0,
            precision=1.0,  # top 2: images 1 and 0, both class 0
            ccmas_class=0,
            ccmas=(5.5 - 1.5) / (5.5 + 1.5),  # mu_rest pooled over {1, 2, 0, 3}
            topclass_class=0,
            topclass_count=2,
            topclass=1.0,
        ),
        top_n=2,
    )


def test_non_localist_unit():
    # class 0 = {4, 1}, class 1 = {3, 2}: class 0 holds both the highest and the lowest value.
    check_unit(
        [4, 1, 3, 2],
        [0, 0, 1, 1],
        dict(
            localist_class=0,
            localist=1 - 3,
            localist_norm=-2 / 3,
            is_localist=False,
            localist_off=2 - 4,  # c_ = 0: min(class 1) = 2, max(class 0) = 4
            precision_class=0,  # top 2 = images 0 (class 0) and 2 (class 1): 1 each, class 0 ranks first
            precision=0.5,
            ccmas_class=0,  # both means 2.5: lowest id
            ccmas=0.0,
            topclass_class=0,
            topclass_count=1,  # 4 (class 0), then 3 (class 1) intrudes
            topclass=0.5,
        ),
        top_n=2,
    )


@pytest.mark.parametrize(
    "labels, expected_class, expected_precision",
    [
        # ranking: 0 (9), then the four 2s in index order 1, 2, 3, 4, then 5 (0).
        # The top 3 are images 0, 1, 2; picking 3 and 4 instead would flip the answer.
        ([0, 1, 1, 0, 0, 0], 1, 2 / 3),
        ([1, 0, 0, 1, 1, 1], 0, 2 / 3),
    ],
)
def test_tie_straddling_precision_boundary_takes_lowest_indices(labels, expected_class, expected_precision):
    check_unit(
        [9, 2, 2, 2, 2, 0],
        labels,
        dict(precision_class=expected_class, precision=expected_precision),
        top_n=3,
    )


@pytest.mark.parametrize("n_images, top_n, boundary", [(200, 100, 60), (200, 100, 40), (257, 60, 37), (64, 7, 3)])
def test_large_constant_tie_takes_lowest_indices(n_images, top_n, boundary):
    # Every activation equal: the top set is images 0..k-1. Class 5 fills 0..boundary-1, class 3 the rest.
    labels = np.where(np.arange(n_images) < boundary, 5, 3)
    k = min(top_n, n_images)
    in_top_5 = min(boundary, k)
    if in_top_5 >= k - in_top_5:  # class 5 ranks first, so it wins ties in count
        cls, count = 5, in_top_5
    else:
        cls, count = 3, k - in_top_5
    check_unit(np.ones(n_images), labels, dict(precision_class=cls, precision=count / k), top_n=top_n)


def test_straddling_tie_in_many_units_at_once():
    # Many units, each with a tie straddling the k-th place at a different height and position.
    rng = np.random.default_rng(11)
    n_images, n_units, top_n = 150, 60, 40
    matrix = rng.integers(0, 6, size=(n_images, n_units)).astype(np.float64)
    labels = rng.integers(0, 4, size=n_images)
    actual = package_columns(matrix, labels, top_n=top_n)
    assert_same_columns(actual, reference_columns(matrix, labels, top_n=top_n), rtol=1e-12)


@pytest.mark.parametrize(
    "activations, labels, expected_class",
    [
        # Distinct activations: top 2 = image 1 (class 7), image 2 (class 3): 1 each, class 7 ranks
        # first, although class 3 has the lower id.
        ([1, 4, 3, 2], [3, 7, 3, 7], 7),
        # Equal activations: images 0 (class 7) and 1 (class 3), ranked by index, so 7 first again.
        ([2, 2, 0, 0], [7, 3, 3, 7], 7),
        # Same but class 3 comes first in index order.
        ([2, 2, 0, 0], [3, 7, 3, 7], 3),
    ],
)
def test_equal_counts_in_top_set_broken_by_ranking_order(activations, labels, expected_class):
    check_unit(activations, labels, dict(precision_class=expected_class, precision=0.5), top_n=2)


def test_equal_counts_broken_by_first_appearance_not_by_last():
    # top 4: class 9, class 2, class 2, class 9 -> 2 each; class 9 appears first.
    check_unit(
        [8, 7, 6, 5, 1],
        [9, 2, 2, 9, 2],
        dict(precision_class=9, precision=0.5),
        top_n=4,
    )


def test_tied_top_activation_across_two_classes():
    # The highest activation 5 is held by image 0 (class 7) and image 2 (class 3).
    check_unit(
        [5, 1, 5, 2],
        [7, 3, 3, 7],
        dict(
            localist_class=3,  # lowest class id among those holding the maximum
            localist=1 - 5,
            localist_norm=-4 / 4,
            is_localist=False,
            localist_off=2 - 5,  # c_ = 3 (holds the 1): min(class 7) = 2, max(class 3) = 5
            precision_class=7,  # top 2 = images 0 (class 7), 2 (class 3): class 7 ranks first
            precision=0.5,
            ccmas_class=7,  # means: class 3 = 3, class 7 = 3.5
            ccmas=(3.5 - 3) / (3.5 + 3),
            topclass_class=3,
            topclass_count=0,
            topclass=0.0,
        ),
        top_n=2,
    )


def test_tied_top_activation_three_images():
    # Peak 4 shared by classes 1 and 2 (class 0 is absent from the peak): class 1, count 0.
    check_unit(
        [4, 3, 4, 4, 0],
        [2, 1, 1, 2, 0],
        dict(topclass_class=1, topclass_count=0, topclass=0.0, localist_class=1, is_localist=False),
    )


def test_intruder_tying_with_top_class():
    # class 0 = {9, 8, 5}, class 1 = {5, 1}: the class-1 image at 5 intrudes before the class-0 5.
    check_unit(
        [9, 8, 5, 5, 1],
        [0, 0, 0, 1, 1],
        dict(
            localist_class=0,
            localist=0.0,
            localist_norm=0.0,
            is_localist=False,  # strict: a tie is not separation
            localist_off=0.0,  # c_ = 1: min(class 0) = 5, max(class 1) = 5
            precision_class=0,  # top 3 by index: images 0, 1, 2, all class 0
            precision=1.0,
            ccmas_class=0,
            ccmas=(22 / 3 - 3) / (22 / 3 + 3),
            topclass_class=0,
            topclass_count=2,
            topclass=2 / 3,
        ),
        top_n=3,
    )


def test_intruder_tying_ranked_after_by_index_still_intrudes():
    # The tying intruder (image 4) has a higher index than the tying top-class images (2, 3):
    # the index does not matter, it still comes first.
    check_unit(
        [9, 1, 5, 5, 5],
        [0, 1, 0, 0, 1],
        dict(topclass_class=0, topclass_count=1, topclass=1 / 3, localist=0.0, is_localist=False),
    )
