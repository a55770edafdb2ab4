"""A plugin written the way a third party would write one: every hook, through the public API."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.utils.data import TensorDataset

import selectivity_eval as se


class MaxMinusMeanParams(se.PluginParams):
    scale: float = Field(1.0, gt=0)


class MaxMinusMean(se.Measure):
    """How far each unit's peak stands above its mean activation."""

    name = "max-minus-mean"
    Params = MaxMinusMeanParams
    columns = {"max_minus_mean": se.Column.VALUE}

    def compute(self, stats):
        mean = stats.total_sum / stats.n_images
        return {"max_minus_mean": (stats.unit_max.double() - mean) * self.params.scale}


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 6)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


class TinyModel(se.ModelSource):
    """A 4-6-3 perceptron with seeded random weights."""

    name = "tiny-mlp"

    def load(self, *, seed):
        torch.manual_seed(seed)
        return se.LoadedModel(module=TinyNet(), aliases={"h": "hidden"})


class BlobsParams(se.PluginParams):
    n_per_class: int = Field(20, ge=1)


class Blobs(se.DatasetSource):
    """Three Gaussian blobs in four dimensions."""

    name = "blobs"
    Params = BlobsParams

    def load(self, *, seed, transform=None):
        rng = np.random.default_rng(seed)
        n = self.params.n_per_class
        labels = np.repeat(np.arange(3), n)
        points = rng.normal(size=(3 * n, 4)).astype(np.float32) + labels[:, None].astype(np.float32) * 2
        return se.LoadedDataset(
            dataset=TensorDataset(torch.from_numpy(points), torch.from_numpy(labels)),
            labels=labels,
            class_names=["a", "b", "c"],
        )


class MarkerParams(se.PluginParams):
    note: str = "hello"


class WriteMarker(se.AMMethod):
    """Writes one file per measured layer naming its module and unit count."""

    name = "marker"
    Params = MarkerParams

    def run(self, context):
        paths = []
        for label, module_name in context.layers.items():
            path = context.output_dir / f"marker-{label}.txt"
            path.write_text(f"{self.params.note} {module_name} {context.activations[label].shape[1]}")
            paths.append(path)
        return paths


class Broken(se.Measure):
    """Always fails: for tests of what a run does when a measure raises."""

    name = "broken"
    columns = {"broken": se.Column.VALUE}

    def compute(self, stats):
        raise RuntimeError("deliberate failure")


class BrokenPlugin:
    """Registers only ``Broken``; register it on its own, not with this module."""

    @se.hookimpl
    def register_measures(self, register):
        register(Broken)


@se.hookimpl
def register_models(register):
    register(TinyModel)


@se.hookimpl
def register_datasets(register):
    register(Blobs)


@se.hookimpl
def register_measures(register):
    register(MaxMinusMean)


@se.hookimpl
def register_am_methods(register):
    register(WriteMarker)
