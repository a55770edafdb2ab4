"""Small generated images for the image data set tests."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from selectivity_eval.plugins.datasets.image_files import imagenet_wnids

WNIDS = imagenet_wnids()
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


def write_image(path: Path, colour=(128, 64, 32), size=(16, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def truncated_jpeg(path: Path) -> Path:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 64).convert("RGB").save(buffer, "JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def tolerant_collate(batch):
    """Module level, so DataLoader workers can use it: drop unreadable items, keep the labels."""
    return [(item, label) for item, label in batch if item is not None], [label for _, label in batch]
