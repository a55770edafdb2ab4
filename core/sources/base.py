"""Model and data set sources: the plugins that hand the engine a network and its images."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from selectivity_eval.core.errors import out_of_memory
from selectivity_eval.core.registry.plugin_base import Plugin
from selectivity_eval.core.sources.layout import OutputLayout, declared_layout


TF32_SETTINGS = (
    (torch.backends.cudnn.conv, "fp32_precision"),
    (torch.backends.cudnn.rnn, "fp32_precision"),
    (torch.backends.cuda.matmul, "fp32_precision"),
)


@contextmanager
def ieee_float32() -> Iterator[None]:
    """Full float32 arithmetic in CUDA convolutions, recurrent layers and matrix products for the block.

    torch lets cuDNN convolutions use TF32 (a 10-bit mantissa) by default, which moves activations
    by about 1e-3 relative: enough to reorder near ties, and to make a GPU run disagree with the CPU
    run of the same study. Inside the block TF32 is off; torch's settings are restored after it.
    bfloat16 autocast (AM's ``precision: bfloat16``) is unaffected.
    """
    saved = [getattr(owner, name) for owner, name in TF32_SETTINGS]
    for owner, name in TF32_SETTINGS:
        setattr(owner, name, "ieee")
    try:
        yield
    finally:
        for (owner, name), value in zip(TF32_SETTINGS, saved):
            setattr(owner, name, value)


@dataclass
class LoadedModel:
    """A network ready for extraction.

    ``aliases`` maps friendly layer names (``fc2``) to dotted ``named_modules()`` names;
    ``transform`` turns one raw data set item into the network's input tensor (None: items already are);
    ``identity`` says exactly which weights these are (e.g. a sha256), for run.json and caching;
    ``example_input`` is an optional batch (usually of one) of the network's input, e.g. zeros of
    shape (1, 3, 224, 224): one forward pass of it gives every module's output size
    (``selectivity-eval layers``);
    ``layouts`` declares how outputs are laid out, module name prefix -> ``OutputLayout`` (``""``:
    every module), e.g. ``{"encoder": tokens(1, class_token=True)}`` for a ViT whose encoder gives
    (batch, tokens, features); undeclared outputs are channels-first (see core/sources/layout.py).
    """

    module: torch.nn.Module
    aliases: dict[str, str] = field(default_factory=dict)
    transform: Callable[[Any], torch.Tensor] | None = None
    class_names: list[str] | None = None
    identity: dict[str, Any] = field(default_factory=dict)
    example_input: torch.Tensor | None = None
    channels_last: bool = field(default=True, compare=False)
    layouts: dict[str, OutputLayout] = field(default_factory=dict)

    def forward(self, inputs: torch.Tensor):
        """The network's output for a batch, images fed channels-last when the network takes them.

        Convolutions and pooling run 1.5-2x faster on channels-last images with oneDNN on CPU
        (docs/performance.md). A network whose own code needs contiguous images (a ``view`` of its
        input, say) raises on them; that pass is repeated on contiguous images, and when it works
        this model gets contiguous images from then on. An error the contiguous pass repeats, and
        running out of memory, reach the caller with the setting unchanged. Values agree with a
        contiguous pass to float rounding. On a GPU the pass is IEEE float32 (``ieee_float32``).
        """
        with ieee_float32():
            if not (self.channels_last and inputs.ndim == 4 and inputs.is_floating_point()):
                return self.module(inputs)
            try:
                return self.module(inputs.contiguous(memory_format=torch.channels_last))
            except RuntimeError as error:
                if out_of_memory(error):
                    raise
                output = self.module(inputs)
                self.channels_last = False
                return output

    def untrained(self, seed: int) -> LoadedModel:
        """The same architecture with its default random initialisation, seeded: a baseline.

        Every submodule that can (convolutions, linear layers, normalisation, recurrent cells)
        re-draws its parameters with its own ``reset_parameters``, in module order.
        """
        module = copy.deepcopy(self.module)
        torch.manual_seed(seed)
        for submodule in module.modules():
            if hasattr(submodule, "reset_parameters"):
                submodule.reset_parameters()
        identity = {"untrained_of": self.identity, "init_seed": seed}
        return replace(self, module=module.eval(), identity=identity)

    def resolve_layer(self, name: str) -> str | None:
        """The dotted module name for a layer name or alias; None when the model has no such layer."""
        target = self.aliases.get(name, name)
        modules = dict(self.module.named_modules())
        return target if target and target in modules else None

    def layout_of(self, module_name: str) -> OutputLayout | None:
        """The declared layout of a module's output; None when the model declares none for it."""
        return declared_layout(self.layouts, module_name, dict(self.module.named_modules()).get(module_name))

    def layer_names(self) -> list[str]:
        return [name for name, _ in self.module.named_modules() if name]


class ModelSource(Plugin):
    """Makes a ``LoadedModel`` from validated parameters."""

    kind: ClassVar[str] = "model"

    def load(self, *, seed: int) -> LoadedModel:
        raise NotImplementedError


@dataclass
class LoadedDataset:
    """Images with class labels: ``dataset[i]`` is ``(input, label)``; ``labels`` holds them all up front.

    An item that cannot be read is ``(None, label)``; ``on_unreadable`` says whether the engine
    skips it (``"skip"``, counted in run.json) or stops naming ``describe(i)`` (``"fail"``).
    ``correct_only`` keeps only images whose top-1 prediction is their class, with
    ``model_class_of_label[label]`` the model output index of a label (identity when None).
    """

    dataset: Dataset
    labels: np.ndarray
    class_names: list[str]
    identity: dict[str, Any] = field(default_factory=dict)
    describe: Callable[[int], str] | None = None
    num_workers: int = 0
    on_unreadable: str = "fail"
    correct_only: bool = False
    model_class_of_label: np.ndarray | None = None

    def name_of(self, index: int) -> str:
        return self.describe(index) if self.describe is not None else f"item {index}"

    def __len__(self) -> int:
        return len(self.labels)


class DatasetSource(Plugin):
    """Makes a ``LoadedDataset``; ``transform`` is the model's input transform, applied per item."""

    kind: ClassVar[str] = "dataset"

    def load(self, *, seed: int, transform: Callable[[Any], torch.Tensor] | None = None) -> LoadedDataset:
        raise NotImplementedError
