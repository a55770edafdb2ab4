"""The bench_measures.py matrix measured in process and on a LocalCluster of dask workers, side by side.

    python benchmarks/bench_dask.py                          # 50,000 images x 4,096 units, 1,000 classes, 2 workers
    python benchmarks/bench_dask.py --units 512 --workers 2  # a quicker look
    python benchmarks/bench_dask.py --permutations 20        # chance levels too, shufflings split across workers

The matrix (ReLU'd Gaussians, seeded) is written once as a layer's ``values.npy``, as the activation
store holds it. In process, the four measures run on its memory map, as a run's measure step does;
on dask, the same step runs through the dask executor: tasks over chunks of units whose workers
read the file by path. Prints both times, the cluster's start-up (not in its time), whether every
result column is identical, and the peak resident memory of each process: this one (the client,
which in a LocalCluster also hosts the scheduler and the nannies) and each worker, sampled every
few milliseconds with psutil, in all and above the process's memory before the step.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_measures import FOUR, relu_gaussian  # noqa: E402
from selectivity_eval.core.measures.compute import as_activation_tensor, compute_layer, resolve_measures  # noqa: E402
from selectivity_eval.core.cli.progress import Reporter  # noqa: E402
from selectivity_eval.core.statistics.labels import Labels  # noqa: E402
from selectivity_eval.schemas.spec import RunSpec  # noqa: E402

MiB = 2**20


class PeakMemory:
    """Peak resident memory of several processes, sampled on a thread while the block runs."""

    def __init__(self, pids: dict[str, int]):
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.before = {name: p.memory_info().rss for name, p in self.processes.items()}
        self.peak = dict(self.before)

    def _sample(self):
        for name, process in self.processes.items():
            try:
                self.peak[name] = max(self.peak[name], process.memory_info().rss)
            except psutil.Error:
                pass

    def _loop(self):
        while not self._stop.is_set():
            self._sample()
            time.sleep(0.002)

    def __enter__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    def lines(self) -> list[str]:
        lines = []
        for name in self.processes:
            peak, before = self.peak[name] / MiB, self.before[name] / MiB
            above = peak - before
            lines.append(f"    {name:<10} peak {peak:8,.0f} MiB, {above:8,.0f} MiB above its {before:,.0f} MiB before")
        return lines


def identical(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> list[str]:
    """Columns that differ (NaN equal to NaN)."""
    differing = [column for column in first.keys() | second.keys() if column not in first or column not in second]
    for column in first.keys() & second.keys():
        a, b = first[column], second[column]
        same = a.shape == b.shape and (
            np.array_equal(a, b, equal_nan=True) if a.dtype.kind == "f" else np.array_equal(a, b)
        )
        if not same:
            differing.append(column)
    return sorted(differing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-class", type=int, default=50)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--units", type=int, default=4096)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--chunk-units", type=int, default=None, help="units per dask task (default: the executor's)")
    parser.add_argument("--permutations", type=int, default=0, help="label shufflings for chance levels (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, alternating; times are medians")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch threads in process (default: torch's)")
    args = parser.parse_args()

    from selectivity_eval.core.distributed.dask_executor import DaskExecutor
    from selectivity_eval.core.study.steps import measure_step

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    load = os.getloadavg()
    n_images = args.images_per_class * args.classes
    labels_array = np.random.default_rng(args.seed + 1).permutation(
        np.repeat(np.arange(args.classes), args.images_per_class)
    )
    scratch = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    path = scratch / "values.npy"
    values = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n_images, args.units))
    values[:] = relu_gaussian(n_images, args.units, args.seed)
    values.flush()
    del values
    matrix = np.load(path, mmap_mode="c")
    print(
        f"matrix: {n_images:,} images x {args.units:,} units float32 ({matrix.nbytes / MiB:,.0f} MiB) in {path}, "
        f"{args.classes:,} classes of {args.images_per_class}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads in process; {psutil.cpu_count()} CPUs"
    )
    executor_block = {
        "kind": "dask",
        "local_cluster": {"workers": args.workers, "threads_per_worker": args.threads_per_worker},
    }
    if args.chunk_units:
        executor_block["chunk_units"] = args.chunk_units
    spec = RunSpec.model_validate(
        {
            "model": "digits-cnn",
            "dataset": "digits",
            "layers": ["fc2"],
            "measures": FOUR,
            "device": "cpu",
            "executor": executor_block,
            **({"chance": {"permutations": args.permutations}} if args.permutations else {}),
        }
    )
    measures = [(m, m.name) for m in resolve_measures(FOUR, None)]
    plugin_of = {label: label for _, label in measures}
    labels = Labels.from_array(labels_array)
    compute_layer(
        as_activation_tensor(np.random.default_rng(0).random((64, 8))), Labels.from_array(np.arange(64) % 4), measures
    )

    quiet = Reporter(quiet=True)
    local_memory = PeakMemory({"in-process": psutil.Process().pid})
    times_local, times_dask = [], []

    def in_process():
        with local_memory:
            started = time.perf_counter()
            result = measure_step(spec, {"layer": matrix}, labels, measures, plugin_of, torch.device("cpu"), quiet)
            times_local.append(time.perf_counter() - started)
        return result

    local = in_process()
    started = time.perf_counter()
    executor = DaskExecutor.open(spec.executor)  # the LocalCluster a run with this executor block starts
    client = executor.client
    client.run(lambda: __import__("selectivity_eval.core.distributed.dask_tasks"))  # workers import torch and the package
    t_start = time.perf_counter() - started
    pids = {"client": psutil.Process().pid}
    pids.update({f"worker {i}": pid for i, pid in enumerate(client.run(lambda: __import__("os").getpid()).values())})
    try:
        from selectivity_eval.core.distributed.dask_measures import measure_on_dask

        dask_memory = PeakMemory(pids)
        for repeat in range(args.repeat):
            if repeat:
                in_process()
            with dask_memory:
                started = time.perf_counter()
                on_dask = measure_on_dask(
                    executor, spec, {"layer": matrix}, labels, measures, plugin_of, None, "measures"
                )
                times_dask.append(time.perf_counter() - started)
    finally:
        executor.close()
        shutil.rmtree(scratch, ignore_errors=True)

    differing = identical(local.results["layer"], on_dask.results["layer"])
    t_local, t_dask = statistics.median(times_local), statistics.median(times_dask)
    print(
        f"load average before: {load[0]:.2f}; runs of each, alternating: {args.repeat}; "
        f"in process {', '.join(f'{t:.3f}' for t in times_local)} s; dask {', '.join(f'{t:.3f}' for t in times_dask)} s"
    )
    what = "four measures" + (f" + {args.permutations} shufflings" if args.permutations else "")
    print(f"in process ({torch.get_num_threads()} threads), {what}, median:  {t_local:8.3f} s")
    tasks = {kind: executor.stats[f"{kind}_tasks"] // args.repeat for kind in ("measure", "chance")}
    cluster_name = f"dask LocalCluster ({args.workers} workers x {args.threads_per_worker} thread)"
    print(
        f"{cluster_name}, {what}, median: {t_dask:8.3f} s ({tasks['measure']} measure tasks, "
        f"{tasks['chance']} chance tasks per run; cluster start-up {t_start:.1f} s, not included)"
    )
    print(f"overhead: {t_dask - t_local:+.3f} s = {t_dask / t_local:.2f}x the in-process time")
    print(
        f"identical results: {'yes, every column' if not differing else 'NO: ' + ', '.join(differing)}"
        f" ({len(local.results['layer'])} columns x {args.units:,} units)"
    )
    print("peak resident memory, in process:")
    print("\n".join(local_memory.lines()))
    print("peak resident memory, on dask:")
    print("\n".join(dask_memory.lines()))
    if differing:
        sys.exit(1)


if __name__ == "__main__":
    main()
