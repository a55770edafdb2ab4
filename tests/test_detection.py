"""The detection measure against scikit-learn's AUROC and a brute-force threshold scan."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import roc_auc_score

import selectivity_eval as se
from selectivity_eval.core.statistics.backend import KERNELS_VARIABLE

MODES = ["compiled", "torch"]


@contextlib.contextmanager
def kernels(mode: str):
    """The compiled pass (numba) or torch's code; hypothesis's examples share one test function call."""
    before = os.environ.get(KERNELS_VARIABLE)
    os.environ[KERNELS_VARIABLE] = mode
    try:
        yield
    finally:
        if before is None:
            del os.environ[KERNELS_VARIABLE]
        else:
            os.environ[KERNELS_VARIABLE] = before


def brute_force(a: np.ndarray, positive: np.ndarray):
    """Every threshold between and beyond the data values; highest threshold wins ties."""
    values = np.unique(a)
    thresholds = np.concatenate([[np.inf], values[::-1]])
    best = (0.0, 0.0, 0.0)
    for t in thresholds:
        hit = (a[positive] >= t).mean()
        alarm = (a[~positive] >= t).mean()
        if hit - alarm > best[0] + 1e-12:
            best = (hit - alarm, hit, alarm)
    return best


def target_of(a, labels, target):
    classes = np.unique(labels)
    if target == "mean":
        return classes[np.argmax([a[labels == c].mean() for c in classes])]
    return labels[np.lexsort((labels, -a))[0]]


def check_units(matrix, labels, target, mode="torch"):
    with kernels(mode):
        columns = se.compute_measures(matrix, labels, ["detection"], {"detection": {"target": target}})
    for unit in range(matrix.shape[1]):
        a = matrix[:, unit]
        c = target_of(a, labels, target)
        assert columns["detection_class"][unit] == c
        positive = labels == c
        assert columns["auroc"][unit] == pytest.approx(roc_auc_score(positive, a), abs=1e-12)
        informedness, hit, alarm = brute_force(a, positive)
        assert columns["max_informedness"][unit] == pytest.approx(informedness, abs=1e-12)
        assert columns["hit_rate"][unit] == pytest.approx(hit, abs=1e-12)
        assert columns["false_alarm"][unit] == pytest.approx(alarm, abs=1e-12)


@settings(max_examples=80, deadline=None)
@given(
    matrix=arrays(np.float64, st.tuples(st.integers(4, 30), st.integers(1, 4)), elements=st.integers(0, 3).map(float)),
    n_classes=st.integers(2, 4),
    seed=st.integers(0, 2**16),
    target=st.sampled_from(["mean", "top"]),
    mode=st.sampled_from(MODES),
)
def test_ties_everywhere_match_sklearn_and_brute_force(matrix, n_classes, seed, target, mode):
    labels = np.random.default_rng(seed).integers(0, n_classes, len(matrix))
    labels[:n_classes] = np.arange(n_classes)
    check_units(matrix, labels, target, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", ["mean", "top"])
def test_random_float_units(target, mode):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 7, 400)
    matrix = rng.standard_normal((400, 12))
    matrix[:, 3] += 3 * (labels == 2)
    check_units(matrix, labels, target, mode)


@pytest.mark.parametrize("mode", MODES)
def test_a_perfect_detector_and_a_single_class(mode):
    labels = np.array([0, 0, 1, 1, 2, 2])
    perfect = np.array([[5.0], [6.0], [1.0], [2.0], [0.0], [1.5]])
    with kernels(mode):
        columns = se.compute_measures(perfect, labels, ["detection"])
        alone = se.compute_measures(perfect, np.zeros(6, int), ["detection"])
    assert columns["auroc"][0] == 1.0 and columns["max_informedness"][0] == 1.0
    assert (columns["hit_rate"][0], columns["false_alarm"][0]) == (1.0, 0.0)
    assert np.isnan(alone["auroc"][0]) and np.isnan(alone["max_informedness"][0])


def test_sub_chunks_of_units_do_not_change_results(monkeypatch):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 5, 200)
    matrix = rng.integers(0, 4, (200, 9)).astype(np.float32)
    whole = se.compute_measures(matrix, labels, ["detection"])
    monkeypatch.setattr("selectivity_eval.plugins.measures.detection.SORT_BYTES", 1)
    pieces = se.compute_measures(matrix, labels, ["detection"])
    for column in whole:
        np.testing.assert_array_equal(whole[column], pieces[column])
