"""The ``digits-cnn`` model: a small CNN trained on the digits data set, its weights shipped with us."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from selectivity_eval.core.registry.hookspecs import hookimpl
from selectivity_eval.core.sources.base import LoadedModel, ModelSource
from selectivity_eval.core.sources.weights import ShippedWeightsParams, load_shipped_weights, package_file

ALIASES = {"conv1": "features.0", "conv2": "features.2", "fc1": "classifier.1", "fc2": "classifier.3"}
BUILTIN_WEIGHTS = "digits_cnn.pt"


class DigitsCNN(nn.Module):
    """Two conv and two fully connected layers for 1x8x8 inputs; ``fc2`` gives the 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def builtin_weights_path() -> Path:
    return package_file(BUILTIN_WEIGHTS)


class DigitsCNNSource(ModelSource):
    """Small CNN for 8x8 digits (layers conv1, conv2, fc1, fc2 = logits), trained weights shipped."""

    name = "digits-cnn"
    Params = ShippedWeightsParams

    def load(self, *, seed: int) -> LoadedModel:
        torch.manual_seed(seed)
        module = DigitsCNN()
        identity = {
            "architecture": "DigitsCNN",
            **load_shipped_weights(module, self.params.weights, BUILTIN_WEIGHTS, seed, "the digits CNN"),
        }
        module.eval()
        return LoadedModel(
            module=module,
            aliases=dict(ALIASES),
            class_names=[str(digit) for digit in range(10)],
            identity=identity,
            example_input=torch.zeros(1, 1, 8, 8),
        )


@hookimpl
def register_models(register):
    register(DigitsCNNSource)
