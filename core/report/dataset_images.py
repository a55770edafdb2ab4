"""The data set's own images for unit cards, read through the data set plugin alone (no model).

``report`` loads the data set plugin named in ``spec.resolved.yaml`` with ``transform=None``,
which gives raw items (an image tensor or PIL image), checks that it is the data set the run
measured (its identity in ``run.json``), and reads only the few images the cards show. Digits
load in milliseconds; image folders are listed once and decode just those images, at reduced
size and once each (``thumbnails.py``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from selectivity_eval.core.outputs import atomic
from selectivity_eval.core.report.inputs import FinishedRun
from selectivity_eval.core.report.thumbnails import TILE, Tiles, resize_to_tile
PNG_COMPRESSION = 1  # zlib level of the report's PNGs (plots.save too): near level 6's size, several times faster
CAPTION = 12
GAP = 3


class DatasetImages:
    """Raw items of the run's data set by row; ``reason`` says why there are none when loading failed."""

    def __init__(self, run: FinishedRun):
        self.items = None
        self.reason = ""
        self.tiles = None
        try:
            self.items = _load(run)
            self.tiles = Tiles(self.items)
        except Exception as error:  # the report is still useful without the pictures
            self.reason = f"{type(error).__name__}: {error}"

    def tile(self, row: int):
        """The card tile of data set row ``row`` (at most ``TILE`` px a side; made once), or None."""
        return None if self.tiles is None else self.tiles(row)

    def image(self, row: int):
        """The PIL image of data set row ``row`` (RGB), or None when the item is not an image."""
        if self.items is None:
            return None
        item = self.items.dataset[row][0]
        return to_image(item)


def _load(run: FinishedRun):
    from selectivity_eval.core.registry.manager import get_registry

    dataset = dict(run.spec["dataset"])
    plugin = dataset.pop("plugin")
    source = get_registry().get("dataset", plugin)(dataset)
    data = source.load(seed=int(run.spec.get("seed", 0)), transform=None)
    wanted = run.record.get("dataset", {}).get("identity", {}).get("sha256")
    found = data.identity.get("sha256")
    if wanted is not None and found is not None and wanted != found:
        raise ValueError(
            f"the data set {plugin!r} has changed since the run (sha256 {found[:12]}..., the run measured "
            f"{wanted[:12]}...), so its images would not match the activations"
        )
    if len(data) != len(run.labels):
        raise ValueError(f"the data set now has {len(data)} items; the run measured {len(run.labels)}")
    return data


def to_image(item: Any):
    """A raw data set item as an RGB PIL image: PIL images as they are, (C, H, W) tensors with C in 1 or 3."""
    from PIL import Image

    if isinstance(item, Image.Image):
        return item.convert("RGB")
    array = item.detach().cpu().numpy() if hasattr(item, "detach") else np.asarray(item)
    if array.ndim != 3 or array.shape[0] not in (1, 3) or min(array.shape[1:]) < 2:
        return None
    array = array.astype(np.float64)
    low, high = array.min(), array.max()
    if low < 0 or high > 1:  # not in [0, 1]: stretch for display
        array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    pixels = np.round(array * 255).astype(np.uint8)
    image = Image.fromarray(pixels[0], "L") if pixels.shape[0] == 1 else Image.fromarray(pixels.transpose(1, 2, 0))
    return image.convert("RGB")


def top_images_grid(images: list, captions: list[str], path: Path) -> Path | None:
    """The images in a square grid, each captioned (tiles stay as they are); None when there is no image to show."""
    from PIL import Image, ImageDraw

    if not images or any(image is None for image in images):
        return None
    tiles = [resize_to_tile(image) for image in images]
    columns = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    cell_w, cell_h = TILE + GAP, TILE + CAPTION + GAP
    sheet = Image.new("RGB", (columns * cell_w + GAP, rows * cell_h + GAP), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (tile, caption) in enumerate(zip(tiles, captions)):
        x, y = GAP + (index % columns) * cell_w, GAP + (index // columns) * cell_h
        sheet.paste(tile, (x + (TILE - tile.width) // 2, y + (TILE - tile.height) // 2))
        draw.text((x, y + TILE + 1), caption[:14], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = Image.registered_extensions()[path.suffix.lower()]
    options = {"compress_level": PNG_COMPRESSION} if fmt == "PNG" else {}
    atomic.write_with(path, lambda handle: sheet.save(handle, format=fmt, **options), durable=False)  # as plots.save
    return path


def top_rows(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest values, highest first, ties by lower position (the measures' ranking).

    Only the values at or above the k-th highest are sorted (all of them if k covers the array)."""
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k >= len(values):
        return np.argsort(-values, kind="stable")
    threshold = np.partition(values, len(values) - k)[len(values) - k]
    candidates = np.flatnonzero(values >= threshold)  # in position order, every tie at the threshold included
    return candidates[np.argsort(-values[candidates], kind="stable")[:k]]
