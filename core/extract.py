"""Activations of chosen layers, captured with forward hooks, one (images x units) matrix per layer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.progress import Reporter
from selectivity_eval.core.sources import LoadedDataset, LoadedModel
from selectivity_eval.schemas.spec import LayerSpec


@dataclass(frozen=True)
class ResolvedLayer:
    """A layer of the spec bound to the module it names."""

    label: str
    module_name: str
    pool: str
    relu: bool


def resolve_layers(model: LoadedModel, layers: list[LayerSpec]) -> list[ResolvedLayer]:
    """Bind each spec layer to a module; an unknown name is an error listing what exists."""
    resolved, unknown = [], []
    for index, layer in enumerate(layers):
        module_name = model.resolve_layer(layer.name)
        if module_name is None:
            unknown.append(f"layers[{index}].name: {layer.name!r}")
        else:
            resolved.append(ResolvedLayer(layer.name, module_name, layer.pool, layer.relu))
    if unknown:
        aliases = ", ".join(f"{alias} -> {target}" for alias, target in model.aliases.items()) or "none"
        raise UserInputError(
            f"Unknown layer {'; '.join(unknown)}. The model's aliases: {aliases}. Its modules: "
            f"{', '.join(model.layer_names())}."
        )
    return resolved


def reduce_output(output, pool: str, relu: bool) -> torch.Tensor:
    """One float32 value per unit and image from a module's output, copied so in-place ops can't alter it."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    values = output.detach()
    if relu:
        values = torch.relu(values)
    if values.ndim >= 3:
        spatial = tuple(range(2, values.ndim))
        if pool == "max":
            values = values.amax(dim=spatial)
        elif pool == "mean":
            values = values.mean(dim=spatial)
        else:
            values = values[(slice(None), slice(None), *(size // 2 for size in values.shape[2:]))]
    elif values.ndim == 1:
        values = values.unsqueeze(1)
    return values.to(torch.float32, copy=True)


def extract_activations(
    model: LoadedModel,
    data: LoadedDataset,
    layers: list[ResolvedLayer],
    *,
    batch_size: int,
    device: torch.device,
    reporter: Reporter | None = None,
) -> dict[str, np.ndarray]:
    """Run the data set through the model once and return each layer's activations as float32."""
    modules = dict(model.module.named_modules())
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for layer in layers:
        def hook(_module, _inputs, output, layer=layer):
            captured[layer.label] = reduce_output(output, layer.pool, layer.relu)

        handles.append(modules[layer.module_name].register_forward_hook(hook))

    n_images = len(data)
    matrices: dict[str, np.ndarray] = {}
    steps = reporter.steps("Extracting activations", n_images) if reporter else None
    loader = DataLoader(data.dataset, batch_size=batch_size, shuffle=False)
    model.module.to(device).eval()
    start = 0
    try:
        with torch.inference_mode():
            for inputs, _labels in loader:
                model.module(inputs.to(device))
                stop = start + len(inputs)
                for label, values in captured.items():
                    if label not in matrices:
                        matrices[label] = np.empty((n_images, values.shape[1]), dtype=np.float32)
                    matrices[label][start:stop] = values.cpu().numpy()
                captured.clear()
                start = stop
                if steps:
                    steps.advance(len(inputs))
    finally:
        for handle in handles:
            handle.remove()
    missing = [layer.label for layer in layers if layer.label not in matrices]
    if missing:
        raise UserInputError(f"Layers {', '.join(missing)} never ran in the model's forward pass.")
    return matrices
