"""The `imagefolder` and `imagenet-val` data sets on small generated layouts: labels, selection, unreadable files."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from selectivity_eval.core.cli import app
from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.plugins import get_registry
from selectivity_eval.plugins.image_files import imagenet_index, imagenet_wnids
from selectivity_eval.plugins.imagefolder import ImageFolder
from selectivity_eval.plugins.imagenet_val import ImageNetVal

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
    assert registry.entry("dataset", "imagefolder").origin.plugin == "selectivity_eval.plugins.imagefolder"
    assert registry.entry("dataset", "imagenet-val").origin.plugin == "selectivity_eval.plugins.imagenet_val"


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
    assert data.on_unreadable == "fail" and data.num_workers == 0


def test_imagefolder_applies_the_transform_to_a_pil_image(folder):
    data = ImageFolder(root=str(folder)).load(seed=0, transform=lambda image: (image.mode, image.size))
    assert data.dataset[0] == (("RGB", (16, 16)), 0)


def test_identity_hash_follows_the_listing(folder):
    first = ImageFolder(root=str(folder)).load(seed=0).identity["sha256"]
    assert ImageFolder(root=str(folder)).load(seed=5).identity["sha256"] == first
    write_image(folder / "cat" / "c0.png", COLOURS[0], size=(20, 20))  # same name, another size
    assert ImageFolder(root=str(folder)).load(seed=0).identity["sha256"] != first


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
# imagenet-val

# Image number -> wnid of the generated validation folder.
VAL_TRUTH = {1: "n01751748", 2: "n09193705", 3: "n01751748", 4: "n01440764", 5: "n15075141", 6: "n09193705"}


@pytest.fixture
def val_root(tmp_path) -> Path:
    root = tmp_path / "val"
    for number in VAL_TRUTH:
        suffix = "JPEG" if number % 2 else "png"
        write_image(root / f"ILSVRC2012_val_{number:08d}.{suffix}", COLOURS[number % len(COLOURS)])
    (root / "README").write_text("not an image")
    return root


def expected_labels(numbers=VAL_TRUTH) -> list[int]:
    return [imagenet_index()[VAL_TRUTH[n]] for n in numbers]


def loc_solution(path: Path, truth=VAL_TRUTH) -> Path:
    rows = [f"ILSVRC2012_val_{n:08d},{wnid} 10 20 30 40 {wnid} 1 2 3 4" for n, wnid in reversed(truth.items())]
    path.write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    return path


def devkit_ids() -> list[int]:
    """A devkit numbering that is not torchvision's: ILSVRC2012_ID k is the (k-1)th wnid of a fixed shuffle."""
    return list(np.random.default_rng(42).permutation(1000) + 1)  # id_of[torchvision index]


def write_devkit(directory: Path, truth=VAL_TRUTH) -> Path:
    from scipy.io import savemat

    id_of = devkit_ids()
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height", "num_train_images"]
    synsets = np.empty((1002, 1), dtype=[(f, "O") for f in fields])
    for index, wnid in enumerate(WNIDS):
        row = (id_of[index], wnid, f"words of {wnid}", "", 0, np.zeros((1, 0)), 0, 1300)
        synsets[index, 0] = row
    synsets[1000, 0] = (1001, "n00001740", "entity", "", 2, np.array([1, 2]), 19, 0)  # inner nodes: ids > 1000
    synsets[1001, 0] = (1002, "n00002137", "abstraction", "", 1, np.array([3]), 18, 0)
    data = directory / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    savemat(data / "meta.mat", {"synsets": synsets})
    numbers = sorted(truth)
    assert numbers == list(range(1, len(numbers) + 1))
    lines = [str(id_of[imagenet_index()[truth[n]]]) for n in numbers]
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(lines) + "\n")
    return directory / "ILSVRC2012_devkit_t12"


