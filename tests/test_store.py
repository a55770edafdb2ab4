"""The activation store: cache hits and misses, resuming an interrupted extraction; unreadable
images and correct_only through the engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pydantic import Field
from typer.testing import CliRunner

import selectivity_eval as se
from selectivity_eval.core.extraction import extract
from selectivity_eval.core.cli.app import app
from selectivity_eval.core.store.activation_store import ActivationStore
from selectivity_eval.plugins.datasets.digits import Digits, digits_arrays
from selectivity_eval.plugins.models.digits_cnn import DigitsCNN

SPEC = {
    "model": {"plugin": "digits-cnn"},
    "dataset": {"plugin": "digits", "split": "test"},
    "layers": ["conv2", {"name": "fc1", "relu": True}, "fc2"],
    "measures": ["topclass", "ccmas"],
    "batch_size": 64,
    "device": "cpu",
}


def run(spec_path, *args):
    result = CliRunner().invoke(app, [str(spec_path), "-q", *args])
    return result


def record(tmp_path):
    return json.loads((tmp_path / "run" / "run.json").read_text())


@pytest.fixture
def forward_calls(monkeypatch):
    """Counts the digits CNN's forward calls."""
    calls = []
    original = DigitsCNN.forward

    def counted(self, x):
        calls.append(len(x))
        return original(self, x)

    monkeypatch.setattr(DigitsCNN, "forward", counted)
    return calls


def test_second_run_reuses_activations_without_running_the_model(write_spec, tmp_path, forward_calls):
    spec = write_spec(SPEC)
    assert run(spec).exit_code == 0
    first_units = (tmp_path / "run" / "units.csv").read_text()
    assert set(record(tmp_path)["activation_cache"].values()) == {"miss"}
    forward_calls.clear()
    assert run(spec).exit_code == 0
    assert forward_calls == []
    assert set(record(tmp_path)["activation_cache"].values()) == {"hit"}
    assert (tmp_path / "run" / "units.csv").read_text() == first_units


@pytest.mark.parametrize(
    ("change", "missed"),
    [
        ({"model": {"plugin": "digits-cnn", "weights": "none"}}, {"conv2", "fc1", "fc2"}),
        ({"dataset": {"plugin": "digits", "split": "train"}}, {"conv2", "fc1", "fc2"}),
        ({"layers": [{"name": "conv2", "pool": "mean"}, {"name": "fc1", "relu": True}, "fc2"]}, {"conv2"}),
        ({"layers": ["conv2", {"name": "fc1", "relu": False}, "fc2"]}, {"fc1"}),
    ],
)
def test_any_change_to_what_determines_a_layer_misses_the_cache(write_spec, tmp_path, change, missed):
    assert run(write_spec(SPEC)).exit_code == 0
    assert run(write_spec({**SPEC, **change})).exit_code == 0
    cache = record(tmp_path)["activation_cache"]
    assert {layer for layer, state in cache.items() if state == "miss"} == missed
    assert {layer for layer, state in cache.items() if state == "hit"} == {"conv2", "fc1", "fc2"} - missed


def test_preprocessing_is_part_of_the_key():
    from selectivity_eval.core.extraction.extract import ResolvedLayer
    from selectivity_eval.core.study.steps import layer_key
    from selectivity_eval.core.spec.loader import validate_spec

    spec = validate_spec({**SPEC, "output": "unused"})
    model = se.get_registry().get("model", "digits-cnn")().load(seed=0)
    data = Digits({"split": "test"}).load(seed=0)
    layer = ResolvedLayer("fc2", "classifier.3", "max", False)
    plain = layer_key(spec, model, data, layer)
    model.transform = torch.nn.Identity()
    assert layer_key(spec, model, data, layer) != plain


class Interrupt(Exception):
    pass


def interrupt_after_four_batches(spec, monkeypatch) -> None:
    """Run ``spec`` with a checkpoint after every batch, stopped by an exception in its fifth batch."""
    monkeypatch.setattr(extract, "CHECKPOINT_SECONDS", -1.0)
    original = DigitsCNN.forward
    batches = []

    def dies_on_fifth_batch(self, x):
        if len(batches) == 4:
            raise Interrupt("killed")
        batches.append(len(x))
        return original(self, x)

    monkeypatch.setattr(DigitsCNN, "forward", dies_on_fifth_batch)
    with pytest.raises(Interrupt):
        CliRunner().invoke(app, [str(spec), "-q", "--debug"], catch_exceptions=False)
    monkeypatch.setattr(DigitsCNN, "forward", original)


