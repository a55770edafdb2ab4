"""Integrity costs: verifying a cached layer's checksums, and content digests of image files.

    python benchmarks/bench_store.py                      # 20,000 images x 4,096 units, 2,000 JPEGs
    python benchmarks/bench_store.py --images 50000 --units 4096 --jpegs 5000

1. A layer (ReLU'd Gaussians, seeded, 1,000 classes) is written to a fresh activation store. Then,
   alternating in one run: opening it with its checksums verified, opening it without, and the
   measures of a cached rerun (localist, precision, ccmas, topclass) on it. Prints the median of
   each and the verification as a share of (open + measures), which is most of a cached rerun.
2. ``--jpegs`` JPEGs of about 400 x 300 px (smooth colour fields with noise, so they compress like
   photographs) are written; then, alternating: the listing digest over them (every byte read and
   hashed, the content identity of a data set) and decoding each with Pillow (what any extraction
   does). Prints the time per image of each. Both read from the page cache (the files were just
   written); a cold disk adds its read time to both alike.
3. A whole cached rerun through ``run_spec`` (a synthetic data set of ``--images`` items and a
   one-layer model of ``--units`` units, the four measures, the default report), timing the
   store's verification inside it (every ``verify_file`` call); prints both and the share.
4. Raw hash throughput on 64 MiB: xxh3-128 (used), blake2b and sha256, for the record.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import xxhash

import selectivity_eval as se
from selectivity_eval.core.spec.loader import validate_spec
from selectivity_eval.core.study.run import run_spec
from selectivity_eval.core.measures.compute import as_activation_tensor, compute_layer
from selectivity_eval.core.registry.manager import get_registry
from selectivity_eval.core.statistics.labels import Labels
from selectivity_eval.core.store import activation_store
from selectivity_eval.core.store.activation_store import ActivationStore
from selectivity_eval.plugins.datasets.image_files import Item, listing_sha256, read_rgb

MEASURES = ("localist", "precision", "ccmas", "topclass")


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def store_verification(root: Path, n_images: int, n_units: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    store = ActivationStore(root / "activations")
    layer = store.create("layer", "bench", n_images, n_units)
    for start in range(0, n_images, 4096):
        stop = min(start + 4096, n_images)
        layer.values[start:stop] = np.maximum(rng.standard_normal((stop - start, n_units), dtype=np.float32), 0)
    layer.readable[:] = True
    store.finish(layer, {"layer": "layer", "module": "bench"}, [])
    del layer
    labels_array = np.arange(n_images) % 1000
    registry = get_registry()
    measures = [(registry.get("measure", name)({}), name) for name in MEASURES]
    labels = Labels.from_array(labels_array, torch.device("cpu"))

    def measures_on_stored() -> None:
        stored = store.complete("layer", "bench", verify=False)
        compute_layer(as_activation_tensor(stored.values, torch.device("cpu")), labels, measures)

    verified, unverified, measured = [], [], []
    for _ in range(repeats):
        verified.append(timed(lambda: store.complete("layer", "bench")))
        unverified.append(timed(lambda: store.complete("layer", "bench", verify=False)))
        measured.append(timed(measures_on_stored))
    t_verified, t_plain, t_measures = (statistics.median(times) for times in (verified, unverified, measured))
    size = n_images * n_units * 4 / 2**20
    cost = t_verified - t_plain
    print(
        f"store {n_images} x {n_units} ({size:,.0f} MiB): open verified {t_verified:.3f} s, unverified {t_plain:.3f} s, "
        f"open + measures {t_measures:.3f} s; verification {cost:.3f} s = {100 * cost / t_measures:.1f}% of it"
    )


def jpeg_digests(root: Path, count: int, repeats: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    folder = root / "jpegs"
    folder.mkdir()
    y, x = np.mgrid[0:300, 0:400]
    items = []
    for index in range(count):
        phase = rng.uniform(0, 6.3, 3)
        field = np.stack([np.sin(x / (20 + 7 * c) + y / (31 + 5 * c) + phase[c]) for c in range(3)], -1)
        pixels = np.clip(127 + 90 * field + rng.normal(0, 12, field.shape), 0, 255).astype(np.uint8)
        path = folder / f"{index:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        items.append(Item(path.name, str(path), index % 10))
    mean_kib = sum(Path(item.path).stat().st_size for item in items) / count / 1024
    digests, decodes = [], []
    for _ in range(repeats):
        digests.append(timed(lambda: listing_sha256(items)))
        decodes.append(timed(lambda: [read_rgb(item.path) for item in items]))
    t_digest, t_decode = statistics.median(digests), statistics.median(decodes)
    print(
        f"{count} JPEGs of 400 x 300 px ({mean_kib:.0f} KiB on average): content digest {1e6 * t_digest / count:.0f} us "
        f"per image, Pillow decode {1e6 * t_decode / count:.0f} us per image ({100 * t_digest / t_decode:.1f}% of it)"
    )


class NoiseImages(se.DatasetSource):
    """Seeded random 3 x 8 x 8 images in 1,000 classes."""

    name = "bench-noise"

    def load(self, *, seed, transform=None):
        rng = np.random.default_rng(seed)
        labels = np.arange(BENCH_IMAGES) % 1000
        images = torch.from_numpy(rng.standard_normal((BENCH_IMAGES, 3, 8, 8), dtype=np.float32))
        return se.LoadedDataset(
            dataset=torch.utils.data.TensorDataset(images, torch.from_numpy(labels)),
            labels=labels,
            class_names=[str(c) for c in range(1000)],
            identity={"n": BENCH_IMAGES, "seed": seed},
        )


class WideLayer(se.ModelSource):
    """One seeded linear layer of ``--units`` units (and a 1,000-class head) on 3 x 8 x 8 images."""

    name = "bench-wide"

    def load(self, *, seed):
        torch.manual_seed(seed)
        module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, BENCH_UNITS), torch.nn.ReLU(),
                                     torch.nn.Linear(BENCH_UNITS, 1000))
        return se.LoadedModel(module=module, aliases={"wide": "1"}, identity={"seed": seed, "units": BENCH_UNITS})


class BenchPlugin:
    @se.hookimpl
    def register_models(self, register):
        register(WideLayer)

    @se.hookimpl
    def register_datasets(self, register):
        register(NoiseImages)


BENCH_IMAGES, BENCH_UNITS = 0, 0


def cached_rerun(root: Path, n_images: int, n_units: int, repeats: int) -> None:
    global BENCH_IMAGES, BENCH_UNITS
    BENCH_IMAGES, BENCH_UNITS = n_images, n_units
    with se.plugin_registered(BenchPlugin(), name="bench-store"):
        spec = validate_spec({
            "model": "bench-wide", "dataset": "bench-noise", "layers": [{"name": "wide", "relu": True}],
            "measures": list(MEASURES), "batch_size": 512, "device": "cpu", "output": str(root / "run"),
        })
        run_spec(spec)  # fills the store
        spent = []
        real_verify = activation_store.verify_file

        def timed_verify(*args, **kwargs):
            started = time.perf_counter()
            try:
                return real_verify(*args, **kwargs)
            finally:
                spent.append(time.perf_counter() - started)

        activation_store.verify_file = timed_verify
        reruns, verifying = [], []
        try:
            for _ in range(repeats):
                spent.clear()
                reruns.append(timed(lambda: run_spec(spec)))
                verifying.append(sum(spent))
        finally:
            activation_store.verify_file = real_verify
    shares = [v / r for v, r in zip(verifying, reruns)]
    print(
        f"cached rerun, {n_images} x {n_units} layer, default report: {statistics.median(reruns):.2f} s, of which "
        f"verifying the store {statistics.median(verifying):.3f} s ({100 * statistics.median(shares):.1f}%, "
        f"highest {100 * max(shares):.1f}%)"
    )


def hash_throughput() -> None:
    data = memoryview(np.random.default_rng(2).integers(0, 255, 64 * 2**20, dtype=np.uint8))
    for name, function in (
        ("xxh3-128", xxhash.xxh3_128_hexdigest),
        ("blake2b", lambda b: hashlib.blake2b(b).hexdigest()),
        ("sha256", lambda b: hashlib.sha256(b).hexdigest()),
    ):
        seconds = statistics.median(timed(lambda: function(data)) for _ in range(3))
        print(f"{name:9s} {64 / 1024 / seconds:6.2f} GiB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--units", type=int, default=4096)
    parser.add_argument("--jpegs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as directory:
        store_verification(Path(directory), args.images, args.units, args.repeats)
        jpeg_digests(Path(directory), args.jpegs, args.repeats)
        cached_rerun(Path(directory), args.images, args.units, args.repeats)
    hash_throughput()


if __name__ == "__main__":
    main()
