"""Activations of chosen layers, captured with forward hooks, one (images x units) matrix per layer."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from selectivity_eval.core.errors import UserInputError, out_of_memory
from selectivity_eval.core.cli.progress import Reporter
from selectivity_eval.core.sources.base import LoadedDataset, LoadedModel
from selectivity_eval.core.statistics.layer_stats import prepare_kernels
from selectivity_eval.core.store.activation_store import ActivationStore, StoredLayer
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
    """One float32 value per unit and image from a module's output, copied so in-place ops can't alter it.

    ReLU is monotone, so the maximum (or the centre value) of the rectified map is the rectified
    maximum (centre value): those pool first and rectify one value per channel, bit for bit the
    same for less work. A mean needs the whole map rectified first.
    """
    if isinstance(output, (tuple, list)):
        output = output[0]
    values = output.detach()
    if relu and (values.ndim < 3 or pool == "mean"):
        values = torch.relu(values)
        relu = False
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
    if relu:
        values = torch.relu(values)
    return values.to(torch.float32, copy=True)


@dataclass
class Extraction:
    """Activations of every image (rows in data set order), and which images count."""

    activations: dict[str, np.ndarray]
    readable: np.ndarray
    predicted: np.ndarray
    cache: dict[str, str] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)

    @classmethod
    def from_store(cls, stored: dict[str, StoredLayer], layers, cache, unreadable) -> Extraction:
        """The extraction of ``layers`` from their stored arrays (every layer shares readable/predicted)."""
        first = stored[layers[0].label]
        return cls(
            activations={layer.label: stored[layer.label].values for layer in layers},
            readable=np.asarray(first.readable),
            predicted=np.asarray(first.predicted),
            cache=cache,
            unreadable=unreadable,
        )


class InMemoryStore:
    """The store interface without a disk: nothing cached, nothing to resume."""

    def complete(self, label, key):
        return None

    def resumable_rows(self, label, key):
        return 0

    def create(self, label, key, n_images, n_units):
        predicted = np.full(n_images, -1, dtype=np.int64)
        return StoredLayer(Path("."), np.empty((n_images, n_units), np.float32), np.zeros(n_images, bool), predicted)

    def reopen(self, label, key):
        raise AssertionError("nothing to resume in memory")

    @staticmethod
    def checkpoint(layer, rows_done):
        pass

    @staticmethod
    def finish(layer, description):
        pass


def readable_items(batch):
    """Collate that drops unreadable items: (stacked inputs or None, positions of readable items)."""
    positions = [i for i, (item, _label) in enumerate(batch) if item is not None]
    if not positions:
        return None, torch.empty(0, dtype=torch.int64)
    inputs = torch.utils.data.default_collate([batch[i][0] for i in positions])
    return inputs, torch.tensor(positions, dtype=torch.int64)


CHECKPOINT_SECONDS = 2.0
CHECKPOINT_VARIABLE = "SELECTIVITY_EVAL_CHECKPOINT_SECONDS"


def checkpoint_seconds() -> float:
    """Seconds between the extraction's checkpoints: ``SELECTIVITY_EVAL_CHECKPOINT_SECONDS``, else 2.

    A checkpoint flushes the memory maps and records how many images are safely on disk, where an
    interrupted run resumes; 0 checkpoints after every batch (the kill-and-resume tests use it to
    know exactly where a killed run resumes).
    """
    text = os.environ.get(CHECKPOINT_VARIABLE)
    if text is None:
        return CHECKPOINT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise UserInputError(
            f"The environment variable {CHECKPOINT_VARIABLE} is {text!r}; it must be a number of seconds, 0 or more."
        )
    return seconds


def extract_activations(
    model: LoadedModel,
    data: LoadedDataset,
    layers: list[ResolvedLayer],
    *,
    batch_size: int,
    device: torch.device,
    reporter: Reporter | None = None,
    store: ActivationStore | InMemoryStore | None = None,
    keys: dict[str, str] | None = None,
) -> Extraction:
    """Every layer's activations for every image, from the store where complete, else by running the model.

    Only layers the store lacks run through the model; an interrupted extraction resumes after its
    last checkpoint. Returns full-length arrays; ``readable`` marks images that could be read.
    """
    store = store or InMemoryStore()
    keys = keys or {layer.label: "" for layer in layers}
    stored: dict[str, StoredLayer] = {}
    cache: dict[str, str] = {}
    for layer in layers:
        hit = store.complete(layer.label, keys[layer.label])
        if hit is not None:
            stored[layer.label] = hit
            cache[layer.label] = "hit"
    missing = [layer for layer in layers if layer.label not in stored]
    unreadable: list[str] = []
    if missing:
        start = min(store.resumable_rows(layer.label, keys[layer.label]) for layer in missing)
        writing = {layer.label: store.reopen(layer.label, keys[layer.label]) for layer in missing} if start else {}
        for layer in missing:
            cache[layer.label] = f"resumed at image {start}" if start else "miss"
        unreadable = _run_model(model, data, missing, start, writing, store, keys, batch_size, device, reporter)
        for layer in missing:
            store.finish(writing[layer.label], {"layer": layer.label, "module": layer.module_name})
        stored.update(writing)
    return Extraction.from_store(stored, layers, cache, unreadable)


def _run_model(model, data, layers, start, writing, store, keys, batch_size, device, reporter, stop=None) -> list[str]:
    """Images ``start`` to ``stop`` (default: the end) through the model into ``writing``; returns unreadable names."""
    modules = dict(model.module.named_modules())
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for layer in layers:

        def hook(_module, _inputs, output, layer=layer):
            captured[layer.label] = reduce_output(output, layer.pool, layer.relu)

        handles.append(modules[layer.module_name].register_forward_hook(hook))
    n_images = len(data)
    stop = n_images if stop is None else stop
    steps = reporter.steps("Extracting activations", stop - start) if reporter else None
    loader = DataLoader(
        Subset(data.dataset, range(start, stop)) if start or stop < n_images else data.dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=data.num_workers,
        collate_fn=readable_items,
    )
    model.module.to(device).eval()
    unreadable: list[str] = []
    row = start
    last_checkpoint = time.monotonic()
    interval = checkpoint_seconds()
    try:
        with torch.inference_mode():
            for batch_index, (inputs, positions) in enumerate(loader):
                size = min(batch_size, stop - row)
                readable = set(positions.tolist())
                for offset in range(size):
                    if offset not in readable:
                        name = data.name_of(row + offset)
                        if data.on_unreadable != "skip":
                            raise UserInputError(
                                f"Image {name} (item {row + offset}) could not be read. Fix or remove it, "
                                "or set `on_unreadable: skip` in the data set to skip unreadable images."
                            )
                        unreadable.append(name)
                if inputs is not None:
                    try:
                        output = model.forward(inputs.to(device))
                    except RuntimeError as error:
                        if not out_of_memory(error):
                            raise
                        raise UserInputError(
                            f"batch_size: a batch of {len(positions)} images does not fit in memory on {device}. "
                            f"Lower the spec's `batch_size` and run again; the {row - start} images done so far are "
                            "kept, and extraction resumes after them."
                        ) from None
                    rows = (row + positions).numpy()
                    predicted = _top1(output)
                    for label, values in captured.items():
                        if label not in writing:
                            writing[label] = store.create(label, keys[label], n_images, values.shape[1])
                            prepare_kernels(n_images * values.shape[1], device)  # compiles while extracting
                        target = writing[label]
                        target.values[rows] = values.cpu().numpy()
                        target.readable[rows] = True
                        if predicted is not None:
                            target.predicted[rows] = predicted
                    captured.clear()
                row += size
                if steps:
                    steps.advance(size)
                if time.monotonic() - last_checkpoint >= interval:
                    for target in writing.values():
                        store.checkpoint(target, row)
                    last_checkpoint = time.monotonic()
    except BaseException:
        for target in writing.values():
            store.checkpoint(target, row)
        raise
    finally:
        for handle in handles:
            handle.remove()
    never_ran = [layer.label for layer in layers if layer.label not in writing]
    if never_ran and row > start:
        raise UserInputError(f"Layers {', '.join(never_ran)} never ran in the model's forward pass.")
    if never_ran:
        raise UserInputError("No image could be read, so no activations were extracted.")
    return unreadable


def _top1(output) -> np.ndarray | None:
    """The network's top-1 class per image, when its output is a (batch, classes) tensor."""
    if isinstance(output, torch.Tensor) and output.ndim == 2:
        return output.argmax(1).cpu().numpy()
    return None
