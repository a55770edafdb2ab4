"""The ``digits-cnn`` model: a small CNN trained on the digits data set, its weights shipped with us."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from pydantic import Field
from torch import nn

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.hookspecs import hookimpl
from selectivity_eval.core.sources import LoadedModel, ModelSource
from selectivity_eval.core.weights import file_sha256, load_state_dict
from selectivity_eval.schemas.params import PluginParams

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


class DigitsCNNParams(PluginParams):
    weights: str = Field(
        "builtin",
        description="'builtin' (the shipped trained weights), 'none' (random, seeded) or a path to a state dict.",
    )


def builtin_weights_path() -> Path:
    return Path(str(resources.files("selectivity_eval.plugins").joinpath(BUILTIN_WEIGHTS)))


class DigitsCNNSource(ModelSource):
    """Small CNN for 8x8 digits (layers conv1, conv2, fc1, fc2 = logits), trained weights shipped."""

    name = "digits-cnn"
    Params = DigitsCNNParams

    def load(self, *, seed: int) -> LoadedModel:
        torch.manual_seed(seed)
        module = DigitsCNN()
        identity: dict[str, object] = {"architecture": "DigitsCNN", "weights": self.params.weights}
        if self.params.weights != "none":
            path = builtin_weights_path() if self.params.weights == "builtin" else Path(self.params.weights).expanduser()
            try:
                module.load_state_dict(load_state_dict(path))
            except RuntimeError as error:
                raise UserInputError(f"Weights file {str(path)!r} does not fit the digits CNN: {error}") from None
            identity["weights_sha256"] = file_sha256(path)
        else:
            identity["init_seed"] = seed
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
