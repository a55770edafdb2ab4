"""Mapped layer pages are given back after use (core/store/residency.py), with the data intact."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from selectivity_eval.core.outputs.results import silent_units
from selectivity_eval.core.store import residency
from selectivity_eval.core.store.residency import page_out_weights, read_units, release, row_blocks

MiB = 2**20


def mapped_resident_bytes(path) -> int:
    """This process's resident bytes of its mappings of ``path`` (Linux's /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if line.split()[0].count("-") == 1 and ":" not in line.split()[0]:  # a mapping's header line
            inside = line.endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1]) * 1024
    return total


def test_release_gives_a_written_map_back_and_keeps_its_data(tmp_path):
    path = tmp_path / "values.npy"
    written = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(4096, 1024))
    written[:] = np.arange(1024, dtype=np.float32)
    written.flush()
    assert mapped_resident_bytes(path) >= 15 * MiB
    assert release(written[:, 3:9])  # a view finds the mapping under it
    assert mapped_resident_bytes(path) < 1 * MiB
    del written
    read = np.load(path, mmap_mode="r")
    assert read[4095, 1023] == 1023 and float(read[:, 7].sum()) == 7 * 4096
    assert mapped_resident_bytes(path) >= 15 * MiB
    assert release(read)
    assert mapped_resident_bytes(path) < 1 * MiB
    assert read[100, 5] == 5


def test_release_leaves_arrays_in_memory_alone():
    values = np.ones((10, 10), dtype=np.float32)
    assert not release(values) and not release(values[:, 2])
    assert values.sum() == 100


def stored(tmp_path, shape=(3000, 700), name="values.npy") -> tuple[Path, np.ndarray]:
    """A stored layer with a NaN unit, a constant unit and a signed unit, and the same values in memory."""
    rng = np.random.default_rng(0)
    values = rng.random(shape, dtype=np.float32)
    values[1234, 5] = np.nan
    values[:, 6] = 2.5
    values[:, 7] -= 0.5
    path = tmp_path / name
    written = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    written[:] = values
    written.flush()
    del written
    return path, values


@pytest.mark.parametrize(
    "units", [slice(0, 700), slice(3, 290), slice(699, 700), slice(10, 200, 3), [7, 5, 400, 6], [7, 5, 40, 6]]
)
def test_read_units_reads_the_columns_from_the_file_without_mapping_the_layer(tmp_path, monkeypatch, units):
    monkeypatch.setattr(residency, "READ_BLOCK_BYTES", 1000 * 700 * 4 + 12)  # blocks of 1,000 rows; the last short
    path, values = stored(tmp_path)
    mapped = np.load(path, mmap_mode="r")
    read = read_units(mapped, units)
    assert read.flags.c_contiguous
    np.testing.assert_array_equal(read, values[:, units])
    assert mapped_resident_bytes(path) < 64 * 1024
    np.asarray(mapped[:, units]).copy()  # what read_units avoids: a column read through the map
    assert mapped_resident_bytes(path) > 4 * MiB


def test_read_units_and_row_blocks_take_a_view_of_a_mapping_as_a_view(tmp_path):
    path, values = stored(tmp_path)
    mapped = np.load(path, mmap_mode="r")
    window = mapped[1000:]  # a view keeps the whole's file offset: it must not be read from the file
    np.testing.assert_array_equal(read_units(window, [1, 2]), values[1000:, [1, 2]])
    assert sum(len(block) for _, block in row_blocks(window)) == 2000
    in_memory = np.array(values)
    assert read_units(in_memory, slice(1, 3)).base is in_memory


def test_silent_and_signed_flags_read_block_by_block_as_over_the_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(residency, "READ_BLOCK_BYTES", 700 * 4 * 7)  # blocks of 7 rows
    path, values = stored(tmp_path)
    mapped = np.load(path, mmap_mode="r")
    flags = silent_units(mapped)
    np.testing.assert_array_equal(flags, values.max(0) == values.min(0))
    assert flags[6] and not flags[5] and flags.sum() == 1
    assert [start for start, _ in row_blocks(mapped)][:3] == [0, 7, 14]
    assert any(bool((block < 0).any()) for _, block in row_blocks(mapped))
    assert mapped_resident_bytes(path) < 64 * 1024


def anonymous_bytes() -> int:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no Anonymous line in smaps_rollup")


def test_paged_out_weights_leave_memory_and_compute_the_same(tmp_path):
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(2048, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 10)).eval()
    inputs = torch.rand(3, 2048)
    with torch.no_grad():
        before = network(inputs)
    weights = {name: tensor.clone() for name, tensor in network.state_dict().items()}
    held = anonymous_bytes()
    assert page_out_weights(network, tmp_path)
    assert held - anonymous_bytes() > 24 * MiB  # 32 MiB of float32 weights, less allocator slack
    assert list(tmp_path.iterdir()) == []  # the file is unlinked; the map keeps it until the weights go
    with torch.no_grad():
        assert torch.equal(network(inputs), before)
    assert all(torch.equal(weights[name], tensor) for name, tensor in network.state_dict().items())
    assert all(parameter.requires_grad for parameter in network.parameters())


def test_weights_stay_in_memory_when_no_file_can_be_written(tmp_path):
    from tests.test_disk_full import mounted

    network = torch.nn.Linear(1024, 1024)  # 4 MiB of weights
    weights = network.weight.detach().clone()
    disk = tmp_path / "disk"
    if mounted(disk, "2m"):  # a real disk too small for them
        try:
            assert not page_out_weights(network, disk)
            assert list(disk.iterdir()) == []
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=True)
    assert not page_out_weights(network, tmp_path / "missing")
    assert torch.equal(network.weight, weights) and network.weight.is_leaf