def test_interrupted_extraction_resumes_and_matches_an_uninterrupted_run(write_spec, tmp_path, monkeypatch):
    original = DigitsCNN.forward
    spec = write_spec(SPEC)
    interrupt_after_four_batches(spec, monkeypatch)
    store = ActivationStore(tmp_path / "run" / "activations")
    partial = sorted(d for d in (tmp_path / "run" / "activations").iterdir() if d.is_dir())
    assert len(partial) == 3 and not any((d / "complete.json").exists() for d in partial)
    assert all(json.loads((d / "progress.json").read_text())["rows_done"] == 4 * 64 for d in partial)

    calls = []
    monkeypatch.setattr(DigitsCNN, "forward", lambda self, x: calls.append(len(x)) or original(self, x))
    assert run(spec).exit_code == 0
    assert sum(calls) == 450 - 4 * 64
    assert set(record(tmp_path)["activation_cache"].values()) == {"resumed at image 256"}
    resumed = {d.name: np.load(d / "values.npy") for d in partial}
    assert all(store.complete(d.name.rsplit("-", 1)[0], d.name.rsplit("-", 1)[1]) is not None for d in partial)

    fresh = tmp_path / "fresh"
    assert run(spec, "--output", str(fresh)).exit_code == 0
    for directory in sorted(d for d in (fresh / "activations").iterdir() if d.is_dir()):
        np.testing.assert_array_equal(np.load(directory / "values.npy"), resumed[directory.name])


def test_running_out_of_memory_names_batch_size_and_keeps_the_batches_done(write_spec, tmp_path, monkeypatch):
    original = DigitsCNN.forward
    batches = []

    def out_of_memory_on_fifth_batch(self, x):
        if len(batches) == 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        batches.append(len(x))
        return original(self, x)

    monkeypatch.setattr(DigitsCNN, "forward", out_of_memory_on_fifth_batch)
    spec = write_spec(SPEC)
    result = run(spec)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "batch_size: a batch of 64 images does not fit in memory on cpu" in message
    assert "the 256 images done so far are kept" in message and "Traceback" not in result.output
    partial = sorted(d for d in (tmp_path / "run" / "activations").iterdir() if d.is_dir())
    assert len(partial) == 3
    assert all(json.loads((d / "progress.json").read_text())["rows_done"] == 4 * 64 for d in partial)

    monkeypatch.setattr(DigitsCNN, "forward", original)
    assert run(spec).exit_code == 0
    assert set(record(tmp_path)["activation_cache"].values()) == {"resumed at image 256"}


class FlakyDigitsParams(se.PluginParams):
    on_unreadable: str = "fail"
    broken: list[int] = Field(default_factory=list)
    correct_only: bool = False


class FlakyDigits(se.DatasetSource):
    """Digits where some items cannot be read."""

    name = "flaky-digits"
    Params = FlakyDigitsParams

    def load(self, *, seed, transform=None):
        images, labels = digits_arrays("test")
        broken = set(self.params.broken)

        class Items(torch.utils.data.Dataset):
            def __len__(self):
                return len(labels)

            def __getitem__(self, i):
                return (None if i in broken else torch.from_numpy(images[i])), int(labels[i])

        return se.LoadedDataset(
            dataset=Items(),
            labels=labels,
            class_names=[str(d) for d in range(10)],
            identity={"broken": sorted(broken)},
            describe=lambda i: f"digit-{i}.png",
            on_unreadable=self.params.on_unreadable,
            correct_only=self.params.correct_only,
        )


class FlakyPlugin:
    @se.hookimpl
    def register_datasets(self, register):
        register(FlakyDigits)


@pytest.fixture
def flaky():
    with se.plugin_registered(FlakyPlugin(), name="flaky"):
        yield


def test_unreadable_images_are_skipped_and_counted(write_spec, tmp_path, flaky):
    spec = write_spec({**SPEC, "dataset": {"plugin": "flaky-digits", "on_unreadable": "skip", "broken": [3, 100, 449]}})
    assert run(spec).exit_code == 0
    images = record(tmp_path)["images"]
    assert images["unreadable_skipped"] == 3 and images["measured"] == 447
    assert images["unreadable"] == ["digit-3.png", "digit-100.png", "digit-449.png"]


def test_unreadable_image_fails_the_run_naming_it(write_spec, flaky):
    spec = write_spec({**SPEC, "dataset": {"plugin": "flaky-digits", "broken": [100]}})
    result = run(spec)
    assert result.exit_code == 2 and "digit-100.png" in result.output and "on_unreadable" in result.output


def test_correct_only_keeps_exactly_the_correctly_classified_images(write_spec, tmp_path, flaky):
    spec = write_spec({**SPEC, "dataset": {"plugin": "flaky-digits", "correct_only": True}})
    assert run(spec).exit_code == 0
    model = se.get_registry().get("model", "digits-cnn")().load(seed=0).module
    images, labels = digits_arrays("test")
    with torch.inference_mode():
        correct = model(torch.from_numpy(images)).argmax(1).numpy() == labels
    assert 0 < (~correct).sum()
    assert record(tmp_path)["images"]["measured"] == int(correct.sum())
    assert record(tmp_path)["images"]["dropped_incorrect"] == int((~correct).sum())
