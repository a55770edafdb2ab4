"""Chance baselines: label shufflings at the paper's scale, per measure, and the study they add up to.

    python benchmarks/bench_chance.py                 # 50,000 images x 4,096 units, 1,000 classes
    python benchmarks/bench_chance.py --units 512 --shufflings 2 --small-units 64

Prints, from one run, for each of the five measures alone and for all five together: the seconds
one shuffling adds (``(t(1 + n shufflings) - t(1 shuffling)) / n``) and the fixed cost of a chunk's
label-free work (``t(1 shuffling)`` less one shuffling), on a 50,000-image layer of ``--units``
units (fc6's shape: the compiled statistics) and, for all five, of ``--small-units`` units (a conv
layer's shape: torch's statistics under the default ``SELECTIVITY_EVAL_KERNELS=auto``). Then the
projected chance computation of the paper's study: AlexNet's eight layers with ``--permutations``
shufflings each, every layer scaled per unit from the measured layer of its kind. Each time is
the fastest of ``--repeats`` runs. Each measure's
chance columns are its default ones (headline value columns); ``--all-columns`` takes every value
and count column instead.

Last, where the compiled statistics run, the shufflings' class pass against the memory it reads: one
shuffling's pass over the fc6-like layer into new tables and into the same tables again (as a run's
shufflings do), beside a pass that only reads the same rows in the same order (each class's images
in turn, every unit summed) with no other work, and the same in image order. Their ratio says how
much of the pass is reading memory, which no rewrite of its arithmetic saves.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_measures import relu_gaussian  # noqa: E402
from selectivity_eval.core.measures.base import Column, Role  # noqa: E402
from selectivity_eval.core.measures.chance import null_distribution  # noqa: E402
from selectivity_eval.core.measures.compute import resolve_measures  # noqa: E402
from selectivity_eval.core.statistics.backend import COMPILED_MIN_ACTIVATIONS, compiled_kernels  # noqa: E402
from selectivity_eval.core.statistics.labels import Labels  # noqa: E402

FIVE = ["localist", "precision", "ccmas", "topclass", "detection"]
ALEXNET = {
    "conv1": 64, "conv2": 192, "conv3": 384, "conv4": 256, "conv5": 256, "fc6": 4096, "fc7": 4096, "fc8": 1000,
}


def chance_columns(measures, every: bool) -> list[str]:
    """Each measure's headline value and count columns (the default), or all of them."""
    return [
        column
        for measure, label in measures
        for (column, kind), role in zip(measure.output_columns(label).items(), measure.output_roles(label).values())
        if kind in (Column.VALUE, Column.COUNT) and (every or role is Role.HEADLINE)
    ]


def cost(matrix: torch.Tensor, labels: Labels, names: list[str], shufflings: int, every: bool, repeats: int = 1):
    """(seconds per shuffling, fixed seconds) of these measures' null distribution; each time the
    fastest of ``repeats`` runs, the least disturbed by other jobs on a shared machine."""
    measures = [(m, m.name) for m in resolve_measures(names, None)]
    columns = chance_columns(measures, every)
    times = []
    for permutations in (1, 1 + shufflings):
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            null_distribution(matrix, labels, measures, columns, permutations=permutations, seed=0)
            runs.append(time.perf_counter() - started)
        times.append(min(runs))
    per = (times[1] - times[0]) / shufflings
    return per, max(0.0, times[0] - per)


@numba.njit(parallel=True, nogil=True, boundscheck=False)
def _read_rows(values, stride, width, order, starts, block, out):  # pragma: no cover - compiled
    """Sum every row a class pass reads, in its order and blocks of units: its memory traffic alone."""
    for c in numba.prange(starts.shape[0] - 1):
        total = np.zeros(block)
        for j0 in range(0, width, block):
            w = min(width - j0, block)
            p, end = starts[c], starts[c + 1]
            while p + 3 < end:  # four rows a step, as the class pass reads them
                a, b = order[p] * stride + j0, order[p + 1] * stride + j0
                d, e = order[p + 2] * stride + j0, order[p + 3] * stride + j0
                for j in range(w):
                    total[j] += (np.float64(values[a + j]) + np.float64(values[b + j])) + (
                        np.float64(values[d + j]) + np.float64(values[e + j]))
                p += 4
            while p < end:
                a = order[p] * stride + j0
                for j in range(w):
                    total[j] += np.float64(values[a + j])
                p += 1
        out[c] = total.sum()


