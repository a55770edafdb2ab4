"""The four built-in measures on hand-built units: package, plain reference and hand values agree.

Each unit is checked column by column twice: against the reference (tests/reference_measures.py),
and against values worked out by hand from the measure contract (sections 1-4).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from .measure_checks import EXACT_COLUMNS, assert_same_columns, package_columns
from .reference_measures import FLAG_COLUMNS, reference_columns

NAN = math.nan

pytestmark = pytest.mark.usefixtures("single_torch_thread")


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


# --------------------------------------------------------------------------------------------
# Hand-built units. Every expected value below is worked out by hand from measures.md.
# --------------------------------------------------------------------------------------------


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


def test_all_zeros():
    check_unit(
        [0, 0, 0, 0, 0],
        [0, 0, 1, 1, 2],
        dict(
            localist_class=0,
            localist=0.0,
            localist_norm=0.0,  # constant unit
            is_localist=False,
            localist_off=0.0,
            precision_class=0,  # k = 5: classes 0, 0, 1, 1, 2 -> 0 and 1 tie at 2, 0 ranks first
            precision=0.4,
            ccmas_class=0,
            ccmas=NAN,  # dead unit: zero denominator
            topclass_class=0,  # peak shared by all classes
            topclass_count=0,
            topclass=0.0,
        ),
    )


def test_all_zeros_with_eps_is_zero_not_nan():
    check_unit([0, 0, 0, 0], [0, 0, 1, 1], dict(ccmas_class=0, ccmas=0.0), eps=1e-7)


def test_constant_nonzero_unit():
    check_unit(
        [2.5] * 4,
        [4, 1, 4, 1],
        dict(
            localist_class=1,
            localist=0.0,
            localist_norm=0.0,
            is_localist=False,
            localist_off=0.0,
            precision_class=4,  # k = 4: image 0 (class 4) ranks first, counts 2 and 2
            precision=0.5,
            ccmas_class=1,
            ccmas=0.0,
            topclass_class=1,
            topclass_count=0,
            topclass=0.0,
        ),
    )


def test_negative_values():
    # class 0 = {-1, -2}, class 1 = {-5, -3}: class 0 is localist; class 1 is an "off" unit.
    check_unit(
        [-1, -2, -5, -3],
        [0, 0, 1, 1],
        dict(
            localist_class=0,
            localist=-2 - (-3),
            localist_norm=1 / 4,
            is_localist=True,
            localist_off=-2 - (-3),
            precision_class=0,
            precision=1.0,
            ccmas_class=0,
            ccmas=(-1.5 - -4) / (-1.5 + -4),  # signed: negative, outside [0, 1], not clipped
            topclass_class=0,
            topclass_count=2,
            topclass=1.0,
        ),
        top_n=2,
    )


def test_signed_zero_denominator_is_nan():
    # mu_max = 1, mu_rest = -1: the denominator is zero although the unit is not dead.
    check_unit([1, 1, -1, -1], [0, 0, 1, 1], dict(ccmas_class=0, ccmas=NAN))


def test_negative_and_positive_zero_are_equal():
    # -0.0 and 0.0 are the same activation: ties broken by index, peak shared by two classes.
    check_unit(
        [-0.0, 0.0, -1.0, -0.0],
        [1, 0, 0, 2],
        dict(
            localist_class=0,
            is_localist=False,
            precision_class=1,  # top 2 = images 0 (class 1), 1 (class 0): class 1 ranks first
            precision=0.5,
            topclass_class=0,
            topclass_count=0,
            topclass=0.0,
        ),
        top_n=2,
    )


def test_unequal_class_sizes():
    # class 0 = {10} (one image), class 1 = {1, 2, 3, 4, 5}.
    check_unit(
        [10, 1, 2, 3, 4, 5],
        [0, 1, 1, 1, 1, 1],
        dict(
            localist_class=0,
            localist=10 - 5,
            localist_norm=5 / 9,
            is_localist=True,
            localist_off=10 - 5,
            precision_class=1,  # top 3: images 0 (class 0), 5, 4 (class 1)
            precision=2 / 3,
            ccmas_class=0,
            ccmas=(10 - 3) / (10 + 3),
            topclass_class=0,
            topclass_count=1,
            topclass=1.0,
        ),
        top_n=3,
    )


@pytest.mark.parametrize(
    "others, mu_rest",
    [("pooled", (1 + 1 + 1 + 3) / 4), ("class_mean", (1 + 3) / 2)],
)
def test_unequal_class_sizes_pooled_vs_class_mean(others, mu_rest):
    # means: class 0 = 4 (1 image), class 1 = 1 (3 images), class 2 = 3 (1 image).
    check_unit(
        [4, 1, 1, 1, 3],
        [0, 1, 1, 1, 2],
        dict(ccmas_class=0, ccmas=(4 - mu_rest) / (4 + mu_rest), topclass_count=1, topclass=1.0),
        others=others,
    )


def test_balanced_classes_pooled_equals_class_mean():
    rng = np.random.default_rng(5)
    matrix = rng.random((30, 12))
    labels = np.repeat([2, 4, 8], 10)
    pooled = package_columns(matrix, labels, others="pooled")
    class_mean = package_columns(matrix, labels, others="class_mean")
    np.testing.assert_allclose(pooled["ccmas"], class_mean["ccmas"], rtol=1e-12)
    np.testing.assert_array_equal(pooled["ccmas_class"], class_mean["ccmas_class"])


def test_eps_in_denominator():
    check_unit(
        [3, 1],
        [0, 1],
        dict(ccmas_class=0, ccmas=(3 - 1) / (3 + 1 + 0.5)),
        eps=0.5,
    )


def test_single_class():
    check_unit(
        [1, 3, 2],
        [4, 4, 4],
        dict(
            localist_class=4,
            localist=NAN,
            localist_norm=NAN,
            is_localist=False,
            localist_off=NAN,
            precision_class=4,
            precision=1.0,
            ccmas_class=4,
            ccmas=NAN,  # pooled mu_rest over zero images
            topclass_class=4,
            topclass_count=3,  # n_c
            topclass=NAN,
        ),
    )


def test_single_class_class_mean():
    check_unit([1, 3, 2], [4, 4, 4], dict(ccmas_class=4, ccmas=NAN), others="class_mean")


def test_single_image():
    check_unit(
        [7.0],
        [3],
        dict(localist_class=3, is_localist=False, precision_class=3, precision=1.0, topclass_count=1),
    )


def test_non_contiguous_label_values():
    # labels 3, 7, 42. class 42 = {8, 9}, class 3 = {1, 0}, class 7 = {4, 5}.
    check_unit(
        [8, 1, 4, 9, 0, 5],
        [42, 3, 7, 42, 3, 7],
        dict(
            localist_class=42,
            localist=8 - 5,
            localist_norm=3 / 9,
            is_localist=True,
            localist_off=4 - 1,  # c_ = 3
            precision_class=42,
            precision=2 / 3,  # top 3: images 3 (42), 0 (42), 5 (7)
            ccmas_class=42,
            ccmas=(8.5 - 2.5) / (8.5 + 2.5),
            topclass_class=42,
            topclass_count=2,
            topclass=1.0,
        ),
        top_n=3,
    )


def test_negative_label_values():
    check_unit(
        [0, 5, 1, 6],
        [-1, -5, -1, -5],
        dict(localist_class=-5, is_localist=True, localist=4.0, precision_class=-5, topclass_class=-5),
        top_n=2,
    )


def test_several_hand_units_in_one_matrix():
    # The hand units above side by side (same labels), checked all at once.
    labels = [0, 0, 1, 1]
    matrix = np.array([[4, 1, 3, 2], [-1, -2, -5, -3], [0, 0, 0, 0], [1, 1, -1, -1]], dtype=float).T
    actual = package_columns(matrix, labels, top_n=2)
    assert_same_columns(actual, reference_columns(matrix, labels, top_n=2), rtol=1e-12)
    np.testing.assert_array_equal(actual["is_localist"], [False, True, False, True])
    np.testing.assert_allclose(actual["ccmas"], [0.0, 2.5 / -5.5, NAN, NAN], equal_nan=True)