def test_shipped_wnids_are_torchvisions_imagenet_classes():
    from torchvision.models import ResNet18_Weights

    assert len(WNIDS) == 1000 and list(WNIDS) == sorted(set(WNIDS))
    text = Path(__file__).resolve().parent.parent.joinpath("plugins", "imagenet_wnids.txt").read_bytes()
    assert hashlib.sha256(text).hexdigest() == "70002b0ff5de60a3a17a82dbfcff291931f96225ddf941ad2e182fc39e183d15"
    categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    known = {"n01440764": "tench", "n01443537": "goldfish", "n01751748": "sea snake", "n02099601": "golden retriever",
             "n09193705": "alp", "n15075141": "toilet tissue"}
    assert {wnid: categories[imagenet_index()[wnid]] for wnid in known} == known


def test_imagenet_val_from_loc_solution(val_root, tmp_path):
    mapping = tmp_path / "LOC_synset_mapping.txt"
    mapping.write_text("".join(f"{w} name of {w}, other name\n" for w in WNIDS))
    data = ImageNetVal(root=str(val_root), ground_truth=str(loc_solution(tmp_path / "LOC_val_solution.csv")),
                       synset_mapping=str(mapping)).load(seed=0)
    assert data.labels.tolist() == expected_labels() == [65, 970, 65, 0, 999, 970]
    names = [Path(data.describe(i)).name for i in range(len(data))]
    assert names[:2] == ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.png"]
    assert len(data.class_names) == 1000 and data.class_names[65] == "name of n01751748, other name"
    assert data.identity["wnids"] == list(WNIDS) and data.identity["ground_truth"] == "LOC_val_solution.csv"
    assert data.identity["n_images"] == 6 and data.identity["n_classes"] == 4
    assert data.model_class_of_label is None  # labels already are the model's class indices
    image, label = data.dataset[1]
    assert image.shape == (3, 16, 16) and label == 970


def test_imagenet_val_without_names_uses_wnids(val_root, tmp_path):
    data = ImageNetVal(root=str(val_root), ground_truth=str(loc_solution(tmp_path / "solution.csv"))).load(seed=0)
    assert data.class_names == list(WNIDS)


def test_imagenet_val_from_the_devkit(val_root, tmp_path):
    devkit = write_devkit(tmp_path)
    id_of = devkit_ids()
    assert id_of[65] != 66  # the devkit's order is not torchvision's, so the mapping matters
    for source in (devkit, devkit / "data" / "meta.mat"):
        data = ImageNetVal(root=str(val_root), devkit=str(source)).load(seed=0)
        assert data.labels.tolist() == expected_labels()
        assert data.class_names[65] == "words of n01751748"
        assert data.identity["ground_truth"] == "ILSVRC2012_validation_ground_truth.txt"
    archive = tmp_path / "ILSVRC2012_devkit_t12.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(devkit, arcname="ILSVRC2012_devkit_t12")
    truth = devkit / "data" / "ILSVRC2012_validation_ground_truth.txt"
    data = ImageNetVal(root=str(val_root), devkit=str(archive), ground_truth=str(truth)).load(seed=0)
    assert data.labels.tolist() == expected_labels()


def test_devkit_numbering_from_map_clsloc(val_root, tmp_path):
    truth = write_devkit(tmp_path) / "data" / "ILSVRC2012_validation_ground_truth.txt"
    id_of = devkit_ids()
    clsloc = tmp_path / "map_clsloc.txt"
    clsloc.write_text("".join(f"{wnid} {id_of[index]} name_of_{wnid}\n" for index, wnid in enumerate(WNIDS)))
    data = ImageNetVal(root=str(val_root), devkit=str(clsloc), ground_truth=str(truth)).load(seed=0)
    assert data.labels.tolist() == expected_labels()
    assert data.class_names[65] == "name of n01751748"
    clsloc.write_text("".join(f"{wnid} {index + 1} x\n" for index, wnid in enumerate(WNIDS[:999])))
    with pytest.raises(UserInputError, match="does not map the ILSVRC2012_IDs 1..1000"):
        ImageNetVal(root=str(val_root), devkit=str(clsloc), ground_truth=str(truth)).load(seed=0)


