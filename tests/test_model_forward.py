"""``LoadedModel.forward``: channels-last images where the network takes them, contiguous where it can't."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from selectivity_eval.core.extraction.extract import ResolvedLayer, extract_activations
from selectivity_eval.core.sources.base import LoadedDataset, LoadedModel


class ViewsItsInput(nn.Module):
    """Needs contiguous images: ``view`` cannot flatten a channels-last tensor."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x):
        return self.fc(x.view(x.shape[0], -1))


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 6, 3), nn.Flatten(), nn.Linear(6 * 5 * 5, 4)
    ).eval()


def test_a_conv_network_gets_channels_last_images_and_the_same_values():
    network = small_cnn()
    seen = []
    network[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    model = LoadedModel(module=network)
    images = torch.rand(4, 3, 16, 16)
    with torch.inference_mode():
        output = model.forward(images)
        plain = network(images)
    assert seen == [True, False] and model.channels_last
    assert torch.allclose(output, plain, atol=1e-5)


def test_a_network_that_views_its_input_falls_back_to_contiguous_images_for_good():
    network = ViewsItsInput()
    images = torch.rand(2, 3, 8, 8)
    with pytest.raises(RuntimeError):
        network(images.contiguous(memory_format=torch.channels_last))
    model = LoadedModel(module=network)
    with torch.inference_mode():
        assert torch.equal(model.forward(images), network(images))
        assert model.channels_last is False
        assert torch.equal(model.forward(images), network(images))


def test_a_genuine_error_still_reaches_the_caller_and_keeps_channels_last():
    model = LoadedModel(module=ViewsItsInput())
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"), torch.inference_mode():
        model.forward(torch.rand(2, 3, 9, 9))
    assert model.channels_last


def test_running_out_of_memory_is_not_taken_for_a_layout_problem():
    calls = []

    def out_of_memory(_module, args):
        calls.append(args[0].is_contiguous())
        raise torch.OutOfMemoryError("out of memory (simulated)")

    network = small_cnn()
    network.register_forward_pre_hook(out_of_memory)
    model = LoadedModel(module=network)
    with pytest.raises(torch.OutOfMemoryError), torch.inference_mode():
        model.forward(torch.rand(2, 3, 16, 16))
    assert calls == [False] and model.channels_last


def test_inputs_that_are_not_image_batches_pass_through_unchanged():
    seen = []
    network = nn.Linear(5, 2)
    network.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape))
    model = LoadedModel(module=network)
    with torch.inference_mode():
        assert torch.equal(model.forward(torch.ones(3, 5)), network(torch.ones(3, 5)))
    assert seen == [torch.Size([3, 5])] * 2 and model.channels_last


def test_extraction_from_a_network_that_needs_contiguous_images():
    images = torch.rand(5, 3, 8, 8)
    labels = np.arange(5) % 2
    data = LoadedDataset(TensorDataset(images, torch.from_numpy(labels)), labels, ["a", "b"])
    model = LoadedModel(module=ViewsItsInput())
    extraction = extract_activations(
        model, data, [ResolvedLayer("fc", "fc", "max", False)], batch_size=2, device=torch.device("cpu")
    )
    with torch.inference_mode():
        expected = model.module(images).numpy()
    np.testing.assert_allclose(extraction.activations["fc"], expected, rtol=1e-6)
    assert not model.channels_last


def test_every_pass_is_ieee_float32_and_torch_settings_come_back_after_it():
    def settings():
        return torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision

    seen = []
    network = small_cnn()
    network.register_forward_pre_hook(lambda _m, _args: seen.append(settings()))
    before = settings()
    assert before != ("ieee", "ieee")  # torch's defaults allow TF32 in cuDNN convolutions
    with torch.inference_mode():
        LoadedModel(module=network).forward(torch.rand(2, 3, 16, 16))
    assert seen == [("ieee", "ieee")] and settings() == before
