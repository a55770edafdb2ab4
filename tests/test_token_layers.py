"""Token layers: a (batch, tokens, features) output has one unit per feature, reduced over tokens as
the spec says, by the layout the model declares (torchvision ViT and Swin); AM follows the same rule."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.swin_transformer import SwinTransformer
from torch.utils.data import TensorDataset

import selectivity_eval as se
from selectivity_eval.core.cli.layers_command import layer_rows
from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.extraction.extract import extract_activations, resolve_layers
from selectivity_eval.core.sources.base import LoadedDataset, LoadedModel
from selectivity_eval.core.sources.layout import tokens
from selectivity_eval.plugins.models.torchvision_models import TorchvisionSource, layouts_of
from selectivity_eval.schemas.spec import LayerSpec


@pytest.fixture(scope="module")
def vit():
    return TorchvisionSource(arch="vit_b_16").load(seed=0)


@pytest.fixture(scope="module")
def small_vit(vit):
    """vit_b_16 with the plugin's layouts, built for 32x32 images (4 patches and the class token), to keep CPU time low."""
    torch.manual_seed(0)
    module = torchvision.models.vit_b_16(image_size=32).eval()
    return LoadedModel(module, layouts=vit.layouts, transform=vit.transform, example_input=torch.zeros(1, 3, 32, 32))


