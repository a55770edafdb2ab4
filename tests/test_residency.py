"""Mapped layer pages are given back after use (core/store/residency.py), with the data intact."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from selectivity_eval.core.store.residency import release

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
