"""The `imagenet-val` data set on a small generated validation folder: ground truth formats, wnids, selection."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import numpy as np
import pytest

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.plugins.datasets.image_files import imagenet_index
from selectivity_eval.plugins.datasets.imagenet_val import ImageNetVal

from .image_files import COLOURS, WNIDS, truncated_jpeg, write_image



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
    text = Path(__file__).resolve().parent.parent.joinpath("plugins", "datasets", "imagenet_wnids.txt").read_bytes()
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


