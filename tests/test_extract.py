"""Forward-hook extraction: pooling, ReLU, aliases, and copies that in-place ops cannot alter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.extraction.extract import extract_activations, reduce_output, resolve_layers
from selectivity_eval.core.sources.base import LoadedDataset, LoadedModel
from selectivity_eval.schemas.spec import LayerSpec


def test_pooling_of_conv_maps():
    maps = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5) - 40
    assert torch.equal(reduce_output(maps, "max", False), maps.amax(dim=(2, 3)))
    assert torch.allclose(reduce_output(maps, "mean", False), maps.mean(dim=(2, 3)))
    assert torch.equal(reduce_output(maps, "center", False), maps[:, :, 2, 2])
    assert torch.equal(reduce_output(maps, "mean", True), torch.relu(maps).mean(dim=(2, 3)))
    assert reduce_output(maps, "max", False).dtype == torch.float32


class InPlaceNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.act(self.fc(x)))


def _extract(model, layers, inputs, batch_size=3):
    labels = np.arange(len(inputs)) % 2
    data = LoadedDataset(TensorDataset(inputs, torch.from_numpy(labels)), labels, ["a", "b"])
    return extract_activations(
        model, data, resolve_layers(model, layers), batch_size=batch_size, device=torch.device("cpu")
    ).activations


def test_in_place_relu_after_the_hooked_module_does_not_alter_the_captured_values():
    torch.manual_seed(0)
    net = InPlaceNet().eval()
    inputs = torch.randn(10, 3)
    model = LoadedModel(module=net, aliases={"hidden": "fc"})
    out = _extract(model, [LayerSpec(name="hidden"), LayerSpec(name="fc", relu=True)], inputs)
    with torch.no_grad():
        expected = net.fc(inputs).numpy()
    assert (expected < 0).any()
    assert (out["hidden"] < 0).sum() == (expected < 0).sum()
    np.testing.assert_allclose(out["hidden"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["fc"], np.maximum(expected, 0), rtol=1e-5, atol=1e-6)


def test_batch_size_does_not_change_activations():
    torch.manual_seed(0)
    model = LoadedModel(module=InPlaceNet().eval())
    inputs = torch.randn(11, 3)
    layers = [LayerSpec(name="head")]
    np.testing.assert_allclose(_extract(model, layers, inputs, 1)["head"], _extract(model, layers, inputs, 11)["head"], rtol=1e-6)


def test_unknown_layer_lists_what_exists():
    model = LoadedModel(module=InPlaceNet(), aliases={"hidden": "fc"})
    with pytest.raises(UserInputError) as error:
        resolve_layers(model, [LayerSpec(name="fc"), LayerSpec(name="fc7")])
    assert "layers[1].name: 'fc7'" in str(error.value) and "hidden -> fc" in str(error.value)
