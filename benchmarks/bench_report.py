"""The report of an ImageNet-validation-sized study: seconds per unit card, old path against new.

    python benchmarks/bench_report.py                        # 50,000 JPEGs of 1,000 classes, AlexNet's 8 layers
    python benchmarks/bench_report.py --images 2000 --classes 100 --widths 64   # a quicker look

It takes (or generates, seeded, under ``--cache``) the validation folder of tests/study_layout.py
(JPEGs of 300-500 px with a devkit), and writes beside it a synthetic finished run of that data
set: per layer a store of ReLU'd Gaussian activations with a class effect (AlexNet's widths
conv1-fc8 by default, 1.93 GiB at 50,000 images), random values of the four measures in
units.csv and summary.json, and the spec's default report block (8 units per measure and 8
random units per layer, 9 top images, PNG). Nothing in it needs the model. Then, in this process:

- new: ``build_report`` on that run, end to end (the store is read once before, so that the
  page cache is warm for both paths), and the seconds per card of its cards; once with the
  figures drawn in this process and once per other ``--workers`` count (default: one
  worker per core), side by side, checking that every count writes the same files;
- old: the first ``--old-cards`` cards of a layer drawn as before the raster jitterplots
  (benchmarks/legacy_report.py: a scatter of every image, top images decoded in full through the
  data set), per card, and projected to 450 cards;
- the jitterplot and the top images of those same cards on the new path, apart.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests/study_layout.py
sys.path.insert(0, str(Path(__file__).resolve().parent))  # legacy_report.py

from legacy_report import old_jitterplot, old_top_images  # noqa: E402
from tests.study_layout import imagenet_val_layout  # noqa: E402

ALEXNET = {"conv1": 64, "conv2": 192, "conv3": 384, "conv4": 256, "conv5": 256, "fc6": 4096, "fc7": 4096, "fc8": 1000}
MEASURES = ["localist", "precision", "ccmas", "topclass"]
PAPER_CARDS = 450
CHUNK = 5000


class NoSteps:
    def advance(self):
        pass


def widths(spec: str) -> dict[str, int]:
    return dict(ALEXNET) if spec == "alexnet" else {name: int(spec) for name in ALEXNET}


def write_run(directory: Path, val: Path, devkit: Path, layer_widths: dict[str, int], seed: int) -> Path:
    """A finished run of the data set at ``val``/``devkit`` with synthetic activations and measures (made once)."""
    from selectivity_eval.core.registry.manager import get_registry

    done = directory / "bench.json"
    settings = {"val": str(val), "devkit": str(devkit), "widths": layer_widths, "seed": seed}
    if done.is_file() and json.loads(done.read_text()) == settings:
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    dataset = {"plugin": "imagenet-val", "root": str(val), "devkit": str(devkit)}
    data = get_registry().get("dataset", "imagenet-val")({k: v for k, v in dataset.items() if k != "plugin"}).load(seed=0)
    labels = np.asarray(data.dataset.labels)
    n = len(labels)
    rng = np.random.default_rng(seed)
    (directory / "activations").mkdir(exist_ok=True)
    files, summary, rows = {}, {}, []
    for layer, width in layer_widths.items():
        path = directory / "activations" / f"{layer}.npy"
        store = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, width))
        effect = rng.normal(0, 0.7, size=(int(labels.max()) + 1, width)).astype(np.float32)
        for start in range(0, n, CHUNK):
            part = labels[start: start + CHUNK]
            store[start: start + CHUNK] = np.maximum(rng.standard_normal((len(part), width), np.float32) + effect[part], 0)
        store.flush()
        del store
        files[layer] = f"activations/{layer}.npy"
        values = {m: rng.random(width) for m in MEASURES}
        summary[layer] = {"n_units": width, "columns": {
            m: {"kind": "value", "role": "headline", "mean": float(v.mean()), "median": float(np.median(v)),
                "max": float(v.max()), "nan_count": 0} for m, v in values.items()}}
        rows.extend([layer, unit, *(repr(float(values[m][unit])) for m in MEASURES)] for unit in range(width))
    spec = {"model": {"plugin": "torchvision", "arch": "alexnet"}, "dataset": dataset,
            "layers": list(layer_widths), "measures": [{"name": "localist"}, {"name": "precision", "top_n": 100}, {"name": "ccmas"}, {"name": "topclass"}],
            "report": {"enabled": True, "formats": ["png"], "units_per_measure": 8, "random_units": 8, "top_images": 9,
                       "seed": 0}, "output": str(directory), "seed": 0}
    (directory / "spec.resolved.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    record = {"seed": 0, "device": "cpu", "status": "finished", "timings_s": {},
              "model": {"plugin": "torchvision", "params": {"arch": "alexnet"}},
              "dataset": {"plugin": "imagenet-val", "params": {}}, "images": {"measured": n, "in_data_set": n}}
    (directory / "run.json").write_text(json.dumps(record))
    (directory / "summary.json").write_text(json.dumps(summary))
    (directory / "units.csv").write_text("\n".join(",".join(map(str, row)) for row in [["layer", "unit", *MEASURES], *rows]) + "\n")
    np.save(directory / "labels.npy", labels)
    np.save(directory / "measured.npy", np.ones(n, dtype=bool))
    (directory / "rows.json").write_text(json.dumps({"n_rows": n, "class_names": data.class_names, "activations": files}))
    done.write_text(json.dumps(settings))
    return directory


def report_digest(directory: Path) -> str:
    """One hash of report.html and every file under report/ (names and bytes)."""
    digest = hashlib.sha256()
    for path in [directory / "report.html", *sorted((directory / "report").rglob("*"))]:
        if path.is_file():
            digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def warm(run) -> None:
    """Read every layer's store once, so that both paths find it in the page cache."""
    for layer in run.layers:
        np.asarray(run.activations(layer)).sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--widths", default="alexnet", help="'alexnet' (conv1-fc8's units) or one width for all layers")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/selectivity-eval-bench"))
    parser.add_argument("--old-cards", type=int, default=4, help="cards drawn on the old path (slow)")
    parser.add_argument("--layer", default="fc6", help="the layer whose first cards are timed on both paths")
    parser.add_argument("--workers", default=None,
                        help="comma-separated worker counts for the whole report besides 1 (default: the cores)")
    args = parser.parse_args()

    from selectivity_eval.core.cli.summary_table import main_columns
    from selectivity_eval.core.report import plots
    from selectivity_eval.core.report.build import build_report
    from selectivity_eval.core.report.dataset_images import DatasetImages, top_images_grid, top_rows
    from selectivity_eval.core.report.inputs import load_finished_run
    from selectivity_eval.core.report.jitter_figure import JitterFigure
    from selectivity_eval.core.report.figure_pool import available_cores
    from selectivity_eval.core.report.unit_cards import choose_units, hash_seed, measured_classes, precision_top_ns

    val, devkit = imagenet_val_layout(args.cache, args.images, args.classes)
    layer_widths = widths(args.widths)
    name = f"report-run-{args.images}x{args.classes}-{args.widths}"
    started = time.perf_counter()
    directory = write_run(args.cache / name, val, devkit, layer_widths, seed=0)
    print(f"run: {directory} ({time.perf_counter() - started:.1f} s to make or find)")
    run = load_finished_run(directory)
    warm(run)

    counts = [1] + sorted({int(w) for w in (args.workers or str(available_cores())).split(",")} - {1})
    wholes, digests = {}, {}
    for workers in counts:
        started = time.perf_counter()
        build_report(directory, workers=workers)
        wholes[workers] = time.perf_counter() - started
        digests[workers] = report_digest(directory)
    whole = wholes[1]
    cards = len(list((directory / "report" / "units").rglob("*_jitter.png")))

    layer = args.layer if args.layer in run.layers else run.layers[0]
    units = list(choose_units(run, layer, main_columns(run.summary), 8, 8, 0))[: args.old_cards]
    class_ids, names = measured_classes(run)
    activations = run.activations(layer)
    images = DatasetImages(run)
    seed_of = {unit: hash_seed(0, run.layers.index(layer), unit) for unit in units}
    timing = {key: 0.0 for key in ("old jitter", "old top", "new jitter", "new top")}
    figure = JitterFigure(names)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        for unit in units:
            values = np.asarray(activations[:, unit], dtype=np.float64)
            top = top_rows(values, 9)
            captions = [f"{names[class_ids[i]]}: {values[i]:.3g}" for i in top]
            clock = time.perf_counter()
            drawn = old_jitterplot(values, class_ids, names, title=f"{layer}, unit {unit}", seed=seed_of[unit],
                                   top_n=precision_top_ns(run))
            plots.save(drawn, out / f"old{unit}", ["png"])
            timing["old jitter"] += time.perf_counter() - clock
            clock = time.perf_counter()
            top_images_grid(old_top_images(images.items.dataset, top), captions, out / f"old{unit}_top.png")
            timing["old top"] += time.perf_counter() - clock
            clock = time.perf_counter()
            drawn = figure.draw(values, class_ids, title=f"{layer}, unit {unit}", seed=seed_of[unit],
                                top_n=precision_top_ns(run))
            plots.save(drawn, out / f"new{unit}", ["png"])
            timing["new jitter"] += time.perf_counter() - clock
            clock = time.perf_counter()
            top_images_grid([images.tile(int(i)) for i in top], captions, out / f"new{unit}_top.png")
            timing["new top"] += time.perf_counter() - clock
    n = len(units)
    per = {key: value / n for key, value in timing.items()}
    old_card, new_card = per["old jitter"] + per["old top"], per["new jitter"] + per["new top"]
    print(f"{len(run.labels)} images, {len(np.unique(run.labels))} classes, layers "
          + ", ".join(f"{k} {v}" for k, v in layer_widths.items()))
    print(f"{n} cards of {layer}, seconds per card (cold tile cache on both paths):")
    print(f"  {'':12} {'old':>8} {'new':>8}")
    for part in ("jitter", "top"):
        print(f"  {part:12} {per['old ' + part]:8.3f} {per['new ' + part]:8.3f}")
    print(f"  {'card':12} {old_card:8.3f} {new_card:8.3f}   ({old_card / new_card:.1f}x)")
    print(f"  {PAPER_CARDS} cards   {old_card * PAPER_CARDS:8.0f} {new_card * PAPER_CARDS:8.0f}  s (projected)")
    print(f"new build_report, whole report: {whole:.1f} s for {cards} cards "
          f"({whole / max(cards, 1):.3f} s per card, figures and page included; projected {PAPER_CARDS} cards: "
          f"{whole / max(cards, 1) * PAPER_CARDS:.0f} s)")
    print(f"whole report by the number of processes drawing the figures ({available_cores()} cores):")
    for workers, seconds in wholes.items():
        print(f"  {workers} worker{'s' if workers > 1 else ' '}  {seconds:6.1f} s  ({whole / seconds:.2f}x)")
    print("  the same files for every count: " + ("yes" if len(set(digests.values())) == 1 else "NO"))


if __name__ == "__main__":
    main()
