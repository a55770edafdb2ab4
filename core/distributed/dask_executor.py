"""The dask executor: a run's extraction shards and measure chunks as tasks of a dask.distributed engine.

The client (this process) plans the work, submits tasks (``core/distributed/dask_tasks.py``) and gathers small
results; workers read and write the activation store directly by path, so the store must be on a
file system every worker sees (one machine, or a shared file system). A worker lost mid-run costs
only its tasks: dask reruns them elsewhere, and every task is idempotent. Imported only when a spec
asks for dask.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

import dask
from distributed import Client, LocalCluster, as_completed

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.distributed.executor import DASK_INSTALL_HINT
from selectivity_eval.core.store.activation_store import ActivationStore

CONNECT_TIMEOUT_S = 30
SHARDS_PER_THREAD = 4
CHUNKS_PER_THREAD = 2
PERMUTATION_BLOCKS = 4
PRE_SPAWN = "distributed.nanny.pre-spawn-environ"


def worker_environment() -> dict[str, Any]:
    """dask's environment for new worker processes, without ``MALLOC_TRIM_THRESHOLD_``.

    dask sets it to return freed memory to the system early; it also turns off glibc's adaptive
    mmap threshold, so every large temporary of a measure is mapped and faulted in afresh: the
    four measures then take about 1.6 times as long on a worker as in process. One thread per
    worker for OpenMP, MKL and OpenBLAS stays.
    """
    return {key: value for key, value in dask.config.get(PRE_SPAWN, {}).items() if key != "MALLOC_TRIM_THRESHOLD_"}


def _versions() -> dict[str, Any]:
    """Run on every worker: the package version and the plugins it can load."""
    from selectivity_eval._version import __version__
    from selectivity_eval.core.registry.manager import get_registry

    registry = get_registry()
    return {"version": __version__, "model": registry.names("model"), "dataset": registry.names("dataset")}


class DaskExecutor:
    """Tasks on a ``dask.distributed`` scheduler: an existing one at ``address``, or a LocalCluster of the run."""

    kind = "dask"
    distributed = True

    def __init__(self, client: Client, cluster: LocalCluster | None, config: Any):
        self.client = client
        self.cluster = cluster
        self.config = config
        self.start_run()

    def start_run(self) -> None:
        """Count the tasks of a new run (a sweep's runs share the executor)."""
        self.stats: dict[str, Any] = {"shard_tasks": 0, "shards_skipped": 0, "measure_tasks": 0, "chance_tasks": 0}

    @classmethod
    def open(cls, config: Any, reporter: Any = None) -> DaskExecutor:
        cluster = None
        try:
            if config.local_cluster is not None:
                settings = config.local_cluster
                extra = {"memory_limit": settings.memory_limit} if settings.memory_limit else {}
                with dask.config.set({PRE_SPAWN: worker_environment()}):
                    cluster = LocalCluster(
                        n_workers=settings.workers,
                        threads_per_worker=settings.threads_per_worker,
                        processes=True,
                        host="127.0.0.1",
                        dashboard_address="127.0.0.1:0",  # loopback only, any free port
                        **extra,
                    )
                client = Client(cluster, direct_to_workers=True, set_as_default=False)
            else:
                client = Client(config.address, timeout=CONNECT_TIMEOUT_S, direct_to_workers=True, set_as_default=False)
                client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as error:
            if cluster is not None:
                cluster.close()
            where = config.address or "a new LocalCluster"
            raise UserInputError(f"Could not use the dask scheduler at {where}: {error}") from None
        if reporter is not None:
            reporter.say(
                f"dask: {len(client.nthreads())} workers, {sum(client.nthreads().values())} threads, "
                f"scheduler {client.scheduler.address}"
            )
        return cls(client, cluster, config)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def record(self) -> dict[str, Any]:
        threads = self.client.nthreads()
        return {
            "kind": "dask",
            "address": self.config.address,
            "local_cluster": self.config.local_cluster.model_dump() if self.config.local_cluster else None,
            "workers": len(threads),
            "threads": sum(threads.values()),
            **self.stats,
        }

    @property
    def threads(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def check_workers(self, spec) -> None:
        """Every worker has this package's version and the spec's model and data set plugins."""
        from selectivity_eval._version import __version__

        for worker, info in self.client.run(_versions).items():
            problems = []
            if info["version"] != __version__:
                problems.append(f"selectivity-eval {info['version']} (the client has {__version__})")
            if spec.model.plugin not in info["model"]:
                problems.append(f"no model plugin {spec.model.plugin!r}")
            if spec.dataset.plugin not in info["dataset"]:
                problems.append(f"no data set plugin {spec.dataset.plugin!r}")
            if problems:
                raise UserInputError(
                    f"dask worker {worker} has {'; '.join(problems)}. Install the same selectivity-eval and plugins "
                    f"on every worker ({DASK_INSTALL_HINT} there too)."
                )

    def gather(self, futures: list, reporter, description: str) -> list:
        """Results in submission order, advancing a progress bar; the first error cancels the rest."""
        steps = reporter.steps(description, len(futures)) if reporter is not None else None
        position = {future.key: index for index, future in enumerate(futures)}
        results: list = [None] * len(futures)
        try:
            for future, result in as_completed(futures, with_results=True, loop=self.client.loop):
                results[position[future.key]] = result
                if steps is not None:
                    steps.advance()
        except BaseException:
            self.client.cancel(futures)
            raise
        return results

    def submit(self, function, *args, name: str):
        return self.client.submit(function, *args, key=f"{name}-{uuid.uuid4().hex[:12]}", pure=False)

    def extract(self, spec, model, data, layers, keys: dict[str, str], store: ActivationStore, reporter):
        from selectivity_eval.core.distributed.dask_extraction import extract_on_dask

        started = time.perf_counter()
        extraction = extract_on_dask(self, spec, model, data, layers, keys, store, reporter)
        self.stats["extract_s"] = round(self.stats.get("extract_s", 0.0) + time.perf_counter() - started, 4)
        return extraction

    def measure(self, spec, activations, labels, measures, plugin_of, reporter, description: str):
        from selectivity_eval.core.distributed.dask_measures import measure_on_dask

        return measure_on_dask(self, spec, activations, labels, measures, plugin_of, reporter, description)

    def shard_size(self, n_images: int, batch_size: int) -> int:
        """Images per extraction task: whole batches, about ``SHARDS_PER_THREAD`` tasks per worker thread."""
        wanted = self.config.shard_images or math.ceil(n_images / (SHARDS_PER_THREAD * self.threads))
        return max(batch_size, math.ceil(wanted / batch_size) * batch_size)

    def chunk_units(self, n_units: int, local_chunk: int) -> int:
        if self.config.chunk_units:
            return self.config.chunk_units
        return max(1, min(local_chunk, math.ceil(n_units / (CHUNKS_PER_THREAD * self.threads))))

    def permutation_block(self, permutations: int) -> int:
        return self.config.permutation_block or max(1, math.ceil(permutations / PERMUTATION_BLOCKS))
