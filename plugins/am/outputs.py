"""What the ``gradient-ascent`` method writes: a PNG per unit, a contact sheet per layer, am.csv."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selectivity_eval.core.outputs import atomic
from selectivity_eval.core.outputs.results import csv_cell

AM_CSV_COLUMNS = [
    "layer",
    "unit",
    "activation",
    "data_max",
    "ratio",
    "top1_class",
    "top1_name",
    "top1_probability",
    "ccmas_class",
    "top1_is_ccmas_class",
    "topclass_class",
    "top1_is_topclass_class",
]
SHEET_MAX_WIDTH = 4096
CAPTION_HEIGHT = 14


def to_pil(image: torch.Tensor, min_size: int = 1):
    """A (C, H, W) image in [0, 1] as a PIL image (grey for 1 channel, RGB for 3, else the channel mean),
    enlarged by a whole factor with nearest neighbour until its longer side is at least ``min_size``."""
    from PIL import Image

    array = image.detach().float().clamp(0, 1).cpu().numpy()
    if array.shape[0] not in (1, 3):
        array = array.mean(0, keepdims=True)
    pixels = np.round(array * 255).astype(np.uint8)
    pil = Image.fromarray(pixels[0], "L") if pixels.shape[0] == 1 else Image.fromarray(pixels.transpose(1, 2, 0), "RGB")
    factor = math.ceil(min_size / max(pil.size))
    if factor > 1:
        pil = pil.resize((pil.width * factor, pil.height * factor), Image.NEAREST)
    return pil


def save_png(image: torch.Tensor, path: Path, min_size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = to_pil(image, min_size)
    atomic.write_with(path, lambda handle: picture.save(handle, format="PNG"))
    return path


def contact_sheet(images: torch.Tensor, captions: list[str], path: Path, min_size: int) -> Path:
    """All of a layer's images on one sheet, each captioned, at most ``SHEET_MAX_WIDTH`` pixels wide."""
    from PIL import Image, ImageDraw

    tiles = [to_pil(image, min_size).convert("RGB") for image in images]
    columns = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    gap = 4
    width, height = tiles[0].size
    if columns * (width + gap) > SHEET_MAX_WIDTH:
        shrink = (SHEET_MAX_WIDTH // columns - gap) / width
        width, height = max(1, int(width * shrink)), max(1, int(height * shrink))
        tiles = [tile.resize((width, height), Image.BILINEAR) for tile in tiles]
    cell_w, cell_h = width + gap, height + CAPTION_HEIGHT + gap
    sheet = Image.new("RGB", (columns * cell_w + gap, rows * cell_h + gap), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (tile, caption) in enumerate(zip(tiles, captions)):
        x, y = gap + (index % columns) * cell_w, gap + (index // columns) * cell_h
        sheet.paste(tile, (x, y))
        draw.text((x, y + height + 1), caption, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_with(path, lambda handle: sheet.save(handle, format="PNG"))
    return path


def write_am_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """One row per layer and unit, in ``AM_CSV_COLUMNS``; an empty cell where a value does not exist."""
    with atomic.atomic_file(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(AM_CSV_COLUMNS)
        for row in rows:
            writer.writerow([csv_cell(row.get(column), missing="") for column in AM_CSV_COLUMNS])
    return path
