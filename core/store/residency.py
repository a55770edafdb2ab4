"""Give a memory-mapped layer's pages back once it has been read or written.

Every page of a mapped file that the process touches stays in its resident memory until the mapping
goes, so a study that writes and then reads eight layers through their maps would end up holding
the whole store (1.9 GiB for AlexNet over 50,000 images). ``release`` drops the process's mappings
of those pages (``madvise(MADV_DONTNEED)``); the data stays in the file and in the page cache (a
shared mapping's changes are never discarded, and the store flushes before releasing), so the next
read maps them again without touching the disk. The process then holds at most the layer it is
working on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap

import numpy as np


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