def _images(n: int, side: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _extract(model: LoadedModel, layers: list[LayerSpec], inputs: torch.Tensor) -> dict[str, np.ndarray]:
    labels = np.arange(len(inputs)) % 2
    data = LoadedDataset(TensorDataset(inputs, torch.from_numpy(labels)), labels, ["a", "b"])
    resolved = resolve_layers(model, layers)
    return extract_activations(model, data, resolved, batch_size=len(inputs), device=torch.device("cpu")).activations


def _raw_output(model: LoadedModel, module_name: str, inputs: torch.Tensor) -> torch.Tensor:
    captured = []
    module = dict(model.module.named_modules())[module_name]
    handle = module.register_forward_hook(lambda _m, _i, output: captured.append(output.detach().clone()))
    try:
        with torch.inference_mode():
            model.module.eval()(inputs)
    finally:
        handle.remove()
    return captured[0]


def test_vit_encoder_ln_has_one_unit_per_feature_and_takes_the_class_token(vit):
    rows = {row["layer"]: row for row in layer_rows(vit)[0]}
    assert rows["encoder.ln"]["output"] == [197, 768]
    assert rows["encoder.ln"]["units"] == 768 and rows["encoder.ln"]["reduction"] == "tokens: cls"
    assert rows["encoder.layers.encoder_layer_3.mlp.0"]["units"] == 3072
    assert rows["conv_proj"]["units"] == 768 and rows["conv_proj"]["reduction"] == "pool: max"
    assert rows["heads.head"]["units"] == 1000 and rows["heads.head"]["reduction"] == "-"


def test_vit_token_reductions_agree_with_a_hand_computation_on_the_raw_hook_output(small_vit):
    vit = small_vit
    inputs = _images(2, 32)
    raw = _raw_output(vit, "encoder.ln", inputs)
    assert raw.shape == (2, 5, 768)
    choices = ["cls", "mean", "max", "patch_mean", "patch_max"]
    # One alias of encoder.ln per reduction (a spec names each layer once), all in one extraction.
    vit = replace(vit, aliases={choice: "encoder.ln" for choice in choices})
    layers = [LayerSpec(name=choice, tokens=choice) for choice in choices] + [LayerSpec(name="encoder.ln")]
    out = _extract(vit, layers, inputs)
    expected = {
        "cls": raw[:, 0],
        "mean": raw.mean(dim=1),
        "max": raw.amax(dim=1),
        "patch_mean": raw[:, 1:].mean(dim=1),
        "patch_max": raw[:, 1:].amax(dim=1),
    }
    for choice in choices:
        assert out[choice].shape == (2, 768)
        np.testing.assert_allclose(out[choice], expected[choice].numpy(), rtol=1e-5, atol=1e-5, err_msg=choice)
    assert not np.allclose(out["mean"], out["patch_mean"])  # the class token counts in one, not the other
    np.testing.assert_array_equal(out["encoder.ln"], out["cls"])


def test_am_on_a_vit_feature_maximises_its_class_token_value(small_vit):
    vit = small_vit
    result = se.maximise(vit, "encoder.ln", [5, 700], steps=2, batch_size=2, jitter=0, rotate=0, scale=(1, 1))
    assert result.images.shape == (2, 3, 32, 32)
    normalise = vit.transform.preset
    mean = torch.tensor(normalise.mean).view(1, 3, 1, 1)
    std = torch.tensor(normalise.std).view(1, 3, 1, 1)
    raw = _raw_output(vit, "encoder.ln", (result.images - mean) / std)
    expected = torch.stack([raw[0, 0, 5], raw[1, 0, 700]])
    torch.testing.assert_close(result.activations, expected, rtol=1e-4, atol=1e-4)
    mean_result = se.maximise(vit, "encoder.ln", [5], steps=1, objective="mean", jitter=0, rotate=0, scale=(1, 1))
    raw = _raw_output(vit, "encoder.ln", (mean_result.images - mean) / std)
    torch.testing.assert_close(mean_result.activations, raw[:, :, 5].mean(1), rtol=1e-4, atol=1e-4)


def test_swin_maps_are_channels_last_and_pooled_per_channel():
    """A small torchvision Swin (embedding 16, one block per stage) with the plugin's Swin layouts, to keep CPU time low."""
    torch.manual_seed(0)
    module = SwinTransformer([4, 4], 16, [1, 1, 1, 1], [1, 1, 1, 1], [2, 2]).eval()
    swin = LoadedModel(module, layouts=layouts_of("swin_t"), example_input=torch.zeros(1, 3, 64, 64))
    inputs = _images(2, 64, seed=1)
    raw = _raw_output(swin, "norm", inputs)
    assert raw.shape == (2, 2, 2, 128)
    out = _extract(swin, [LayerSpec(name="norm"), LayerSpec(name="features.0.0", pool="mean")], inputs)
    np.testing.assert_allclose(out["norm"], raw.amax(dim=(1, 2)).numpy(), rtol=1e-5, atol=1e-5)
    conv = _raw_output(swin, "features.0.0", inputs)
    np.testing.assert_allclose(out["features.0.0"], conv.mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-5)
    rows = {row["layer"]: row for row in layer_rows(swin)[0]}
    assert rows["norm"]["units"] == 128 and rows["norm"]["reduction"] == "pool: max (HWC map)"
    assert rows["features.0.0"]["units"] == 16 and rows["features.0.0"]["reduction"] == "pool: max"
    with pytest.raises(UserInputError, match="tokens: cls.*declares its output channels-last"):
        _extract(swin, [LayerSpec(name="norm", tokens="cls")], inputs)


class TinyTransformer(nn.Module):
    """Patches to tokens, a linear layer over the features: (batch, 5, 6) outputs, nothing declared."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Linear(4, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        hidden = self.mix(x.view(x.shape[0], 5, 4))
        return self.head(hidden.mean(1))


def test_an_undeclared_3d_output_is_an_error_unless_the_spec_chooses():
    torch.manual_seed(0)
    inputs = torch.randn(3, 20)
    model = LoadedModel(TinyTransformer().eval(), example_input=torch.zeros(1, 20))
    with pytest.raises(UserInputError, match=r"Layer 'mix'.*3-D.*`tokens`.*`pool`"):
        _extract(model, [LayerSpec(name="mix")], inputs)
    raw = _raw_output(model, "mix", inputs)
    as_tokens = _extract(model, [LayerSpec(name="mix", tokens="max")], inputs)["mix"]
    np.testing.assert_allclose(as_tokens, raw.amax(dim=1).numpy(), rtol=1e-6)
    as_channels = _extract(model, [LayerSpec(name="mix", pool="max")], inputs)["mix"]
    np.testing.assert_allclose(as_channels, raw.amax(dim=2).numpy(), rtol=1e-6)
    with pytest.raises(UserInputError, match="patch tokens.*does not declare its prefix tokens"):
        _extract(model, [LayerSpec(name="mix", tokens="patch_mean")], inputs)
    row = next(row for row in layer_rows(model)[0] if row["layer"] == "mix")
    assert row["units"] is None and row["reduction"] is None
    row = next(row for row in layer_rows(model, [LayerSpec(name="mix", tokens="mean")])[0] if row["layer"] == "mix")
    assert row["units"] == 6 and row["reduction"] == "tokens: mean"


def test_cls_on_a_model_without_a_class_token_is_refused_and_patch_tokens_skip_the_prefix():
    torch.manual_seed(0)
    inputs = torch.randn(3, 20)
    model = LoadedModel(TinyTransformer().eval(), layouts={"mix": tokens(0, class_token=False)})
    with pytest.raises(UserInputError, match="no class token"):
        _extract(model, [LayerSpec(name="mix", tokens="cls")], inputs)
    raw = _raw_output(model, "mix", inputs)
    np.testing.assert_allclose(_extract(model, [LayerSpec(name="mix")], inputs)["mix"], raw.mean(1).numpy(), rtol=1e-6)
    registers = LoadedModel(model.module, layouts={"mix": tokens(2, class_token=True)})
    out = _extract(registers, [LayerSpec(name="mix", tokens="patch_max")], inputs)["mix"]
    np.testing.assert_allclose(out, raw[:, 2:].amax(1).numpy(), rtol=1e-6)


class TinyImageTransformer(nn.Module):
    """A 2x8x8 image as 4 tokens of 32 features, a linear layer over them: nothing declared."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Linear(32, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        tokens = x.reshape(x.shape[0], 2, 2, 4, 2, 4).permute(0, 2, 4, 1, 3, 5).reshape(x.shape[0], 4, 32)
        return self.head(self.mix(tokens).mean(1))


def test_am_reads_an_undeclared_layer_as_tokens_where_the_spec_does(tmp_path):
    from selectivity_eval.plugins.am.gradient_ascent import GradientAscent

    torch.manual_seed(0)
    model = LoadedModel(TinyImageTransformer().eval(), example_input=torch.zeros(1, 2, 8, 8))
    layers = resolve_layers(model, [LayerSpec(name="mix", tokens="mean")])
    method = GradientAscent(
        {"units": [1, 5], "steps": 2, "parameterisation": "pixel", "jitter": 0, "rotate": 0, "scale": [1, 1],
         "decorrelate": False, "objective": "mean", "png_min_size": 8}
    )
    method.validate(model, layers)  # 6 units (features), not 4 (tokens): unit 5 is in range
    context = se.AMContext(
        model=model, layers={"mix": "mix"}, activations={}, results={}, output_dir=tmp_path,
        device=torch.device("cpu"), seed=0, layer_settings={"mix": layers[0]},
    )
    method.run(context)
    rows = (tmp_path / "am.csv").read_text().splitlines()
    assert [row.split(",")[1] for row in rows[1:]] == ["1", "5"]
    assert (tmp_path / "am" / "mix" / "5.png").is_file()
    with pytest.raises(UserInputError, match="unit 6 is out of range for layer 'mix', which has 6 units"):
        GradientAscent({"units": [6]}).validate(model, layers)
