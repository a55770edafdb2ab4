"""The activation store never trusts a damaged entry: every kind of store file with one byte flipped, a
truncated values.npy, altered shard records; an image edited in place; the unreadable policy on a cached rerun."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import selectivity_eval as se
from selectivity_eval.core.cli.app import app
from selectivity_eval.core.store import shards
from selectivity_eval.core.store.activation_store import ActivationStore, StoreWarning
from tests.image_files import write_image
from tests.test_store import SPEC, FlakyPlugin, interrupt_after_four_batches


def run(spec, *args):
    return CliRunner().invoke(app, [str(spec), "-q", *args])


def cache_of(output: Path) -> dict[str, str]:
    return json.loads((output / "run.json").read_text())["activation_cache"]


def entries(output: Path) -> list[Path]:
    return sorted(d for d in (output / "activations").iterdir() if d.is_dir())


def flip_byte(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def finished(write_spec, tmp_path):
    """A complete run of the digits spec: (spec path, output directory, its units.csv text)."""
    spec = write_spec(SPEC)
    assert run(spec).exit_code == 0
    return spec, tmp_path / "run", (tmp_path / "run" / "units.csv").read_text()


@pytest.mark.parametrize("name", ["values.npy", "readable.npy", "predicted.npy", "complete.json"])
@pytest.mark.parametrize("where", ["header", "middle", "end"])
def test_a_flipped_byte_in_a_complete_entry_is_named_and_the_layer_recomputed(finished, name, where):
    spec, output, units = finished
    entry = entries(output)[1]
    size = (entry / name).stat().st_size
    flip_byte(entry / name, {"header": 20, "middle": size // 2, "end": size - 2}[where])
    with pytest.warns(StoreWarning, match=f"{entry.name}.{name}|{entry / name}"):
        result = run(spec)
    assert result.exit_code == 0, result.output
    cache = cache_of(output)
    assert cache[entry.name.rsplit("-", 1)[0]] == "miss" and sorted(cache.values()) == ["hit", "hit", "miss"]
    assert (output / "units.csv").read_text() == units
    assert run(spec).exit_code == 0 and set(cache_of(output).values()) == {"hit"}


def test_a_truncated_values_file_is_named_and_recomputed(finished):
    spec, output, units = finished
    path = entries(output)[0] / "values.npy"
    os.truncate(path, path.stat().st_size // 2)
    with pytest.warns(StoreWarning, match="values.npy is truncated"):
        result = run(spec)
    assert result.exit_code == 0, result.output
    assert "miss" in cache_of(output).values() and (output / "units.csv").read_text() == units


@pytest.fixture
def interrupted(write_spec, tmp_path, monkeypatch):
    """The digits spec stopped after 4 batches (checkpointing every batch); also the units of a full run."""
    fresh = write_spec({**SPEC, "output": str(tmp_path / "fresh")}, "fresh.yaml")
    assert run(fresh).exit_code == 0
    spec = write_spec(SPEC)
    interrupt_after_four_batches(spec, monkeypatch)
    return spec, tmp_path / "run", (tmp_path / "fresh" / "units.csv").read_text()


@pytest.mark.parametrize("name", ["progress.json", "values.partial.npy", "readable.partial.npy", "predicted.partial.npy"])
def test_a_flipped_byte_in_an_interrupted_entry_restarts_it_instead_of_resuming(interrupted, name):
    spec, output, units = interrupted
    entry = entries(output)[0]
    assert json.loads((entry / "progress.json").read_text())["rows_done"] == 256
    flip_byte(entry / name, 140 if name.endswith(".npy") else 30)  # within the 256 rows on disk
    with pytest.warns(StoreWarning, match=name.replace(".", r"\.")):
        result = run(spec)
    assert result.exit_code == 0, result.output
    cache = cache_of(output)
    assert cache[entry.name.rsplit("-", 1)[0]] == "miss"
    assert sorted(cache.values()).count("resumed at image 256") == 0  # one layer restarted, so all run from 0
    assert (output / "units.csv").read_text() == units


def test_an_intact_interrupted_entry_resumes(interrupted):
    spec, output, units = interrupted
    result = run(spec)
    assert result.exit_code == 0, result.output
    assert set(cache_of(output).values()) == {"resumed at image 256"}
    assert (output / "units.csv").read_text() == units


def test_altered_shard_records_and_rows_are_named_and_rewritten(tmp_path):
    store = ActivationStore(tmp_path)
    directory = shards.prepare_layer(store, "layer", "k", n_images=8, n_units=3, shard_size=4)
    for index, (start, stop) in enumerate(shards.shard_bounds(8, 4)):
        layer = shards.open_rows(directory)
        layer.values[start:stop] = np.arange(start * 3, stop * 3, dtype=np.float32).reshape(-1, 3)
        layer.readable[start:stop] = True
        shards.mark_done(layer, index, start, stop, [])
        del layer
    assert shards.read_plan(directory)["shard_size"] == 4
    record = shards.shard_done(directory, 1)
    assert record is not None and shards.shard_rows_intact(directory, 1, record)

    flip_byte(directory / "shards" / "0.done", 10)
    with pytest.warns(StoreWarning, match=r"0\.done"):
        assert shards.shard_done(directory, 0) is None
    flip_byte(directory / "values.partial.npy", 128 + 5 * 12)  # a byte of row 5, in shard 1
    with pytest.warns(StoreWarning, match="rows 4 to 8 of .*values.partial.npy"):
        assert not shards.shard_rows_intact(directory, 1, record)
    assert shards.shard_done(directory, 1) is None  # its record is gone: the shard is rewritten
    flip_byte(directory / "shards" / "plan.json", 5)
    with pytest.warns(StoreWarning, match=r"plan\.json"):
        assert shards.read_plan(directory) is None


def test_a_cached_rerun_honours_the_unreadable_policy_and_records_the_skipped_images(write_spec, tmp_path):
    broken = {"plugin": "flaky-digits", "broken": [3, 100, 449]}
    with se.plugin_registered(FlakyPlugin(), name="flaky"):
        skip = write_spec({**SPEC, "dataset": {**broken, "on_unreadable": "skip"}})
        assert run(skip).exit_code == 0
        assert run(skip).exit_code == 0
        record = json.loads((tmp_path / "run" / "run.json").read_text())
        assert set(record["activation_cache"].values()) == {"hit"}
        assert record["images"]["unreadable_skipped"] == 3 and record["images"]["measured"] == 447
        assert record["images"]["unreadable"] == ["digit-3.png", "digit-100.png", "digit-449.png"]

        result = run(write_spec({**SPEC, "dataset": {**broken, "on_unreadable": "fail"}}))
    assert result.exit_code == 2, result.output
    assert "digit-3.png" in result.output and "on_unreadable" in result.output


class PixelParams(se.PluginParams):
    pass


class TinyPixelNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class PixelModel(se.ModelSource):
    """A seeded random conv net on 8 x 8 RGB images."""

    name = "pixel-net"

    def load(self, *, seed):
        from torchvision.transforms.functional import resize, to_tensor

        torch.manual_seed(seed)
        return se.LoadedModel(module=TinyPixelNet(), aliases={"conv": "conv", "fc": "fc"},
                              transform=lambda image: to_tensor(resize(image, [8, 8])))


class PixelPlugin:
    @se.hookimpl
    def register_models(self, register):
        register(PixelModel)


def test_an_image_edited_in_place_with_size_and_time_restored_misses_the_cache(write_spec, tmp_path):
    root = tmp_path / "images"
    for index in range(6):
        write_image(root / ("a" if index % 2 else "b") / f"{index}.bmp", (40 * index, 90, 200 - 30 * index))
    spec = write_spec({"model": "pixel-net", "dataset": {"plugin": "imagefolder", "root": str(root)},
                       "layers": ["conv", "fc"], "measures": ["topclass"], "device": "cpu"})
    with se.plugin_registered(PixelPlugin(), name="pixel"):
        assert run(spec).exit_code == 0
        before = (tmp_path / "run" / "units.csv").read_text()
        edited = root / "a" / "1.bmp"
        status = edited.stat()
        write_image(edited, (250, 250, 0))  # a BMP of the same size: only the pixels differ
        os.utime(edited, ns=(status.st_atime_ns, status.st_mtime_ns))
        assert edited.stat().st_size == status.st_size and edited.stat().st_mtime_ns == status.st_mtime_ns
        assert run(spec).exit_code == 0
        assert set(cache_of(tmp_path / "run").values()) == {"miss"}
        after = (tmp_path / "run" / "units.csv").read_text()
        assert run(spec, "--output", str(tmp_path / "fresh")).exit_code == 0
    assert after == (tmp_path / "fresh" / "units.csv").read_text() and after != before
