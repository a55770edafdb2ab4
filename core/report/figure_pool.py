"""The report's figures, drawn and saved in worker processes so that a report uses every core.

Nearly all of a report's time is matplotlib drawing and saving figures (laying out text more than
painting points): a jitterplot per unit card, the overview figures, and the cards' top-image
grids. None depends on another, so ``FigurePool`` hands them to a pool of worker processes while
this process reads the activations, decodes the top images and fills in the cards. A worker
keeps one ``JitterFigure`` and redraws it for every unit it is given, as a single process does,
and each unit's jitter comes from its own seed, so the files are the same bytes for any number of
workers. With ``workers=1`` everything is drawn here, in order, and no process is started.

Workers are forked from a fork server where the system has one (a clean process that imported
this module once; the report's own process may hold torch's and numba's threads, which a plain
fork would copy in an unknown state), else spawned. They are started on a thread, so that the
server's imports overlap this process's work; tasks wait in a queue meanwhile, and afterwards up
to ``QUEUED_BYTES`` of their arrays and images are queued for the workers, which bounds the
memory held for them.

A worker imports the program's ``__main__`` module afresh (as multiprocessing's spawn and fork
server do), which runs a script's top-level code again unless it is guarded by
``if __name__ == "__main__":``; an unguarded script that runs a study would run it again in every
worker. So the default is 1 worker unless ``__main__`` is known to be harmless to import
(``main_can_be_imported``): the ``selectivity-eval`` command, ``python -m``, ``python -c`` and
interactive sessions. Asking for workers explicitly assumes a guarded script.

An error in a worker is raised here as the same exception, so a report fails with the same
message whatever the number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from selectivity_eval.core.report import plots
from selectivity_eval.core.report.jitter_figure import JitterFigure

MIN_CARDS_PER_WORKER = 48  # the workers' start costs about 3 s of a core (the fork server's imports): ~50 cards
QUEUED_BYTES = 128 * 2**20  # all of the paper's 450 cards at 50,000 images fit


def available_cores() -> int:
    """The cores this process may run on (its affinity where the system says, else all of them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers(n_cards: int, cores: int | None = None) -> int:
    """A worker per core, but none with fewer than ``MIN_CARDS_PER_WORKER`` cards to draw; 1 (no pool) when a
    worker would run the program's main script again (``main_can_be_imported``) or in a daemonic process
    (a pool's worker), which may not start processes."""
    if not main_can_be_imported() or multiprocessing.current_process().daemon:
        return 1
    cores = available_cores() if cores is None else cores
    return max(1, min(cores, n_cards // MIN_CARDS_PER_WORKER))


def main_can_be_imported() -> bool:
    """Whether a worker may import ``__main__`` without running anything: a module run with ``-m`` as
    ``__main__`` (which multiprocessing does not import), none (``-c``, interactive), or the
    ``selectivity-eval`` command's script (which calls ``main`` only under the ``__name__`` guard)."""
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None:
        return name == "__main__" or name.endswith(".__main__")
    if getattr(main, "__file__", None) is None:
        return True
    cli = sys.modules.get("selectivity_eval.core.cli.app")
    return cli is not None and getattr(main, "main", None) is cli.main


class Drawer:
    """What a process draws with: one reused jitterplot figure, the classes, the precision lines, the formats."""

    def __init__(self, class_ids: np.ndarray, class_names: list[str], top_n: tuple[int, ...], formats: list[str]):
        self.class_ids = class_ids
        self.top_n = top_n
        self.formats = formats
        self.jitter = JitterFigure(class_names)


def _jitterplot(drawer: Drawer, values: np.ndarray, title: str, seed, stem: Path) -> Path:
    drawn = drawer.jitter.draw(values, drawer.class_ids, title=title, seed=seed, top_n=drawer.top_n)
    return plots.save(drawn, stem, drawer.formats)[0]


def _figure(drawer: Drawer, make: Callable, arguments: tuple, stem: Path) -> Path:
    return plots.save(make(*arguments), stem, drawer.formats)[0]


def _call(drawer: Drawer, function: Callable, arguments: tuple):
    return function(*arguments)


_drawer: Drawer | None = None  # a worker's own


def _start_worker(*settings) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the report's process, which stops the pool
    global _drawer
    _drawer = Drawer(*settings)


def _in_worker(task: Callable, arguments: tuple):
    return task(_drawer, *arguments)


def _context():
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # no effect once a server runs; then its workers import this
    return context


class FigurePool:
    """Figures drawn in ``workers`` processes (this one when 1). Each method queues one task; when it is done,
    ``done`` gets its result, here. Leaving the ``with`` block waits for every task and re-raises the first
    error; on an error inside the block, the queued ones are dropped.

    A task does not wait for the workers to start: while they do, and while less than ``QUEUED_BYTES``
    are queued, the methods return at once, so this process gets on with the rest."""

    def __init__(self, class_ids, class_names: list[str], top_n: tuple[int, ...], formats: list[str],
                 workers: int = 1):
        settings = (np.asarray(class_ids), list(class_names), tuple(top_n), list(formats))
        self.formats = list(formats)
        self.workers = max(1, int(workers))
        self.waiting: list[tuple[Callable, tuple, int, Callable]] = []  # not yet handed to the pool
        self.finished: queue.SimpleQueue = queue.SimpleQueue()  # (future, bytes, done), put by the pool's thread
        self.unfinished = 0
        self.queued_bytes = 0
        self.drawer = Drawer(*settings) if self.workers == 1 else None
        self.pool = self.starting = None
        self.start_error: BaseException | None = None
        if self.workers > 1:
            self.pool = ProcessPoolExecutor(self.workers, mp_context=_context(), initializer=_start_worker,
                                            initargs=settings)
            self.starting = threading.Thread(target=self._start_workers, name="report-workers", daemon=True)
            self.starting.start()

    def _start_workers(self) -> None:
        """Start the processes (the first waits for the fork server's imports) with a task each."""
        try:
            for _ in range(self.workers):
                self.pool.submit(int)
        except BaseException as error:  # raised by the next task or the end of the block
            self.start_error = error

    def __enter__(self) -> FigurePool:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if self.pool is None:
            return
        try:
            if error is None:
                self._pump(until=None)
        finally:
            self.starting.join()
            self.pool.shutdown(wait=True, cancel_futures=True)

    def jitterplot(self, values: np.ndarray, *, title: str, seed, stem: Path, done: Callable[[Path], None]) -> None:
        """Draw ``values`` (one unit's activations) as a jitterplot, saved as ``stem.<format>``; ``done(path)``."""
        values = np.ascontiguousarray(values)
        self._task(_jitterplot, (values, title, seed, stem), values.nbytes, done)

    def figure(self, make: Callable, arguments: tuple, stem: Path, done: Callable[[Path], None]) -> Path:
        """Save ``make(*arguments)`` (a figure; ``make`` a module's function) as ``stem.<format>``; ``done(path)``.
        Returns the path it will have, as ``plots.save`` names it."""
        self._task(_figure, (make, arguments, stem), 0, done)
        return plots.saved_paths(stem, self.formats)[0]

    def call(self, function: Callable, arguments: tuple, size: int, done: Callable) -> None:
        """``done(function(*arguments))``, with ``size`` bytes of arguments; ``function`` a module's function."""
        self._task(_call, (function, arguments), size, done)

    def _task(self, task: Callable, arguments: tuple, size: int, done: Callable) -> None:
        if self.pool is None:
            done(task(self.drawer, *arguments))
            return
        self.waiting.append((task, arguments, size, done))
        self.queued_bytes += size
        self._pump(until=QUEUED_BYTES)

    def _pump(self, until: int | None) -> None:
        """Hand the waiting tasks to the pool once it has started, and take in the finished ones; wait (for the
        start, then for the workers) while more than ``until`` bytes are queued, or until all are done (None)."""
        while True:
            if self.starting.is_alive() and (until is None or self.queued_bytes > until):
                self.starting.join()
            if not self.starting.is_alive():
                if self.start_error is not None:
                    raise self.start_error
                for task, arguments, size, done in self.waiting:
                    future = self.pool.submit(_in_worker, task, arguments)
                    self.unfinished += 1
                    future.add_done_callback(lambda future, entry=(size, done): self.finished.put((future, *entry)))
                self.waiting = []
            satisfied = (self.unfinished == 0 and not self.waiting) if until is None else self.queued_bytes <= until
            try:
                future, size, done = self.finished.get(block=not satisfied)
            except queue.Empty:
                return
            self.unfinished -= 1
            self.queued_bytes -= size
            done(future.result())  # a worker's exception is raised here
