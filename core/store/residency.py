"""Give a memory-mapped layer's pages back once it has been read or written.

Every page of a mapped file that the process touches stays in its resident memory until the mapping
goes, so a study that writes and then reads eight layers through their maps would end up holding
the whole store (1.9 GiB for AlexNet over 50,000 images). ``release`` drops the process's mappings
of those pages (``madvise(MADV_DONTNEED)``); the data stays in the file and in the page cache (a
shared mapping's changes are never discarded, and the store flushes before releasing), so the next
read maps them again without touching the disk. The process then holds at most the layer it is
working on.

Reading a few columns of a mapped layer would still map every page of it (each row's columns share
their pages with the neighbours', and the kernel maps pages around each one touched), so the
measures read a chunk of units through ``read_units`` instead: file reads (of the chunk's bytes of
each row for a narrow chunk, else of blocks of whole rows into one small buffer), which add the
chunk's copy to the process and none of the layer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch


def file_mapping(array) -> mmap.mmap | None:
    """The ``mmap`` under a memory-mapped array or any view of one; None for an array in memory."""
    base = array
    while base is not None:
        if isinstance(base, mmap.mmap):
            return base
        base = getattr(base, "base", None)
    return None


def release(array) -> bool:
    """Drop the process's resident pages of the file under ``array``; False if it is not mapped."""
    mapping = file_mapping(array) if isinstance(array, np.ndarray) else None
    if mapping is None or mapping.closed or not hasattr(mmap, "MADV_DONTNEED"):
        return False
    mapping.madvise(mmap.MADV_DONTNEED)
    return True


def trim_heap() -> None:
    """Hand the C heap's free memory back to the system (glibc keeps freed blocks otherwise)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


READ_BLOCK_BYTES = 16 * 2**20


def read_units(array: np.ndarray, units: slice | Sequence[int]) -> np.ndarray:
    """Columns ``units`` (a slice or unit indices) of a 2-D array, as a contiguous copy read from its
    file when it is a whole memory-mapped file (so no page of the mapping becomes resident), else
    ``array[:, units]``."""
    if not _whole_mapping(array):
        return array[:, units]
    chosen = np.arange(array.shape[1])[units]
    first = int(chosen.min()) if chosen.size else 0
    if chosen.size and (span := int(chosen.max()) - first + 1) <= array.shape[1] // 2:
        part = _read_columns(array, first, span)
        if isinstance(units, slice) and units.step in (None, 1):
            return part
        return np.ascontiguousarray(part[:, chosen - first])
    out = np.empty((array.shape[0], chosen.size), dtype=array.dtype)
    for start, block in row_blocks(array):
        out[start : start + len(block)] = block[:, units]
    return out


def _read_columns(array: np.ndarray, first: int, width: int) -> np.ndarray:
    """Columns ``first`` to ``first + width`` of a mapped 2-D array, one file read per row.

    For a chunk of at most half a row, reading only its bytes of each row beats reading whole rows
    and copying the chunk out: 1,024 of fc6's 4,096 units at 50,000 images from the page cache took
    0.13-0.16 s against 0.18-0.21 s (medians of three runs, docs/performance.md).
    """
    n_rows, row_width = array.shape
    out = np.empty((n_rows, width), dtype=array.dtype)
    view = memoryview(out).cast("B")
    size = width * array.itemsize
    offset = array.offset + first * array.itemsize
    row_bytes = row_width * array.itemsize
    with open(array.filename, "rb", buffering=0) as file:
        for row in range(n_rows):
            _read_exactly(file, view[row * size : (row + 1) * size], offset + row * row_bytes, row + 1, n_rows)
    return out


def _read_exactly(file, view: memoryview, position: int, end_row: int, n_rows: int) -> None:
    """Fill ``view`` from ``file`` at ``position``; an error naming the file if it ends first."""
    done = 0
    while done < view.nbytes:
        read = os.preadv(file.fileno(), [view[done:]], position + done)
        if read == 0:
            raise OSError(f"{file.name}: the file ends before row {end_row} of {n_rows}")
        done += read


def row_blocks(array: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, block of rows) of a 2-D array, in order; read from its file into one buffer, reused
    for every block, when it is a whole memory-mapped file, else views of the array."""
    n_rows, width = array.shape
    row_bytes = width * array.itemsize
    step = max(1, READ_BLOCK_BYTES // max(1, row_bytes))
    if not _whole_mapping(array):
        for start in range(0, n_rows, step):
            yield start, array[start : start + step]
        return
    buffer = np.empty((min(step, n_rows), width), dtype=array.dtype)
    with open(array.filename, "rb", buffering=0) as file:
        for start in range(0, n_rows, step):
            block = buffer[: min(step, n_rows - start)]
            position = array.offset + start * row_bytes
            _read_exactly(file, memoryview(block).cast("B"), position, start + len(block), n_rows)
            yield start, block


def _whole_mapping(array: np.ndarray) -> bool:
    """A C-ordered 2-D array made by mapping its file, whose ``offset`` is therefore its own (a view
    of one keeps the offset of the whole)."""
    return (
        isinstance(array, np.memmap)
        and isinstance(array.base, mmap.mmap)
        and getattr(array, "filename", None) is not None
        and getattr(array, "offset", None) is not None
        and array.ndim == 2
        and array.flags.c_contiguous
    )


def page_out_weights(module: torch.nn.Module, directory: Path) -> bool:
    """Move a CPU module's parameters and buffers into a private map of a file, unlinked at once.

    Between extraction and AM the network sits idle while the measures need memory; its weights
    (0.23 GiB for AlexNet) then take none, and come back from the page cache when next used. The
    values, layouts and ``requires_grad`` stay as they were. False (weights left in memory) for a
    module with tensors off the CPU, or when the file cannot be written (a full disk, say).
    """
    tensors = module.state_dict()
    if not tensors or any(tensor.device.type != "cpu" for tensor in tensors.values()):
        return False
    try:
        handle, name = tempfile.mkstemp(prefix=".weights-", suffix=".pt", dir=directory)
    except OSError:
        return False
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(tensors, file)
        module.load_state_dict(torch.load(name, mmap=True, weights_only=True, map_location="cpu"), assign=True)
    except (OSError, RuntimeError):
        return False
    finally:
        os.unlink(name)
    return True
