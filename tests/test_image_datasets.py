"""The `imagefolder` data set on small generated layouts (labels, selection, unreadable files), and both
image data sets' spec validation."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from selectivity_eval.core.cli.app import app
from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.registry.manager import get_registry
from selectivity_eval.plugins.datasets.image_files import default_workers
from selectivity_eval.plugins.datasets.imagefolder import ImageFolder

from .image_files import COLOURS, tolerant_collate, truncated_jpeg, write_image


@pytest.fixture
def folder(tmp_path) -> Path:
    """cat: 3 PNG, dog: 2 JPEG + a nested PNG, zebra: 4 PNG; plus things that are not images."""
    root = tmp_path / "folder"
    for i in range(3):
        write_image(root / "cat" / f"c{i}.png", COLOURS[i])
    for i in range(2):
        write_image(root / "dog" / f"d{i}.JPG", COLOURS[i])
    write_image(root / "dog" / "sub" / "d9.png")
    for i in range(4):
        write_image(root / "zebra" / f"z{i}.png", COLOURS[i])
    (root / "zebra" / "notes.txt").write_text("not an image")
    write_image(root / "zebra" / ".hidden.png")
    write_image(root / ".cache" / "x.png")
    write_image(root / "stray.png")
    return root


# ----------------------------------------------------------------------------------------------
# imagefolder


def test_both_plugins_are_registered_builtins():
    registry = get_registry()
    assert {"imagefolder", "imagenet-val"} <= set(registry.names("dataset"))
    assert registry.entry("dataset", "imagefolder").origin.plugin == "selectivity_eval.plugins.datasets.imagefolder"
    assert registry.entry("dataset", "imagenet-val").origin.plugin == "selectivity_eval.plugins.datasets.imagenet_val"


def test_imagefolder_labels_classes_and_items(folder):
    data = ImageFolder(root=str(folder)).load(seed=0)
    assert data.class_names == ["cat", "dog", "zebra"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert data.labels.dtype == np.int64
    names = [Path(data.describe(i)).relative_to(folder).as_posix() for i in range(len(data))]
    assert names == [
        "cat/c0.png", "cat/c1.png", "cat/c2.png",
        "dog/d0.JPG", "dog/d1.JPG", "dog/sub/d9.png",
        "zebra/z0.png", "zebra/z1.png", "zebra/z2.png", "zebra/z3.png",
    ]
    image, label = data.dataset[1]
    assert label == 0 and image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert torch.allclose(image[:, 0, 0], torch.tensor([0.0, 1.0, 0.0]))  # green, scaled to [0, 1]
    identity = data.identity
    assert identity["n_images"] == 10 and identity["n_classes"] == 3 and identity["n_images_found"] == 10
    assert identity["classes"] == ["cat", "dog", "zebra"] and len(identity["sha256"]) == 64
    assert data.model_class_of_label is None and data.correct_only is False
    assert data.on_unreadable == "fail" and data.num_workers == default_workers()


@pytest.mark.parametrize("cores, workers", [(1, 0), (2, 1), (3, 1), (8, 4), (16, 8), (64, 8)])
def test_decoding_workers_default_to_half_the_cores_at_most_eight(folder, monkeypatch, cores, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)), raising=False)
    assert default_workers() == workers
    assert ImageFolder(root=str(folder)).load(seed=0).num_workers == workers
    assert ImageFolder(root=str(folder), workers=0).load(seed=0).num_workers == 0


def test_imagefolder_applies_the_transform_to_a_pil_image(folder):
    data = ImageFolder(root=str(folder)).load(seed=0, transform=lambda image: (image.mode, image.size))
    assert data.dataset[0] == (("RGB", (16, 16)), 0)


def test_identity_hash_follows_the_listing_and_the_contents(folder):
    first = ImageFolder(root=str(folder)).load(seed=0).identity["sha256"]
    assert ImageFolder(root=str(folder)).load(seed=5).identity["sha256"] == first
    write_image(folder / "cat" / "c0.png", COLOURS[0], size=(20, 20))  # same name, another size
    resized = ImageFolder(root=str(folder)).load(seed=0).identity["sha256"]
    assert resized != first
    status = (folder / "cat" / "c0.png").stat()
    os.utime(folder / "cat" / "c0.png", ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))  # touched, same bytes
    assert ImageFolder(root=str(folder)).load(seed=0).identity["sha256"] == resized


def test_an_image_edited_in_place_with_size_and_time_restored_changes_the_identity(folder):
    path = folder / "cat" / "c0.png"
    before = ImageFolder(root=str(folder)).load(seed=0).identity["sha256"]
    status = path.stat()
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # same size
    path.write_bytes(bytes(data))
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert path.stat().st_size == status.st_size and path.stat().st_mtime_ns == status.st_mtime_ns
    assert ImageFolder(root=str(folder)).load(seed=0).identity["sha256"] != before


def test_limit_per_class_keeps_the_first_files_of_each_class(folder):
    data = ImageFolder(root=str(folder), limit_per_class=2).load(seed=0)
    assert data.labels.tolist() == [0, 0, 1, 1, 2, 2]
    names = [Path(data.describe(i)).name for i in range(len(data))]
    assert names == ["c0.png", "c1.png", "d0.JPG", "d1.JPG", "z0.png", "z1.png"]
    assert data.identity["n_images"] == 6 and data.identity["n_images_found"] == 10


def test_subset_is_seeded(folder):
    def chosen(seed, **params):
        data = ImageFolder(root=str(folder), subset=4, **params).load(seed=seed)
        return [data.describe(i) for i in range(len(data))], data

    same_a, data = chosen(1)
    same_b, _ = chosen(1)
    assert same_a == same_b and len(same_a) == 4
    assert same_a == sorted(same_a)  # the chosen images keep listing order
    assert data.labels.tolist() == [["cat", "dog", "zebra"].index(Path(p).relative_to(folder).parts[0]) for p in same_a]
    assert any(chosen(seed)[0] != same_a for seed in range(2, 6))
    assert chosen(7, subset_seed=1)[0] == same_a  # subset_seed overrides the run's seed
    everything, _ = chosen(1, limit_per_class=1)  # subset >= what limit_per_class leaves: all of it
    assert len(everything) == 3


def test_unreadable_image_gives_none_and_its_path(folder):
    bad = folder / "dog" / "d1.JPG"
    truncated_jpeg(bad)
    noise = folder / "zebra" / "z9.jpg"
    noise.write_bytes(np.random.default_rng(0).bytes(500))
    data = ImageFolder(root=str(folder), on_unreadable="skip", workers=2).load(seed=0)
    assert data.on_unreadable == "skip" and data.num_workers == 2
    position = [data.describe(i) for i in range(len(data))].index(str(bad))
    assert data.dataset[position] == (None, 1)
    assert data.describe(position) == str(bad)
    last = len(data) - 1
    assert data.describe(last) == str(noise) and data.dataset[last] == (None, 2)
    readable = [i for i in range(len(data)) if data.dataset[i][0] is not None]
    assert len(readable) == len(data) - 2


def test_dataset_works_in_dataloader_workers(folder):
    """Workers started with spawn (macOS, Windows) get the dataset pickled: check that it survives pickling."""
    truncated_jpeg(folder / "dog" / "d1.JPG")
    data = ImageFolder(root=str(folder), on_unreadable="skip", workers=2).load(seed=0)
    copy = pickle.loads(pickle.dumps((data.dataset, data.describe)))
    assert copy[1](3) == data.describe(3) and copy[0][4] == (None, 1)
    loader = DataLoader(data.dataset, batch_size=3, num_workers=data.num_workers, collate_fn=tolerant_collate)
    readable, labels = [], []
    for items, batch_labels in loader:
        readable += items
        labels += batch_labels
    assert labels == data.labels.tolist()
    assert len(readable) == len(data) - 1
    assert all(item.shape == (3, 16, 16) for item, _ in readable)


def test_wnid_folders_map_to_imagenet_output_indices(tmp_path):
    root = tmp_path / "wnids"
    for wnid in ("n01751748", "n01440764", "n15075141"):
        write_image(root / wnid / "a.JPEG")
    data = ImageFolder(root=str(root), correct_only=True).load(seed=0)
    assert data.class_names == ["n01440764", "n01751748", "n15075141"]
    assert data.labels.tolist() == [0, 1, 2]  # folder indices
    assert data.model_class_of_label.tolist() == [0, 65, 999]  # torchvision's ImageNet class indices
    assert data.correct_only is True


def test_correct_only_needs_a_class_mapping_for_other_folders(folder):
    with pytest.raises(UserInputError, match="class_to_model_index"):
        ImageFolder(root=str(folder), correct_only=True).load(seed=0)
    mapping = {"cat": 281, "dog": 207, "zebra": 340}
    data = ImageFolder(root=str(folder), correct_only=True, class_to_model_index=mapping).load(seed=0)
    assert data.model_class_of_label.tolist() == [281, 207, 340]
    with pytest.raises(UserInputError, match="lacks the class folder"):
        ImageFolder(root=str(folder), correct_only=True, class_to_model_index={"cat": 1}).load(seed=0)
    with pytest.raises(UserInputError, match="'cta'"):
        ImageFolder(root=str(folder), class_to_model_index={"cat": 1, "dog": 2, "zebra": 3, "cta": 4}).load(seed=0)


def test_imagefolder_layout_errors(tmp_path, folder):
    (folder / "empty").mkdir()
    with pytest.raises(UserInputError, match="'empty'"):
        ImageFolder(root=str(folder)).load(seed=0)
    flat = tmp_path / "flat"
    write_image(flat / "a.png")
    with pytest.raises(UserInputError, match="no class folders"):
        ImageFolder(root=str(flat)).load(seed=0)


def test_extensions_select_the_files(folder):
    data = ImageFolder(root=str(folder), extensions=["JPG"])
    assert data.params.extensions == [".jpg"]
    (folder / "cat" / "c0.png").rename(folder / "cat" / "c0.jpg")
    (folder / "zebra" / "z0.png").rename(folder / "zebra" / "z0.JPG")
    loaded = data.load(seed=0)
    assert [Path(loaded.describe(i)).name for i in range(len(loaded))] == ["c0.jpg", "d0.JPG", "d1.JPG", "z0.JPG"]


def test_params_check_the_root(tmp_path):
    with pytest.raises(ValueError, match="is not an existing directory"):
        ImageFolder(root=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="Extra inputs"):
        ImageFolder(root=str(tmp_path), limit_per_clas=3)


# ----------------------------------------------------------------------------------------------
# Spec validation through the command line


@pytest.mark.parametrize(
    ("dataset", "location", "message"),
    [
        ({"plugin": "imagefolder", "root": "{folder}", "limit_per_clas": 5}, "dataset.limit_per_clas", "unknown key"),
        ({"plugin": "imagefolder", "root": "{missing}"}, "dataset.root", "is not an existing directory"),
        ({"plugin": "imagefolder"}, "dataset.root", "required but missing"),
        ({"plugin": "imagefolder", "root": "{folder}", "on_unreadable": "ignore"}, "dataset.on_unreadable",
         "'skip' or 'fail'"),
        ({"plugin": "imagenet-val", "root": "{folder}"}, "dataset", "give `ground_truth`"),
        ({"plugin": "imagenet-val", "root": "{folder}", "ground_truth": "{missing}"}, "dataset.ground_truth",
         "not an existing file"),
    ],
)
def test_bad_dataset_params_fail_validation_naming_the_field(folder, tmp_path, write_spec, dataset, location, message):
    places = {"folder": str(folder), "missing": str(tmp_path / "missing")}
    dataset = {key: value.format(**places) if isinstance(value, str) else value for key, value in dataset.items()}
    spec = write_spec({"model": "digits-cnn", "dataset": dataset, "layers": ["fc2"]})
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2, result.output
    assert f"{location} (line" in result.output and message in result.output


def test_good_imagefolder_spec_validates_with_defaults(folder, write_spec, tmp_path):
    from selectivity_eval.core.spec.loader import load_spec

    spec = write_spec({"model": "digits-cnn", "dataset": {"plugin": "imagefolder", "root": str(folder)}, "layers": ["fc2"]})
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    resolved = load_spec(spec).dataset.params()
    assert resolved["on_unreadable"] == "fail" and resolved["workers"] is None and resolved["correct_only"] is False
    assert ".jpeg" in resolved["extensions"] and yaml.safe_dump(resolved)
