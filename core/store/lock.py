"""An exclusive lock per activation store entry, held while the entry is written.

The lock is ``flock`` on ``<entry>.lock`` next to the entry's directory: the kernel releases it
when its process dies, however it dies, so a lock left by a killed run is never mistaken for a
live one (the file stays; what counts is whether some process holds it). The file records the
holder's process id and host, for the message a waiting run prints. ``flock`` works between
processes on one machine and, on most network file systems, between machines.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path


def lock_path(directory: Path) -> Path:
    return directory.with_name(directory.name + ".lock")


def _holder(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "another process"
    except OSError:
        return "another process"


@contextmanager
def entry_lock(directory: Path, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the entry's exclusive lock for the block; wait (saying so through ``on_wait``) while another holds it."""
    path = lock_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait(f"{directory.name} is being written by {_holder(path)}; waiting for it to finish")
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)  # releases the lock


@contextmanager
def entry_locks(directories: list[Path], on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Several entries' locks, taken in one order (sorted) so two runs never deadlock."""
    with ExitStack() as stack:
        for directory in sorted(set(directories)):
            stack.enter_context(entry_lock(directory, on_wait))
        yield
