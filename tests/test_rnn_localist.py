"""The positive control: localist units where they exist (examples/rnn_localist), none with random weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from selectivity_eval.core.cli.app import app
from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.outputs.results import read_units_csv
from selectivity_eval.plugins.models.rnn_localist import (
    INPUT_SIZE,
    LIST_LENGTH,
    N_WORDS,
    RNNLocalist,
    WordSequences,
    builtin_weights_path,
    random_lists,
    recall_accuracy,
    train,
    vocabulary,
    word_letters,
)

from .conftest import REPO

SPEC = REPO / "examples" / "rnn_localist" / "spec.yaml"

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def control_run(tmp_path_factory):
    """The example spec, run once: the shipped network and, beside it, random weights (seed 0)."""
    output = tmp_path_factory.mktemp("rnn") / "run"
    result = CliRunner().invoke(app, [str(SPEC), "--output", str(output), "--quiet"])
    assert result.exit_code == 0, result.output
    return output


def test_the_shipped_network_has_localist_units_and_random_weights_have_none(control_run):
    summary = json.loads((control_run / "summary.json").read_text())["hidden"]
    assert summary["n_units"] == 200
    assert summary["n_localist"] >= 1
    assert summary["untrained"]["n_localist"] == 0
    record = json.loads((control_run / "run.json").read_text())
    assert record["status"] == "ok" and record["model"]["identity"]["weights"] == "builtin"


def test_each_localist_unit_is_topclass_one_for_a_word(control_run):
    for units in (read_units_csv(control_run / "units.csv"), read_units_csv(control_run / "untrained" / "units.csv")):
        hidden = units["hidden"]
        localist = np.array(hidden["is_localist"]) == "true"
        np.testing.assert_array_equal(localist, np.array(hidden["topclass"], dtype=float) == 1.0)
        assert {int(word) for word in np.array(hidden["localist_class"])[localist]} <= set(range(N_WORDS))


def test_the_shipped_network_recalls_lists_and_is_small():
    assert builtin_weights_path().stat().st_size < 1_000_000
    model = RNNLocalist().load(seed=0)
    assert recall_accuracy(model.module, random_lists(500, torch.Generator().manual_seed(7))) > 0.99
    # forward scores the word being recalled at each item's last step: the class of the item
    data = WordSequences(lists_per_word=2).load(seed=0)
    with torch.inference_mode():
        predicted = model.module(data.dataset.tensors[0]).argmax(1).numpy()
    assert (predicted == data.labels).mean() > 0.99


def test_word_sequences_items_are_lists_with_their_word_at_the_read_position():
    data = WordSequences(position=2, lists_per_word=3).load(seed=0)
    inputs, labels = data.dataset.tensors
    assert inputs.shape == (N_WORDS * 3, 2 * LIST_LENGTH, INPUT_SIZE)
    np.testing.assert_array_equal(np.bincount(data.labels), np.full(N_WORDS, 3))
    assert data.class_names == vocabulary() and len(set(vocabulary())) == N_WORDS
    letters = word_letters()
    for item, word in zip(inputs, labels):
        presented = item[:LIST_LENGTH, :-1].reshape(LIST_LENGTH, 3, 10).argmax(-1)
        assert torch.equal(presented[1], letters[word])  # the class is the second word
        assert item[:LIST_LENGTH, -1].sum() == 0 and item[LIST_LENGTH:, -1].tolist() == [1, 1, 0, 0]
        assert not item[LIST_LENGTH + 2 :].any()  # padding after the read step
        words = [int((letters == row).all(1).nonzero()) for row in presented]
        assert len(set(words)) == LIST_LENGTH
    every = WordSequences().load(seed=0)
    assert len(every) == N_WORDS * 20 * LIST_LENGTH
    assert WordSequences().load(seed=5).identity == every.identity  # the spec's seed does not change the lists


def test_bad_parameters_and_weights_are_refused(tmp_path):
    with pytest.raises(ValueError):
        WordSequences(position=LIST_LENGTH + 1)
    with pytest.raises(ValueError):
        WordSequences(position="first")
    bad = tmp_path / "bad.pt"
    torch.save({"input.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(UserInputError, match="does not fit"):
        RNNLocalist(weights=str(bad)).load(seed=0)
    random = RNNLocalist(weights="none").load(seed=3)
    assert random.identity == {"architecture": "SerialRecallSRN", "weights": "none", "init_seed": 3}


def test_training_smoke_the_loss_falls():
    """300 of the 6,000 steps (seeded): the loss falls from chance (ln 30 = 3.4) well below it."""
    _, losses = train(seed=0, steps=300)
    assert np.mean(losses[:10]) > 3.3 and np.mean(losses[-10:]) < 2.6


def test_the_example_spec_is_valid_yaml_with_the_untrained_baseline():
    spec = yaml.safe_load(SPEC.read_text())
    assert spec["model"]["plugin"] == "rnn-localist" and spec["untrained_baseline"] is True
