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


def _bits(values: torch.Tensor) -> torch.Tensor:
    return values.contiguous().view(torch.int32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_max_then_relu_is_relu_then_max_bit_for_bit(seed):
    """reduce_output pools before rectifying (less work); on random conv maps, with signed zeros, ties,
    all-negative channels and NaN, it gives the same bits as rectifying the whole map first."""
    generator = torch.Generator().manual_seed(seed)
    maps = torch.randn(8, 16, 13, 13, generator=generator)
    maps[0, :4] = -maps[0, :4].abs()  # channels that are negative everywhere
    maps[1, 0] = -0.0
    maps[1, 1] = 0.0
    maps[1, 2, ::2] = -0.0  # +0 and -0 mixed with negatives
    maps[1, 2, 1::2] = -1.0
    maps[2, 3, 4, 4] = float("nan")
    maps[3, 5] = maps[3, 5].round()  # ties at the maximum
    maps = maps.contiguous(memory_format=torch.channels_last)  # as LoadedModel.forward feeds the network
    for pool in ("max", "center"):
        expected = torch.relu(maps)
        expected = expected.amax(dim=(2, 3)) if pool == "max" else expected[:, :, 6, 6]
        assert torch.equal(_bits(reduce_output(maps, pool, True)), _bits(expected.to(torch.float32)))
    assert torch.equal(
        _bits(reduce_output(maps, "mean", True)), _bits(torch.relu(maps).mean(dim=(2, 3)))
    )  # a mean still rectifies the whole map first


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
