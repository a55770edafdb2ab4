"""Chance baselines: 100 label shufflings of the four measures against 100 unshuffled runs.

    python benchmarks/bench_chance.py                 # 50,000 images x 512 units, 1,000 classes
    python benchmarks/bench_chance.py --units 64 --permutations 10

Times, in one run: one computation of the four measures (median of three), and the null
distribution of all their value and count columns over the shufflings; prints the shufflings'
time against that many unshuffled computations.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import selectivity_eval as se  # noqa: E402
from bench_measures import FOUR, relu_gaussian  # noqa: E402
from selectivity_eval.core.measures.chance import null_distribution, value_columns  # noqa: E402
from selectivity_eval.core.measures.compute import resolve_measures  # noqa: E402
from selectivity_eval.core.statistics.labels import Labels  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-class", type=int, default=50)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--units", type=int, default=512)
    parser.add_argument("--permutations", type=int, default=100)
    args = parser.parse_args()
    n_images = args.images_per_class * args.classes
    matrix = relu_gaussian(n_images, args.units, 0)
    labels = np.random.default_rng(1).permutation(np.repeat(np.arange(args.classes), args.images_per_class))
    print(f"{n_images:,} images x {args.units} units, {args.classes} classes, {torch.get_num_threads()} threads")

    singles = []
    for _ in range(3):
        started = time.perf_counter()
        se.compute_measures(matrix, labels, FOUR)
        singles.append(time.perf_counter() - started)
    single = statistics.median(singles)

    measures = [(m, m.name) for m in resolve_measures(FOUR, None)]
    columns = value_columns(measures)
    started = time.perf_counter()
    null_distribution(
        torch.from_numpy(matrix), Labels.from_array(labels), measures, columns,
        permutations=args.permutations, seed=0,
    )
    shuffled = time.perf_counter() - started
    print(f"one unshuffled computation of the four measures: {single:.3f} s")
    print(f"{args.permutations} x that:                           {args.permutations * single:.3f} s")
    print(
        f"{args.permutations} shufflings ({len(columns)} columns):              {shuffled:.3f} s "
        f"= {args.permutations * single / shuffled:.2f}x faster than {args.permutations} unshuffled runs"
    )


if __name__ == "__main__":
    main()
