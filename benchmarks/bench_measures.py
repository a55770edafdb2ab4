"""All four measures on an ImageNet-validation-shaped layer, side by side with per-unit references.

    python benchmarks/bench_measures.py                    # 50,000 images x 4,096 units, 1,000 classes
    python benchmarks/bench_measures.py --units 512        # a quicker look

Prints, measured in this one run: the time of all four measures (the median of ``--repeats`` runs),
and the same with torch alone instead of the compiled statistics; the time of per-unit numpy
references (medians too, timed on a sample of units and extrapolated, as it says);
their ratios; the time of one column-sum pass over the same matrix (also a median); and the peak
resident memory during the first run of the measures (the kernel's high-water mark), against the
matrix's size. Activations are ReLU'd Gaussians, seeded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import selectivity_eval as se  # noqa: E402
from selectivity_eval.core.statistics.backend import KERNELS_VARIABLE  # noqa: E402
from numpy_reference import per_unit_class_loop, per_unit_vectorised  # noqa: E402

PAGE = 4096
FOUR = ["localist", "precision", "ccmas", "topclass"]


def resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


def high_water_mark() -> int:
    """The kernel's record of this process's peak resident memory (VmHWM), in bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


class PeakMemory:
    """Peak resident memory while the block runs.

    The kernel's high-water mark, reset on entry by writing 5 to /proc/self/clear_refs, so that no
    sampling thread competes with the measures for the cores; where that file cannot be written, a
    thread samples the resident memory every millisecond instead.
    """

    def __enter__(self):
        self.peak = resident_bytes()
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self._thread = None
        except OSError:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, resident_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc):
        if self._thread is None:
            self.peak = max(self.peak, high_water_mark())
        else:
            self._stop.set()
            self._thread.join()
        self.peak = max(self.peak, resident_bytes())


def relu_gaussian(n_images: int, n_units: int, seed: int) -> np.ndarray:
    """Generated in blocks of rows, so making the matrix needs no second copy of it."""
    rng = np.random.default_rng(seed)
    matrix = np.empty((n_images, n_units), dtype=np.float32)
    for start in range(0, n_images, 1024):
        block = matrix[start : start + 1024]
        block[...] = rng.standard_normal(block.shape, dtype=np.float32)
        np.maximum(block, 0, out=block)
    return matrix


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def median_timed(repeats: int, function, *args):
    """The result of the first run and the median time of ``repeats`` runs."""
    result, first = timed(function, *args)
    times = [first] + [timed(function, *args)[1] for _ in range(repeats - 1)]
    return result, statistics.median(times)


def check_against(reference_rows, ours, units) -> int:
    mismatches = 0
    for row, unit in zip(reference_rows, units):
        for column, expected in row.items():
            got = ours[column][unit]
            same = np.isclose(got, expected, rtol=1e-5, atol=1e-6) if isinstance(expected, float) else got == expected
            mismatches += not bool(same)
    return mismatches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-class", type=int, default=50)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--units", type=int, default=4096)
    parser.add_argument("--sample", type=int, default=256, help="units timed for the per-unit references")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the measures and the column sum; medians reported")
    args = parser.parse_args()

    n_images = args.images_per_class * args.classes
    os.environ[KERNELS_VARIABLE] = "compiled"
    se.compute_measures(np.random.default_rng(0).random((400, 8), dtype=np.float32), np.arange(400) % 200)
    os.environ[KERNELS_VARIABLE] = "auto"  # the default; the plugins and the compiled kernels are loaded now
    runtime = resident_bytes()
    matrix = relu_gaussian(n_images, args.units, args.seed)
    labels = np.random.default_rng(args.seed + 1).permutation(np.repeat(np.arange(args.classes), args.images_per_class))
    matrix_bytes = matrix.nbytes
    print(
        f"matrix: {n_images:,} images x {args.units:,} units float32 ({matrix_bytes / 2**20:,.0f} MiB), "
        f"{args.classes:,} classes of {args.images_per_class}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {args.device}"
    )

    before = resident_bytes()
    with PeakMemory() as memory:
        ours, first = timed(se.compute_measures, matrix, labels, FOUR, device=args.device)
    runs = [first] + [timed(se.compute_measures, matrix, labels, FOUR, device=args.device)[1] for _ in range(args.repeats - 1)]
    t_ours = statistics.median(runs)
    os.environ[KERNELS_VARIABLE] = "torch"
    t_torch = statistics.median(
        timed(se.compute_measures, matrix, labels, FOUR, device=args.device)[1] for _ in range(args.repeats)
    )
    os.environ[KERNELS_VARIABLE] = "auto"
    _, t_detection = timed(se.compute_measures, matrix, labels, ["detection"], device=args.device)
    t_colsum_numpy = statistics.median(timed(matrix.sum, axis=0)[1] for _ in range(args.repeats))
    t_colsum_torch = statistics.median(timed(torch.from_numpy(matrix).sum, 0)[1] for _ in range(args.repeats))
    t_colsum = min(t_colsum_numpy, t_colsum_torch)

    sample = np.random.default_rng(args.seed + 2).choice(args.units, min(args.sample, args.units), replace=False)
    scale = args.units / len(sample)
    loop_rows, t_loop = median_timed(args.repeats, per_unit_class_loop, matrix, labels, sample)
    vec_rows, t_vec = median_timed(args.repeats, per_unit_vectorised, matrix, labels, sample)
    mismatches = check_against(loop_rows, ours, sample) + check_against(vec_rows, ours, sample)

    print(
        f"all four measures, {args.units:,} units:        {t_ours:8.3f} s "
        f"(median of {len(runs)} runs, {min(runs):.3f}-{max(runs):.3f} s)"
    )
    print(
        f"the same in torch alone ({KERNELS_VARIABLE}=torch): {t_torch:8.3f} s "
        f"-> the compiled statistics make them {t_torch / t_ours:.1f}x faster"
    )
    print(
        f"per-unit numpy, class loop (authors' style):  {t_loop * scale:8.3f} s "
        f"(median of {args.repeats}, timed on {len(sample)} units, x{scale:.0f})  -> ours is {t_loop * scale / t_ours:7.1f}x faster"
    )
    print(
        f"per-unit numpy, vectorised per unit:          {t_vec * scale:8.3f} s "
        f"(median of {args.repeats}, timed on {len(sample)} units, x{scale:.0f})  -> ours is {t_vec * scale / t_ours:7.1f}x faster"
    )
    print(
        f"one column-sum pass (numpy {t_colsum_numpy:.3f} s, torch {t_colsum_torch:.3f} s, medians of {args.repeats}): "
        f"ours takes {t_ours / t_colsum:.1f}x the faster"
    )
    print(
        f"peak resident memory while measuring: {memory.peak / 2**20:,.0f} MiB in all; "
        f"{(memory.peak - runtime) / 2**20:,.0f} MiB above the {runtime / 2**20:,.0f} MiB of the Python/torch runtime "
        f"= {(memory.peak - runtime) / matrix_bytes:.2f}x the matrix "
        f"(the measures' own working memory: {(memory.peak - before) / 2**20:,.0f} MiB)"
    )
    print(f"reference agreement on the sampled units: {mismatches} mismatching cells")
    print(f"detection (auroc, max_informedness, ...):     {t_detection:8.3f} s = {t_detection / t_ours:.1f}x the four measures")


if __name__ == "__main__":
    main()