def read_floor(matrix: torch.Tensor, labels: Labels, repeats: int) -> None:
    """Print one shuffling's class pass beside reads of the same rows in its order and in image order."""
    from selectivity_eval.core.statistics import kernels

    shuffled = labels.shuffled(torch.Generator().manual_seed(0))
    order, starts = shuffled.grouped
    values, stride = kernels._rows(matrix)
    in_order = np.arange(len(order), dtype=order.dtype)
    out = np.empty(len(starts) - 1)
    tables: list = []  # filled again by every pass, as a run's shufflings do
    block = kernels.UNITS_PER_BLOCK
    passes = {
        "class pass, new tables": lambda: kernels.class_extremes_and_sums_of(matrix, [shuffled]),
        "class pass, its tables again": lambda: kernels.class_extremes_and_sums_of(matrix, [shuffled], tables),
        "reading its rows in its order": lambda: kernels._run(
            _read_rows, values, stride, matrix.shape[1], order, starts, block, out),
        "reading the rows in image order": lambda: kernels._run(
            _read_rows, values, stride, matrix.shape[1], in_order, starts, block, out),
    }
    times: dict[str, list[float]] = {name: [] for name in passes}
    for round_ in range(1 + repeats):  # in turns, so that a slow spell of the machine slows each alike
        for name, run in passes.items():
            started = time.perf_counter()
            run()
            if round_:  # the first round compiles and touches the memory
                times[name].append(time.perf_counter() - started)
    times = {name: min(seconds) for name, seconds in times.items()}
    gigabytes = matrix.numel() * matrix.element_size() / 1e9
    base = times["reading its rows in its order"]
    print(f"\nthe shufflings' class pass against its reads ({tuple(matrix.shape)}, fastest of {repeats} turns):")
    for name, seconds in times.items():
        print(f"{name:>32}  {seconds * 1000:7.1f} ms  {gigabytes / seconds:5.1f} GB/s  {seconds / base:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-class", type=int, default=50)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--units", type=int, default=4096)
    parser.add_argument("--small-units", type=int, default=256)
    parser.add_argument("--shufflings", type=int, default=10, help="shufflings timed beyond the first")
    parser.add_argument("--permutations", type=int, default=100, help="shufflings of the projected study")
    parser.add_argument("--repeats", type=int, default=2, help="each time is the fastest of this many runs")
    parser.add_argument("--all-columns", action="store_true")
    args = parser.parse_args()
    n_images = args.images_per_class * args.classes
    labels = Labels.from_array(
        np.random.default_rng(1).permutation(np.repeat(np.arange(args.classes), args.images_per_class))
    )
    small = torch.from_numpy(relu_gaussian(n_images, args.small_units, 1))
    matrix = torch.from_numpy(relu_gaussian(n_images, args.units, 0))
    print(
        f"{n_images:,} images, {args.classes} classes, {torch.get_num_threads()} threads; "
        f"{args.shufflings} shufflings timed beyond the first, fastest of {args.repeats} runs"
    )
    cost(small[:, :8], labels, FIVE, 1, args.all_columns)  # loads the plugins
    if compiled_kernels(matrix) is not None:
        compiled_kernels(matrix).warm_up()  # and the compiled statistics, before any timing
    rows = {}
    for name in FIVE:
        rows[name] = cost(matrix, labels, [name], args.shufflings, args.all_columns, args.repeats)
    rows["all five"] = cost(matrix, labels, FIVE, args.shufflings, args.all_columns, args.repeats)
    print(f"\n{n_images:,} x {args.units} (one layer like fc6), each measure alone with the class statistics:")
    print(f"{'measures':>10}  {'s per shuffling':>15}  {'fixed s (label-free)':>20}")
    for name, (per, fixed) in rows.items():
        print(f"{name:>10}  {per:15.3f}  {fixed:20.3f}")
    small_per, small_fixed = cost(small, labels, FIVE, args.shufflings, args.all_columns, args.repeats)
    print(f"{n_images:,} x {args.small_units} (a conv layer), all five: {small_per:.3f} s per shuffling, {small_fixed:.3f} s fixed")

    per, fixed = rows["all five"]
    total = 0.0
    for layer, units in ALEXNET.items():
        compiled = n_images * units >= COMPILED_MIN_ACTIVATIONS
        unit_per, unit_fixed = (per / args.units, fixed / args.units) if compiled else (
            small_per / args.small_units, small_fixed / args.small_units
        )
        total += units * (unit_fixed + args.permutations * unit_per)
    print(
        f"\nprojected study (AlexNet's 8 layers, {sum(ALEXNET.values()):,} units, five measures, "
        f"{args.permutations} shufflings): {total:.0f} s = {total / 60:.1f} min"
    )
    if compiled_kernels(matrix) is not None:
        read_floor(matrix, labels, max(3, args.repeats))


if __name__ == "__main__":
    main()
