"""Gradient ascent on the input for many units at once, each image of a batch tied to its own unit.

The objective of image ``b`` is ``out[b, unit_b]`` of the hooked module's own output (before any
ReLU that follows it; a conv channel at the centre of its map or its mean; a transformer feature at
the class token or its mean over tokens, by the layout the model declares), and the loss of a
batch is minus the sum over its images. Nothing couples the images: the model runs in eval mode,
Adam works element by element, and every random draw (initial image, transforms) comes from a
generator seeded per unit. So a unit's image is the same, up to float rounding, alone or in any batch.
"""

from __future__ import annotations

import gc
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from selectivity_eval.core.errors import UserInputError, out_of_memory
from selectivity_eval.core.cli.progress import Steps
from selectivity_eval.core.extraction.reduce import am_reduction, reduce_tokens
from selectivity_eval.core.sources.base import LoadedModel
from selectivity_eval.core.sources.layout import OutputLayout
from selectivity_eval.plugins.am.image import ImageParameters
from selectivity_eval.plugins.am.input_space import InputSpace, input_space
from selectivity_eval.plugins.am.params import OptimiseParams
from selectivity_eval.plugins.am.transforms import RandomAffine, l2_decay, total_variation

class StopForward(Exception):
    """Raised by the objective hook to skip the layers after the one being maximised."""


