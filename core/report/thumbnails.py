"""The cards' top images as tiles, decoded at reduced size where the file allows it, each row decoded once.

A card shows its top images as tiles of at most ``TILE`` pixels a side. Image files (the
``imagefolder`` and ``imagenet-val`` data sets, whose items are ``ImageFiles`` rows) are opened
here directly: ``Image.draft`` lets the JPEG decoder scale by 1/2, 1/4 or 1/8 while it decodes
(DCT scaling), to the smallest size that is still at least the tile's, and the tile is then
resized from that, as it would be from the full image. A 500 px JPEG decodes at 125 px, about
ten times faster, without the float tensor the data set's item would go through. Other data
sets (digits' 8 x 8 tensors) go through their item as before. Tiles are kept by row, since the
same image often tops several units' cards.
"""

from __future__ import annotations

from typing import Any

TILE = 72


def tile_size(width: int, height: int, tile: int = TILE) -> tuple[int, int]:
    """The size of an image of ``width`` x ``height`` scaled so that its longer side is ``tile``."""
    factor = tile / max(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def resize_to_tile(image, tile: int = TILE):
    """``image`` scaled so that its longer side is ``tile``: nearest neighbour when enlarging 2x or more
    (small images stay sharp pixels), bilinear otherwise (Pillow's, which averages when shrinking)."""
    from PIL import Image

    factor = tile / max(image.size)
    resample = Image.NEAREST if factor >= 2 else Image.BILINEAR
    return image.resize(tile_size(*image.size, tile), resample)


def file_tile(path: str, max_pixels: int, tile: int = TILE):
    """The tile of the image file at ``path``, decoded at reduced size where possible (JPEG); None when the file
    cannot be read or decoded, or declares more than ``max_pixels`` pixels (as the data set would refuse it)."""
    from PIL import Image

    from selectivity_eval.plugins.datasets.image_files import read_rgb

    original: list[tuple[int, int]] = []

    def reduce(image) -> None:
        original.append(image.size)
        if max(image.size) > tile:  # JPEG only (others ignore it): decode at 1/2, 1/4 or 1/8, still >= the tile
            image.draft("RGB", tile_size(*image.size, tile))

    decoded = read_rgb(path, max_pixels, before_decoding=reduce)
    if decoded is None:
        return None
    if max(original[0]) < tile:
        return resize_to_tile(decoded, tile)  # small images: as the item path enlarges them
    return decoded.resize(tile_size(*original[0], tile), Image.BILINEAR)


class Tiles:
    """Tiles of a loaded data set's rows, each made once: from the file for ``ImageFiles`` without a
    transform, else from the item (``to_image``)."""

    def __init__(self, data: Any, tile: int = TILE):
        from selectivity_eval.plugins.datasets.image_files import ImageFiles

        self.dataset = data.dataset
        self.tile = tile
        self.files = isinstance(self.dataset, ImageFiles) and self.dataset.transform is None
        self.made: dict[int, Any] = {}

    def __call__(self, row: int):
        """The RGB tile of ``row``, or None when its item is not an image or cannot be read."""
        if row not in self.made:
            self.made[row] = self._make(row)
        return self.made[row]

    def _make(self, row: int):
        from selectivity_eval.core.report.dataset_images import to_image

        if self.files:
            return file_tile(self.dataset.paths[row], self.dataset.max_pixels, self.tile)
        image = to_image(self.dataset[row][0])
        return None if image is None else resize_to_tile(image, self.tile)
