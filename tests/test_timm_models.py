"""The ``timm`` model plugin: models by name with random (seeded) weights or a local weights file, nothing
downloaded, timm's own preprocessing, token layouts for its ViTs, and an image spec run end to end."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import timm
import torch
from pydantic import ValidationError
from typer.testing import CliRunner

from selectivity_eval.core.cli.app import app
from selectivity_eval.core.cli.layers_command import layer_rows
from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.extraction.extract import extract_activations, resolve_layers
from selectivity_eval.core.sources.base import LoadedDataset
from selectivity_eval.plugins.models.timm_models import TimmSource
from selectivity_eval.schemas.spec import LayerSpec

from .image_files import COLOURS, write_image

VIT = {"arch": "vit_tiny_patch16_224", "image_size": 32}
RESNET = {"arch": "resnet10t", "image_size": 32}


def _inputs(n: int = 4, side: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(3))


def _activations(model, layers: list[LayerSpec], inputs: torch.Tensor) -> dict[str, np.ndarray]:
    labels = np.arange(len(inputs)) % 2
    data = LoadedDataset(torch.utils.data.TensorDataset(inputs, torch.from_numpy(labels)), labels, ["a", "b"])
    resolved = resolve_layers(model, layers)
    return extract_activations(model, data, resolved, batch_size=len(inputs), device=torch.device("cpu")).activations


def test_random_weights_are_seeded_and_preprocessing_is_timms_own():
    first, again, other = (TimmSource(**RESNET).load(seed=seed) for seed in (1, 1, 2))
    weight = "conv1.0.weight"
    assert torch.equal(first.module.state_dict()[weight], again.module.state_dict()[weight])
    assert not torch.equal(first.module.state_dict()[weight], other.module.state_dict()[weight])
    config = timm.data.resolve_data_config({"input_size": (3, 32, 32)}, model=first.module)
    assert first.transform.config == config and config["interpolation"] == "bicubic"
    from PIL import Image

    image = Image.new("L", (50, 40), 200)  # grey and not square: converted to RGB, resized, cropped
    tensor = first.transform(image)
    expected = timm.data.create_transform(**config)(image.convert("RGB"))
    assert tensor.shape == (3, 32, 32) and torch.equal(tensor, expected)
    assert first.class_names[0] == "tench" and len(first.class_names) == 1000
    assert first.aliases["logits"] == "fc" and first.aliases["stage4"] == "layer4"
    assert first.identity["init_seed"] == 1 and first.identity["weights"] == "none"


def test_vit_layers_are_tokens_with_the_class_token_and_resnet_maps_channels_first():
    vit = TimmSource(**VIT).load(seed=0)
    rows = {row["layer"]: row for row in layer_rows(vit)[0]}
    assert rows["blocks.11"]["output"] == [5, 192]
    assert rows["blocks.11"]["units"] == 192 and rows["blocks.11"]["reduction"] == "tokens: cls"
    assert rows["patch_embed"]["reduction"] == "tokens: mean"  # before the class token is added
    assert rows["patch_embed.proj"]["units"] == 192 and rows["patch_embed.proj"]["reduction"] == "pool: max"
    assert rows["head"]["units"] == 1000 and "logits" in rows["head"]["aliases"]
    resnet = TimmSource(**RESNET).load(seed=0)
    rows = {row["layer"]: row for row in layer_rows(resnet)[0]}
    assert rows["layer4"]["units"] == 512 and rows["layer4"]["reduction"] == "pool: max"


@pytest.mark.parametrize("params", [VIT, RESNET], ids=["vit", "resnet"])
def test_an_image_spec_runs_end_to_end_on_generated_images(params, tmp_path, write_spec):
    root = tmp_path / "images"
    for index in range(4):
        write_image(root / "red" / f"r{index}.png", COLOURS[0], size=(40, 40))
        write_image(root / "blue" / f"b{index}.png", COLOURS[2], size=(40, 40))
        write_image(root / "mixed" / f"m{index}.png", COLOURS[index % 5], size=(40, 40))
    layers = ["blocks.5", {"name": "norm", "tokens": "patch_mean"}, "logits"] if params is VIT else ["stage3", "logits"]
    spec = write_spec(
        {
            "model": {"plugin": "timm", **params},
            "dataset": {"plugin": "imagefolder", "root": str(root)},
            "layers": layers,
            "measures": ["precision", "topclass", "localist"],
            "device": "cpu",
            "batch_size": 8,
        }
    )
    result = CliRunner().invoke(app, ["run", str(spec), "--quiet"])
    assert result.exit_code == 0, result.output
    with (tmp_path / "run" / "units.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    counts = {}
    for row in rows:
        counts[row["layer"]] = counts.get(row["layer"], 0) + 1
        assert row["precision_class"] in ("0", "1", "2")  # label values: the folders in sorted order
    expected = {"blocks.5": 192, "norm": 192, "logits": 1000} if params is VIT else {"stage3": 256, "logits": 1000}
    assert counts == expected


def test_a_saved_weights_file_loads_back_to_identical_activations(tmp_path):
    original = TimmSource(**VIT).load(seed=5)
    safetensors_path, pth_path = tmp_path / "vit.safetensors", tmp_path / "vit.pth"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in original.module.state_dict().items()}, str(safetensors_path))
    torch.save(original.module.state_dict(), pth_path)
    inputs = _inputs()
    layers = [LayerSpec(name="blocks.3"), LayerSpec(name="logits")]
    expected = _activations(original, layers, inputs)
    for path in (safetensors_path, pth_path):
        loaded = TimmSource(**VIT, weights=str(path)).load(seed=99)  # the seed must not matter
        assert loaded.identity["weights_sha256"] and "init_seed" not in loaded.identity
        got = _activations(loaded, layers, inputs)
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=f"{path.name} {name}")
    fresh = _activations(TimmSource(**VIT).load(seed=99), layers, inputs)
    assert not np.array_equal(fresh["logits"], expected["logits"])


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch ran-code",))


def test_a_pickled_file_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = TimmSource(**RESNET).load(seed=0).module.state_dict()
    path = tmp_path / "trojan.pth"
    torch.save({**state, "extra": RunsCode()}, path)
    with pytest.raises(UserInputError, match=r"trojan.pth' is refused: it holds pickled Python objects.*run code"):
        TimmSource(**RESNET, weights=str(path)).load(seed=0)
    assert not (tmp_path / "ran-code").exists()
    spec_error = CliRunner().invoke(app, ["layers", "-m", "timm", "-s", "arch=resnet10t", "-s", f"weights={path}"])
    assert spec_error.exit_code == 2 and "is refused" in spec_error.output and "Traceback" not in spec_error.output
    assert not (tmp_path / "ran-code").exists()


def test_hub_weights_and_unknown_names_are_refused_with_where_to_put_the_file(tmp_path):
    with pytest.raises(ValidationError, match=r"never downloads.*timm/vit_tiny_patch16_224\.augreg"):
        TimmSource(arch="vit_tiny_patch16_224", weights="augreg_in21k_ft_in1k")
    with pytest.raises(ValidationError, match="Did you mean resnet10t"):
        TimmSource(arch="resnet10")
    with pytest.raises(UserInputError, match="does not exist"):
        TimmSource(**RESNET, weights=str(tmp_path / "missing.safetensors")).load(seed=0)
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(UserInputError, match="does not fit timm's resnet10t"):
        TimmSource(**RESNET, weights=str(wrong)).load(seed=0)