def test_devkit_ids_need_the_devkit(val_root, tmp_path):
    truth = write_devkit(tmp_path) / "data" / "ILSVRC2012_validation_ground_truth.txt"
    with pytest.raises(UserInputError, match="ILSVRC2012_IDs .* give `devkit`"):
        ImageNetVal(root=str(val_root), ground_truth=str(truth)).load(seed=0)


def test_imagenet_val_from_a_wnid_per_line(val_root, tmp_path):
    plain = tmp_path / "labels.txt"
    plain.write_text("\n".join(VAL_TRUTH[n] for n in sorted(VAL_TRUTH)) + "\n")
    named = tmp_path / "named.txt"
    named.write_text("".join(f"ILSVRC2012_val_{n:08d}.JPEG {VAL_TRUTH[n]}\n" for n in sorted(VAL_TRUTH)))
    for truth in (plain, named):
        assert ImageNetVal(root=str(val_root), ground_truth=str(truth)).load(seed=0).labels.tolist() == expected_labels()


def test_imagenet_val_selection_and_unreadable(val_root, tmp_path):
    solution = str(loc_solution(tmp_path / "solution.csv"))
    limited = ImageNetVal(root=str(val_root), ground_truth=solution, limit_per_class=1).load(seed=0)
    assert limited.labels.tolist() == [65, 970, 0, 999]  # images 1, 2, 4, 5
    subsets = [ImageNetVal(root=str(val_root), ground_truth=solution, subset=3).load(seed=s) for s in (0, 0, 1, 2, 3)]
    names = [[d.describe(i) for i in range(len(d))] for d in subsets]
    assert names[0] == names[1] and len(names[0]) == 3 and any(n != names[0] for n in names[2:])
    truncated_jpeg(val_root / "ILSVRC2012_val_00000003.JPEG")
    data = ImageNetVal(root=str(val_root), ground_truth=solution, on_unreadable="skip", correct_only=True).load(seed=0)
    assert data.dataset[2] == (None, 65)
    assert data.describe(2) == str(val_root / "ILSVRC2012_val_00000003.JPEG")
    assert data.on_unreadable == "skip" and data.correct_only is True


def test_imagenet_val_ground_truth_problems(val_root, tmp_path):
    partial = loc_solution(tmp_path / "partial.csv", {n: w for n, w in VAL_TRUTH.items() if n != 4})
    with pytest.raises(UserInputError, match="1 image.*no entry.*ILSVRC2012_val_00000004.png"):
        ImageNetVal(root=str(val_root), ground_truth=str(partial)).load(seed=0)
    odd = tmp_path / "odd.txt"
    odd.write_text("n01751748\nhello world\n")
    with pytest.raises(UserInputError, match="line 2"):
        ImageNetVal(root=str(val_root), ground_truth=str(odd)).load(seed=0)
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("n00000001\n")
    with pytest.raises(UserInputError, match="outside ImageNet-1k"):
        ImageNetVal(root=str(val_root), ground_truth=str(foreign)).load(seed=0)
    sorted_root = tmp_path / "sorted"
    write_image(sorted_root / "n01440764" / "ILSVRC2012_val_00000004.JPEG")
    with pytest.raises(UserInputError, match="use the `imagefolder` data set"):
        ImageNetVal(root=str(sorted_root), ground_truth=str(partial)).load(seed=0)
    with pytest.raises(ValueError, match="give `ground_truth`"):
        ImageNetVal(root=str(val_root))


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
    from selectivity_eval.core.spec_loader import load_spec

    spec = write_spec({"model": "digits-cnn", "dataset": {"plugin": "imagefolder", "root": str(folder)}, "layers": ["fc2"]})
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    resolved = load_spec(spec).dataset.params()
    assert resolved["on_unreadable"] == "fail" and resolved["workers"] == 0 and resolved["correct_only"] is False
    assert ".jpeg" in resolved["extensions"] and yaml.safe_dump(resolved)
