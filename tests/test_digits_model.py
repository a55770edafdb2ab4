"""The shipped digits CNN: trained weights, its training script, and the data set split."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.plugins.datasets.digits import Digits, digits_arrays
from selectivity_eval.plugins.models.digits_cnn import DigitsCNNSource, builtin_weights_path



def test_split_is_stratified_disjoint_and_complete():
    _, all_labels = digits_arrays("all")
    _, train = digits_arrays("train")
    _, test = digits_arrays("test")
    assert len(all_labels) == 1797 and len(train) + len(test) == 1797
    assert abs(len(test) / 1797 - 0.25) < 0.01
    assert set(np.unique(test)) == set(range(10))
    loaded = Digits({"split": "test"}).load(seed=0)
    assert np.array_equal(loaded.labels, test) and len(loaded.dataset) == len(test)


def test_shipped_weights_are_small_and_reach_95_percent_on_the_test_split():
    assert builtin_weights_path().stat().st_size < 1_000_000
    model = DigitsCNNSource().load(seed=0)
    images, labels = digits_arrays("test")
    with torch.inference_mode():
        predicted = model.module(torch.from_numpy(images)).argmax(1).numpy()
    assert (predicted == labels).mean() >= 0.95


def test_random_weights_are_seeded():
    first = DigitsCNNSource({"weights": "none"}).load(seed=3).module.state_dict()
    again = DigitsCNNSource({"weights": "none"}).load(seed=3).module.state_dict()
    other = DigitsCNNSource({"weights": "none"}).load(seed=4).module.state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["classifier.3.weight"], other["classifier.3.weight"])


def test_a_weights_file_of_the_wrong_shape_is_a_clear_error(tmp_path):
    path = tmp_path / "wrong.pt"
    torch.save({"state_dict": {"features.0.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(UserInputError, match="does not fit the digits CNN"):
        DigitsCNNSource({"weights": str(path)}).load(seed=0)


def test_training_script_is_seeded_and_reaches_95_percent(tmp_path):
    output = tmp_path / "w.pt"
    completed = subprocess.run(
        [sys.executable, "-m", "selectivity_eval.plugins.models.train_digits_cnn", "--output", str(output)],
        capture_output=True, text=True, timeout=600, check=True,
    )
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", completed.stdout).group(1))
    assert accuracy >= 0.95
    loaded = DigitsCNNSource({"weights": str(output)}).load(seed=0)
    assert loaded.identity["weights_sha256"]
