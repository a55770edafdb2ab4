"""``se.maximise``: activation maximisation as a library call, without a spec or a run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.cli.progress import Reporter
from selectivity_eval.core.sources.base import LoadedModel
from selectivity_eval.core.extraction.reduce import am_reduction
from selectivity_eval.plugins.am.engine import layer_outputs, model_device, optimise_units
from selectivity_eval.plugins.am.input_space import input_space
from selectivity_eval.plugins.am.params import OptimiseParams


@dataclass
class AMResult:
    """Images that maximise units of one layer, one per unit, in the order the units were given.

    ``images``: (N, C, H, W) in [0, 1] (before the model's normalisation), on the CPU;
    ``activations``: (N,) the objective each clean image reaches; ``top1`` and ``top1_probability``:
    the network's own class for each image and its softmax probability (None when the model's output
    is not a (batch, classes) tensor).
    """

    layer: str
    units: list[int]
    images: torch.Tensor
    activations: torch.Tensor
    top1: torch.Tensor | None
    top1_probability: torch.Tensor | None


def maximise(
    model: LoadedModel | torch.nn.Module,
    layer: str,
    units: Sequence[int],
    *,
    device: torch.device | str | None = None,
    progress: bool = False,
    **params: Any,
) -> AMResult:
    """Gradient ascent on the input for ``units`` of ``layer``, with the ``gradient-ascent`` parameters.

    ``model`` is a ``LoadedModel`` (its ``example_input`` gives the image size, its transform the
    normalisation) or a bare ``nn.Module`` (then give ``image_size`` and ``channels``, and perhaps
    ``normalise='imagenet'``). ``layer`` is a module name or an alias. ``params`` are those of the
    spec's ``am:`` block besides ``layers`` and ``units`` (``steps``, ``lr``, ``parameterisation``,
    ``seed`` (default 0), ...); unknown ones are refused. ``device`` defaults to where the model is;
    the model is moved there.
    """
    settings = OptimiseParams.model_validate(params)
    loaded = model if isinstance(model, LoadedModel) else LoadedModel(module=model)
    module_name = loaded.resolve_layer(layer)
    if module_name is None:
        aliases = ", ".join(f"{a} -> {t}" for a, t in loaded.aliases.items()) or "none"
        raise UserInputError(f"layer: the model has no layer {layer!r}. Its aliases: {aliases}.")
    units = [int(unit) for unit in units]
    if not units:
        raise UserInputError("units: give at least one unit index.")
    device = torch.device(device) if device is not None else model_device(loaded.module)
    space = input_space(loaded, settings)
    shape = layer_outputs(loaded, [module_name], space)[module_name]
    n_units = am_reduction(layer, loaded.layout_of(module_name), settings.objective).units(shape)
    for index, unit in enumerate(units):
        if not 0 <= unit < n_units:
            raise UserInputError(f"units[{index}]: unit {unit} is out of range; layer {layer!r} has {n_units} units.")
    reporter = Reporter(quiet=not progress)
    with reporter.live():
        bar = reporter.steps(f"AM {layer}", len(units) * settings.steps)
        result = optimise_units(
            loaded, module_name, units, settings, seed=settings.seed or 0, device=device, space=space, steps_bar=bar
        )
    return AMResult(module_name, units, result.images, result.activations, result.top1, result.top1_probability)
