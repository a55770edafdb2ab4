"""The ``imagenet-val`` data set: ILSVRC2012 validation images labelled with torchvision's class indices."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.registry.hookspecs import hookimpl
from selectivity_eval.core.sources.base import DatasetSource, LoadedDataset
from selectivity_eval.plugins.datasets.image_files import (
    ImageParams,
    Item,
    _existing,
    _extensions,
    _loaded,
    _resolved_root,
    _seed,
    imagenet_index,
    imagenet_wnids,
    select_items,
)
from selectivity_eval.plugins.datasets.imagenet_ground_truth import (
    DEVKIT_GROUND_TRUTH,
    VAL_IMAGE,
    WNID,
    parse_ground_truth,
    read_devkit,
    read_synset_mapping,
)


class ImageNetValParams(ImageParams):
    ground_truth: str | None = Field(
        None,
        description="LOC_val_solution.csv, the devkit's ILSVRC2012_validation_ground_truth.txt (needs `devkit`), "
        "or a file with one WordNet id per image.",
    )
    devkit: str | None = Field(
        None,
        description="The ILSVRC2012 devkit: its folder, its .tar.gz, its data/meta.mat, or a map_clsloc.txt "
        "(maps the devkit's ILSVRC2012_IDs to WordNet ids; also gives class names and the ground truth).",
    )
    synset_mapping: str | None = Field(
        None, description="LOC_synset_mapping.txt ('wnid name, name, ...' per line): class names."
    )

    @field_validator("ground_truth", "synset_mapping")
    @classmethod
    def _file_exists(cls, value: str | None, info) -> str | None:
        return _existing(value, info.field_name, directory=False)

    @field_validator("devkit")
    @classmethod
    def _devkit_exists(cls, value: str | None) -> str | None:
        return _existing(value, "devkit", directory=None)

    @model_validator(mode="after")
    def _some_ground_truth(self):
        if self.ground_truth is None and self.devkit is None:
            raise ValueError(
                "give `ground_truth` (LOC_val_solution.csv, or a file with one WordNet id per image) or `devkit` "
                "(the ILSVRC2012 devkit, whose data/ILSVRC2012_validation_ground_truth.txt is then used)"
            )
        return self


def list_val_images(root: Path, extensions: Sequence[str]) -> dict[int, str]:
    """Image number -> file name of every ILSVRC2012_val_NNNNNNNN.<ext> file directly under ``root``."""
    extensions = _extensions(extensions)
    found: dict[int, str] = {}
    for entry in os.scandir(root):
        stem, ext = os.path.splitext(entry.name)
        match = VAL_IMAGE.fullmatch(stem)
        if match and ext.lower() in extensions and entry.is_file():
            number = int(match.group(1))
            if number in found:
                raise UserInputError(f"imagenet-val: {found[number]!r} and {entry.name!r} are the same image number.")
            found[number] = entry.name
    if not found:
        folders = [entry.name for entry in os.scandir(root) if entry.is_dir() and WNID.fullmatch(entry.name)]
        hint = " It holds WordNet-id folders: use the `imagefolder` data set for that layout." if folders else ""
        raise UserInputError(
            f"imagenet-val: no ILSVRC2012_val_NNNNNNNN image ending in {', '.join(extensions)} directly under "
            f"{str(root)!r}.{hint}"
        )
    return found


class ImageNetVal(DatasetSource):
    """ILSVRC2012 validation images in one flat folder, labelled from LOC_val_solution.csv or the devkit."""

    name = "imagenet-val"
    Params = ImageNetValParams

    def load(self, *, seed: int, transform=None) -> LoadedDataset:
        p: ImageNetValParams = self.params
        root = _resolved_root(p.root)
        devkit = read_devkit(p.devkit) if p.devkit is not None else None
        if p.ground_truth is not None:
            truth_source = p.ground_truth
            truth_text = Path(p.ground_truth).expanduser().read_text(encoding="utf-8-sig")
        elif devkit is not None and devkit.ground_truth is not None:
            truth_source, truth_text = f"{p.devkit}: {DEVKIT_GROUND_TRUTH}", devkit.ground_truth
        else:
            raise UserInputError(
                f"devkit {p.devkit!r} holds no {DEVKIT_GROUND_TRUTH}; give `ground_truth`."
            )
        truth, truth_format = parse_ground_truth(truth_text, truth_source, devkit)
        index = imagenet_index()
        outside = sorted({wnid for wnid in truth.values() if wnid not in index})
        if outside:
            raise UserInputError(
                f"ground truth {truth_source!r} names {len(outside)} WordNet id(s) outside ImageNet-1k, "
                f"e.g. {outside[0]}."
            )
        files = list_val_images(root, p.extensions)
        unlabelled = sorted(number for number in files if number not in truth)
        if unlabelled:
            raise UserInputError(
                f"imagenet-val: {len(unlabelled)} image(s) under {str(root)!r} have no entry in the ground truth "
                f"{truth_source!r}, e.g. {files[unlabelled[0]]!r}. Is it the ground truth of these images?"
            )
        items = [Item(files[n], str(root / files[n]), index[truth[n]]) for n in sorted(files)]
        found = len(items)
        items = select_items(items, p.limit_per_class, p.subset, _seed(p, seed))

        wnids = list(imagenet_wnids())
        if p.synset_mapping is not None:
            names = read_synset_mapping(p.synset_mapping)
        elif devkit is not None:
            names = {wnid: words for wnid, words in devkit.synsets.values()}
        else:
            names = {}
        class_names = [names.get(wnid) or wnid for wnid in wnids]
        identity = {
            "source": "ILSVRC2012 validation",
            "root": str(root),
            "ground_truth": truth_format,
            "n_images_found": found,
            "n_ground_truth": len(truth),
            "wnids": wnids,
        }
        # Labels already are torchvision's class indices, so the model's output index of a label is itself.
        return _loaded(p, items, transform, class_names, identity, None)


@hookimpl
def register_datasets(register):
    register(ImageNetVal)
