"""The paper's study on a generated ImageNet-validation folder: the layout and the spec.

Shared by the study tests (tests/test_study.py) and ``benchmarks/bench_study.py``, which puts the
repository root on its path to import this module (benchmarks/ is a folder of scripts, not a
package). ``imagenet_val_layout`` writes, seeded and cached, a flat folder of
``ILSVRC2012_val_NNNNNNNN.JPEG`` files and a devkit beside it (``data/map_clsloc.txt``, the
devkit's own class numbering, and ``data/ILSVRC2012_validation_ground_truth.txt``, one
ILSVRC2012_ID per image), which the ``imagenet-val`` plugin reads as it reads ImageNet's.
``study_spec`` is the paper's spec over it: AlexNet with random weights, conv1-conv5 and
fc6-fc8, the four measures and detection, chance levels, the report and AM.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from selectivity_eval.plugins.datasets.image_files import imagenet_wnids

LAYOUT_VERSION = 1
DONE = "layout.json"
PAPER_LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
MEASURES = ["localist", {"name": "precision", "top_n": 100}, "ccmas", "topclass", "detection"]


def devkit_numbering(seed: int) -> list[int]:
    """ILSVRC2012_ID of each torchvision class index: a seeded shuffle, so that reading the ground
    truth without the devkit's mapping would give wrong labels (as with the real devkit)."""
    return [int(number) for number in np.random.default_rng(seed).permutation(1000) + 1]


def class_indices(n_classes: int) -> list[int]:
    """``n_classes`` torchvision class indices spread evenly over the 1,000."""
    return [int(index) for index in np.linspace(0, 999, n_classes).round()]


def _image(rng: np.random.Generator, side_range: tuple[int, int], tint: np.ndarray) -> Image.Image:
    """A smooth random image with some grain, so its JPEG is about as large and slow to decode as a photo's."""
    width, height = (int(v) for v in rng.integers(side_range[0], side_range[1] + 1, size=2))
    coarse = rng.integers(0, 256, size=(6, 6, 3)).astype(np.float32) * 0.6 + tint * 0.4
    image = Image.fromarray(coarse.clip(0, 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    grain = rng.normal(0, 12, size=(height, width, 3))
    return Image.fromarray((np.asarray(image, np.float32) + grain).clip(0, 255).astype(np.uint8))


def imagenet_val_layout(
    cache: Path,
    n_images: int,
    n_classes: int,
    *,
    seed: int = 0,
    sides: tuple[int, int] = (300, 500),
) -> tuple[Path, Path]:
    """(image folder, devkit folder) of a generated validation set, made once per setting under ``cache``.

    ``n_images`` images, as evenly over ``n_classes`` classes as they divide, in a seeded random
    order (as ImageNet's validation images are), each a JPEG with sides drawn from ``sides``. The
    folder is written under a temporary name and renamed when complete, so an interrupted
    generation is never reused; ``layout.json`` records the settings.
    """
    settings = {"version": LAYOUT_VERSION, "images": n_images, "classes": n_classes, "seed": seed, "sides": list(sides)}
    name = f"imagenet-val-{n_images}x{n_classes}-s{seed}-{sides[0]}to{sides[1]}"
    target = Path(cache) / name
    if (target / DONE).is_file() and json.loads((target / DONE).read_text()) == settings:
        return target / "val", target / "devkit"
    rng = np.random.default_rng(seed)
    classes = class_indices(n_classes)
    labels = np.array([classes[i % n_classes] for i in range(n_images)])[rng.permutation(n_images)]
    tints = rng.integers(0, 256, size=(1000, 3)).astype(np.float32)
    temporary = Path(cache) / f".{name}.{os.getpid()}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    (temporary / "val").mkdir(parents=True)
    data = temporary / "devkit" / "data"
    data.mkdir(parents=True)
    for number, label in enumerate(labels, 1):
        _image(rng, sides, tints[label]).save(temporary / "val" / f"ILSVRC2012_val_{number:08d}.JPEG", quality=90)
    numbering = devkit_numbering(seed)
    wnids = imagenet_wnids()
    (data / "map_clsloc.txt").write_text(
        "".join(f"{wnid} {numbering[index]} class_{index}\n" for index, wnid in enumerate(wnids))
    )
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{numbering[label]}\n" for label in labels))
    (temporary / DONE).write_text(json.dumps(settings))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(temporary, target)
    return target / "val", target / "devkit"


def study_spec(
    images: Path,
    devkit: Path,
    output: Path,
    *,
    permutations: int = 100,
    am_units: int = 16,
    am_steps: int = 256,
    am_size: int | None = None,
    workers: int | None = None,
    batch_size: int = 256,
    report: bool | dict = True,
) -> dict[str, Any]:
    """The paper's study over a layout: AlexNet (random weights), its eight layers by their paper names
    (conv maps max-pooled after the ReLU, fc6 and fc7 after the ReLU, fc8's logits), the four
    measures and detection, ``permutations`` label shufflings (0: none), the report, and AM on the
    ``am_units`` most CCMAS-selective units of conv5 and fc8 (``am_units=0``: no AM)."""
    dataset: dict[str, Any] = {"plugin": "imagenet-val", "root": str(images), "devkit": str(devkit)}
    if workers is not None:
        dataset["workers"] = workers
    spec: dict[str, Any] = {
        "model": {"plugin": "torchvision", "arch": "alexnet", "weights": "none"},
        "dataset": dataset,
        "layers": [{"name": name, "pool": "max", "relu": name != "fc8"} for name in PAPER_LAYERS],
        "measures": MEASURES,
        "report": report,
        "output": str(output),
        "device": "cpu",
        "batch_size": batch_size,
        "seed": 0,
    }
    if permutations:
        spec["chance"] = {"permutations": permutations, "seed": 0}
    if am_units:
        am: dict[str, Any] = {
            "method": "gradient-ascent",
            "layers": ["conv5", "fc8"],
            "units": {"top": am_units, "by": "ccmas"},
            "steps": am_steps,
        }
        if am_size is not None:
            am["image_size"] = am_size
        spec["am"] = am
    return spec
