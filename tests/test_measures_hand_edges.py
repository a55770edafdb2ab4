"""The four built-in measures on hand-built edge cases (zeros, constants, signs, class sizes, one
class or image, label values): package, plain reference and hand values agree.

Each unit is checked column by column twice: against the reference (tests/reference_measures.py),
and against values worked out by hand from the measure contract (sections 1-4).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from .measure_checks import assert_same_columns, check_unit, package_columns
from .reference_measures import reference_columns

NAN = math.nan

pytestmark = pytest.mark.usefixtures("single_torch_thread", "kernel_mode")


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