def unit_values(output: torch.Tensor, units: torch.Tensor, objective: str, layout: OutputLayout | None = None) -> torch.Tensor:
    """``output[b, units[b]]`` reduced as ``am_reduction`` says (a conv channel at its centre or its
    mean; a token feature at the class token or its mean over tokens): shape (batch,)."""
    rows = torch.arange(output.shape[0], device=output.device)
    if output.ndim < 3:
        return output[rows, units]
    reduction = am_reduction("objective", layout, objective)
    kind = reduction.layout_for(output.ndim)
    if kind.kind == "tokens":
        picked = output[rows, :, units]
        return reduce_tokens(picked.unsqueeze(-1), reduction.tokens, kind.prefix_tokens or 0).squeeze(-1)
    if kind.kind == "channels_last":
        output = output.movedim(-1, 1)
    picked = output[rows, units]
    if objective == "mean":
        return picked.flatten(1).mean(1)
    return picked[(slice(None), *(size // 2 for size in picked.shape[1:]))]


class Objective:
    """A forward hook that takes each image's unit from the module's first output in a pass."""

    def __init__(self, module: torch.nn.Module, units: torch.Tensor, objective: str, stop: bool, layout=None):
        self.module, self.units, self.objective, self.stop, self.layout = module, units, objective, stop, layout
        self.value: torch.Tensor | None = None

    def _hook(self, _module, _inputs, output):
        if self.value is not None:
            return
        if isinstance(output, (tuple, list)):
            output = output[0]
        self.value = unit_values(output, self.units, self.objective, self.layout)
        if self.stop:
            raise StopForward

    @contextmanager
    def attached(self) -> Iterator[Objective]:
        handle = self.module.register_forward_hook(self._hook)
        try:
            yield self
        finally:
            handle.remove()

    def __call__(self, model: LoadedModel, inputs: torch.Tensor):
        """(the units' values, the network's output or None when the pass stopped at the layer)."""
        self.value, output = None, None
        try:
            output = model.forward(inputs)
        except StopForward:
            pass
        if self.value is None:
            raise UserInputError("The layer being maximised never ran in the model's forward pass.")
        return self.value, output


@contextmanager
def prepared(network: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no weight gradients for the duration; the module's own settings restored after."""
    modes = [(module, module.training) for module in network.modules()]
    flags = [(parameter, parameter.requires_grad) for parameter in network.parameters()]
    network.eval()
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
        for module, training in modes:
            module.training = training


FUSED_ADAM_DEVICES = ("cpu", "cuda")  # one kernel for Adam's update, 9x faster than torch's default on CPU


def unit_seed(seed: int, module_name: str, unit: int) -> int:
    """The seed of one unit's generator: the same for the unit wherever it is optimised."""
    entropy = [seed % 2**64, zlib.crc32(module_name.encode()), unit]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


def model_device(network: torch.nn.Module) -> torch.device:
    parameter = next(network.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@dataclass
class BatchResult:
    images: torch.Tensor  # (N, C, H, W) in [0, 1], on the CPU
    activations: torch.Tensor  # (N,) the objective on the final, untransformed images
    top1: torch.Tensor | None  # (N,) the network's class, when its output is (batch, classes)
    top1_probability: torch.Tensor | None


def optimise_batch(
    model: LoadedModel,
    target: torch.nn.Module,
    module_name: str,
    units: list[int],
    space: InputSpace,
    params: OptimiseParams,
    seed: int,
    device: torch.device,
    steps_bar: Steps | None = None,
) -> BatchResult:
    """One image per unit, all optimised together; the model must already be on ``device`` and prepared.

    When the batch runs out of memory, the progress it reported is taken back before the error
    propagates, so that ``optimise_units`` can run the units again in smaller batches.
    """
    generators = [torch.Generator().manual_seed(unit_seed(seed, module_name, unit)) for unit in units]
    shape = ImageParameters.shape_of(params.parameterisation, space.channels, space.size)
    initial = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)
    image = ImageParameters(params.parameterisation, initial, space.channels, space.size, params.decorrelate)
    affine = RandomAffine(generators, params.steps, space.size, params.jitter, tuple(params.scale), params.rotate, device)
    optimiser = torch.optim.Adam(image.parameters(), lr=params.lr, fused=device.type in FUSED_ADAM_DEVICES)
    layout = model.layout_of(module_name)
    objective = Objective(target, torch.tensor(units, device=device), params.objective, stop=True, layout=layout)
    done = 0
    try:
        with objective.attached():
            for step in range(params.steps):
                if params.blur_every and step and step % params.blur_every == 0:
                    image.blur_(params.blur_sigma)
                optimiser.zero_grad(set_to_none=True)
                images = image.images()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=params.precision == "bfloat16"):
                    values, _ = objective(model, space.to_model(affine(images, step)))
                loss = -values.float().sum()
                if params.l2:
                    loss = loss + params.l2 * l2_decay(images).sum()
                if params.tv:
                    loss = loss + params.tv * total_variation(images).sum()
                loss.backward()
                optimiser.step()
                if steps_bar is not None:
                    steps_bar.advance(len(units))
                done += 1
        final = image.images().detach()
        return evaluate(model, target, final, units, space, params.objective, device, layout)
    except RuntimeError as error:
        if steps_bar is not None and out_of_memory(error):
            steps_bar.advance(-len(units) * done)
        raise


@torch.inference_mode()
def evaluate(model, target, images, units, space, objective_kind, device, layout=None) -> BatchResult:
    """The units' values and the network's top-1 class for clean images (one full float32 forward pass)."""
    objective = Objective(target, torch.tensor(units, device=device), objective_kind, stop=False, layout=layout)
    with objective.attached():
        values, output = objective(model, space.to_model(images.to(device)))
    if isinstance(output, (tuple, list)):
        output = output[0]
    top1 = probability = None
    if isinstance(output, torch.Tensor) and output.ndim == 2:
        probabilities = torch.softmax(output.float(), dim=1)
        probability, top1 = probabilities.max(dim=1)
        top1, probability = top1.cpu(), probability.cpu()
    return BatchResult(images.cpu(), values.float().cpu(), top1, probability)


def optimise_units(
    model: LoadedModel,
    module_name: str,
    units: list[int],
    params: OptimiseParams,
    *,
    seed: int,
    device: torch.device,
    space: InputSpace | None = None,
    steps_bar: Steps | None = None,
) -> BatchResult:
    """Every unit's image, ``params.batch_size`` units at a time; the model is moved to ``device``.

    A batch that runs out of memory is run again as two halves, and so on down to one image, so
    the batch size settles at what fits; a unit's image does not depend on its batch's size beyond
    float rounding (docs/am.md).
    """
    space = space or input_space(model, params)
    network = model.module.to(device)
    target = dict(network.named_modules())[module_name]
    parts, size, start = [], params.batch_size, 0
    with prepared(network):
        while start < len(units):
            chunk = units[start : start + size]
            try:
                parts.append(optimise_batch(model, target, module_name, chunk, space, params, seed, device, steps_bar))
            except RuntimeError as error:
                if not out_of_memory(error):
                    raise
                if len(chunk) == 1:
                    raise UserInputError(
                        f"am: one {space.channels}x{space.size[0]}x{space.size[1]} image for {module_name!r} does not "
                        f"fit in memory on {device}. Lower `image_size`, or run AM on a device with more memory."
                    ) from None
                size = len(chunk) // 2
                warnings.warn(
                    f"AM of {module_name!r}: a batch of {len(chunk)} images did not fit in memory on {device}; "
                    f"going on with batches of {size} (set `batch_size: {size}` to start there).",
                    stacklevel=2,
                )
                release_memory(device)
                continue
            start += len(chunk)
    return BatchResult(
        images=torch.cat([p.images for p in parts]),
        activations=torch.cat([p.activations for p in parts]),
        top1=None if parts[0].top1 is None else torch.cat([p.top1 for p in parts]),
        top1_probability=None if parts[0].top1 is None else torch.cat([p.top1_probability for p in parts]),
    )


def release_memory(device: torch.device) -> None:
    """Give cached blocks of a failed batch back to the device before the smaller batches run."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def layer_outputs(model: LoadedModel, module_names: list[str], space: InputSpace, where: str = "") -> dict[str, tuple[int, ...]]:
    """Each module's output shape (without the batch) for one blank AM image; an error if the model can't take it."""
    shapes: dict[str, tuple[int, ...]] = {}
    modules = dict(model.module.named_modules())
    handles = []
    for name in module_names:

        def hook(_module, _inputs, output, name=name):
            if isinstance(output, (tuple, list)):
                output = output[0]
            shapes.setdefault(name, tuple(output.shape[1:]))

        handles.append(modules[name].register_forward_hook(hook))
    try:
        with prepared(model.module), torch.inference_mode():
            model.forward(space.to_model(space.zeros(1, model_device(model.module))))
    except Exception as error:
        raise UserInputError(
            f"{where}image_size: the model cannot take a {space.channels}x{space.size[0]}x{space.size[1]} image: "
            f"{type(error).__name__}: {error}"
        ) from None
    finally:
        for handle in handles:
            handle.remove()
    for name in module_names:
        if name not in shapes:
            raise UserInputError(f"Layer {name!r} never ran in the model's forward pass.")
    return shapes
