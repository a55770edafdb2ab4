"""Where a run's extraction and measures execute: in this process, or on a dask.distributed engine.

``executor_scope(spec.executor)`` opens the executor a spec asks for for the length of a run (a
sweep opens one for all its runs, which then share it), and the run's steps ask
``current_executor()`` where to send their work. The local executor is the engine as it always
ran; ``DaskExecutor`` (``core/distributed/dask_executor.py``) is imported only when a spec asks for dask, so
the core needs neither dask nor distributed.

Rows of a stored layer: when a run measures only some images (unreadable ones skipped,
``correct_only``), it measures an in-memory copy of those rows. ``remember_rows`` notes which
store file and which rows such a copy came from, so that a distributed executor can have its
workers read the rows from the store instead of shipping the copy.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np

from selectivity_eval.core.errors import UserInputError

DASK_INSTALL_HINT = "pip install 'selectivity-eval[dask]'"


class LocalExecutor:
    """Everything in this process, as a run without an ``executor:`` block does."""

    kind = "local"
    distributed = False

    def record(self) -> dict[str, Any]:
        return {"kind": "local"}

    def start_run(self) -> None:
        pass

    def close(self) -> None:
        pass


_current: ContextVar[Any] = ContextVar("selectivity_eval_executor", default=None)


def current_executor() -> Any:
    """The executor of the run in progress; the local one outside any scope."""
    return _current.get() or LocalExecutor()


def require_dask() -> None:
    """Import dask and distributed, or stop with exit code 2 and how to install them."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as error:
        missing = getattr(error, "name", None) or "dask"
        raise UserInputError(
            f"The spec asks for `executor: dask`, but {missing!r} is not installed. dask and distributed are an "
            f"optional extra: {DASK_INSTALL_HINT} (or pip install 'dask[distributed]'). Without them, leave out "
            "`executor:` or use `executor: local`."
        ) from None


@contextmanager
def executor_scope(config: Any, reporter: Any = None) -> Iterator[Any]:
    """The executor ``config`` (an ``ExecutorSpec``) asks for, open for the block, closed after it.

    Inside an open scope (a sweep's), the runs use that scope's executor and ``config`` is ignored.
    """
    active = _current.get()
    if active is not None:
        active.start_run()
        yield active
        return
    if config is None or config.kind == "local":
        executor: Any = LocalExecutor()
    else:
        require_dask()
        from selectivity_eval.core.distributed.dask_executor import DaskExecutor

        executor = DaskExecutor.open(config, reporter)
    token = _current.set(executor)
    try:
        yield executor
    finally:
        _current.reset(token)
        executor.close()


def executor_record() -> dict[str, Any]:
    """What ``run.json`` says about where the run executed."""
    return current_executor().record()


@dataclass(frozen=True)
class StoredRows:
    """Where a layer's activations are on disk: the ``.npy`` file, and which of its rows (None: all)."""

    path: str
    rows: np.ndarray | None


_copies: dict[int, tuple[weakref.ref, StoredRows]] = {}


def _whole_file(values: Any) -> str | None:
    """The ``.npy`` file ``values`` maps in full, or None (in memory, or only part of a file)."""
    if not isinstance(values, np.memmap) or not getattr(values, "filename", None):
        return None
    try:
        header = np.load(values.filename, mmap_mode="r")
    except (OSError, ValueError):
        return None
    whole = header.shape == values.shape and header.dtype == values.dtype and values.flags.c_contiguous
    return str(values.filename) if whole else None


def remember_rows(subset: np.ndarray, values: Any, measured: np.ndarray) -> None:
    """Note that ``subset`` is ``values[measured]``, when ``values`` maps a whole store file."""
    path = _whole_file(values)
    if path is None:
        return
    key = id(subset)
    _copies[key] = (
        weakref.ref(subset, lambda _ref, key=key: _copies.pop(key, None)),
        StoredRows(path, measured.copy()),
    )


def stored_rows(values: Any) -> StoredRows | None:
    """Where ``values`` can be read from the store, or None when it exists only in memory."""
    path = _whole_file(values)
    if path is not None:
        return StoredRows(path, None)
    entry = _copies.get(id(values))
    if entry is not None and entry[0]() is values:
        return entry[1]
    return None
