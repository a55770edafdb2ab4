"""The ``imagefolder`` data set: images in one folder per class, classes sorted by folder name."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.registry.hookspecs import hookimpl
from selectivity_eval.core.sources.base import DatasetSource, LoadedDataset
from selectivity_eval.plugins.datasets.image_files import (
    ImageParams,
    Item,
    _extensions,
    _loaded,
    _resolved_root,
    _seed,
    imagenet_index,
    select_items,
)


class ImageFolderParams(ImageParams):
    class_to_model_index: dict[str, int] | None = Field(
        None,
        description="Folder name -> the model's output index, for correct_only when folders are not ImageNet wnids.",
    )

    @field_validator("class_to_model_index")
    @classmethod
    def _non_negative(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is not None and any(index < 0 for index in value.values()):
            raise ValueError("model output indices must be >= 0")
        return value


def list_image_folder(root: Path, extensions: Sequence[str]) -> tuple[list[str], list[Item]]:
    """Class folders (sorted) and every image under them (sorted by path within each class).

    Hidden files and folders (names starting with ``.``) are ignored, and so are files directly
    under ``root``. Sub-folders of a class folder belong to that class.
    """
    extensions = _extensions(extensions)
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise UserInputError(
            f"imagefolder: {str(root)!r} has no class folders; it must hold one folder of images per class."
        )
    items: list[Item] = []
    empty = []
    for label, name in enumerate(classes):
        found = []
        for directory, subdirectories, files in os.walk(root / name, followlinks=True):
            subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
            for file in files:
                if not file.startswith(".") and os.path.splitext(file)[1].lower() in extensions:
                    path = Path(directory, file)
                    found.append(path.relative_to(root).as_posix())
        if not found:
            empty.append(name)
        items.extend(Item(relative, str(root / relative), label) for relative in sorted(found))
    if empty:
        raise UserInputError(
            f"imagefolder: class folder(s) {', '.join(map(repr, empty[:10]))}{' ...' if len(empty) > 10 else ''} "
            f"under {str(root)!r} hold no image file ending in {', '.join(extensions)}. Remove them or add images."
        )
    return classes, items


def model_classes_of_folders(
    classes: list[str], mapping: dict[str, int] | None, correct_only: bool
) -> np.ndarray | None:
    """The model's output index of each class folder: from ``mapping``, else ImageNet-1k wnids, else None.

    With ``correct_only`` a mapping is required, so a missing one is an error.
    """
    if mapping is not None:
        missing = [name for name in classes if name not in mapping]
        unknown = sorted(set(mapping) - set(classes))
        if unknown:
            raise UserInputError(
                f"imagefolder: class_to_model_index names {', '.join(map(repr, unknown[:10]))}, which are not class "
                f"folders (the folders are {', '.join(map(repr, classes[:10]))}{' ...' if len(classes) > 10 else ''})."
            )
        if missing:
            raise UserInputError(
                f"imagefolder: class_to_model_index lacks the class folder(s) {', '.join(map(repr, missing[:10]))}; "
                "give the model output index of every folder."
            )
        return np.asarray([mapping[name] for name in classes], dtype=np.int64)
    index = imagenet_index()
    if all(name in index for name in classes):
        return np.asarray([index[name] for name in classes], dtype=np.int64)
    if correct_only:
        strangers = [name for name in classes if name not in index]
        raise UserInputError(
            "imagefolder: correct_only compares the network's top-1 output with each image's class, so it must "
            "know the model's output index of every class folder. The folder names are not all ImageNet-1k "
            f"WordNet ids (e.g. {', '.join(map(repr, strangers[:5]))}); give `class_to_model_index: "
            "{folder: index, ...}`."
        )
    return None


class ImageFolder(DatasetSource):
    """Images in one folder per class (any format Pillow reads); classes sorted by folder name."""

    name = "imagefolder"
    Params = ImageFolderParams

    def load(self, *, seed: int, transform=None) -> LoadedDataset:
        p: ImageFolderParams = self.params
        root = _resolved_root(p.root)
        classes, items = list_image_folder(root, p.extensions)
        model_classes = model_classes_of_folders(classes, p.class_to_model_index, p.correct_only)
        found = len(items)
        items = select_items(items, p.limit_per_class, p.subset, _seed(p, seed))
        identity = {"source": "imagefolder", "root": str(root), "classes": classes, "n_images_found": found}
        return _loaded(p, items, transform, list(classes), identity, model_classes)


@hookimpl
def register_datasets(register):
    register(ImageFolder)
