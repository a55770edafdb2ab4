"""Activations of chosen layers, captured with forward hooks, one (images x units) matrix per layer."""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from selectivity_eval.core.errors import UserInputError, out_of_memory
from selectivity_eval.core.cli.progress import Reporter
from selectivity_eval.core.extraction.reduce import Reduction
from selectivity_eval.core.sources.base import LoadedDataset, LoadedModel
from selectivity_eval.core.sources.layout import OutputLayout
from selectivity_eval.core.statistics.backend import prepare_kernels
from selectivity_eval.core.store.activation_store import ActivationStore, StoredLayer, StoreWarning
from selectivity_eval.schemas.spec import LayerSpec


@dataclass(frozen=True)
class ResolvedLayer:
    """A layer of the spec bound to the module it names, with the output layout the model declares."""

    label: str
    module_name: str
    pool: str
    relu: bool
    tokens: str | None = None
    layout: OutputLayout | None = None
    pool_given: bool = False

    @property
    def reduction(self) -> Reduction:
        return Reduction(self.label, self.layout, self.pool, self.tokens, self.relu, self.pool_given)

    def reduce(self, output) -> torch.Tensor:
        """(images, units) float32 values from the module's output (see core/extraction/reduce.py)."""
        return self.reduction(output)


def resolve_layers(model: LoadedModel, layers: list[LayerSpec]) -> list[ResolvedLayer]:
    """Bind each spec layer to a module; an unknown name is an error listing what exists."""
    resolved, unknown = [], []
    for index, layer in enumerate(layers):
        module_name = model.resolve_layer(layer.name)
        if module_name is None:
            unknown.append(f"layers[{index}].name: {layer.name!r}")
        else:
            resolved.append(
                ResolvedLayer(
                    layer.name,
                    module_name,
                    layer.pool,
                    layer.relu,
                    tokens=layer.tokens,
                    layout=model.layout_of(module_name),
                    pool_given="pool" in layer.model_fields_set,
                )
            )
    if unknown:
        aliases = ", ".join(f"{alias} -> {target}" for alias, target in model.aliases.items()) or "none"
        raise UserInputError(
            f"Unknown layer {'; '.join(unknown)}. The model's aliases: {aliases}. Its modules: "
            f"{', '.join(model.layer_names())}."
        )
    return resolved


def with_spec_layouts(model: LoadedModel, layers) -> LoadedModel:
    """``model`` with the layouts its spec's ``layers`` add: a module the model does not declare, which a
    layer reads as tokens (``tokens`` set), is a token sequence for AM too (it is read the same way)."""
    extra = {
        layer.module_name: OutputLayout("tokens")
        for layer in layers
        if layer.layout is None and layer.tokens is not None
    }
    return replace(model, layouts={**model.layouts, **extra}) if extra else model


def reduce_output(output, pool: str, relu: bool, *, tokens: str | None = None, layout: OutputLayout | None = None) -> torch.Tensor:
    """One float32 value per unit and image from a module's output: ``Reduction`` for a bare output.

    With no ``layout`` a 3-D output is read as a (batch, channels, length) map (as ``pool`` given)
    unless ``tokens`` says it is (batch, tokens, features).
    """
    return Reduction("output", layout, pool, tokens, relu, pool_given=True)(output)


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

    def __init__(self):
        self.finished: dict[str, StoredLayer] = {}

    def complete(self, label, key, verify=True):
        return self.finished.get(label)

    def resumable_rows(self, label, key):
        return 0

    def resumed_unreadable(self, label, key):
        return []

    def locked(self, entries, on_wait=None):
        return contextlib.nullcontext()

    def create(self, label, key, n_images, n_units):
        predicted = np.full(n_images, -1, dtype=np.int64)
        return StoredLayer(Path("."), np.empty((n_images, n_units), np.float32), np.zeros(n_images, bool), predicted)

    def reopen(self, label, key):
        raise AssertionError("nothing to resume in memory")

    @staticmethod
    def checkpoint(layer, rows_done, unreadable):
        pass

    def finish(self, layer, description, unreadable):
        self.finished[description["layer"]] = layer


def readable_items(batch):
    """Collate that drops unreadable items: (stacked inputs or None, positions of readable items)."""
    positions = [i for i, (item, _label) in enumerate(batch) if item is not None]
    if not positions:
        return None, torch.empty(0, dtype=torch.int64)
    inputs = torch.utils.data.default_collate([batch[i][0] for i in positions])
    return inputs, torch.tensor(positions, dtype=torch.int64)


CHECKPOINT_SECONDS = 10.0
"""A checkpoint of the eight AlexNet layers takes about 70 ms (flushing the maps, checksumming new
chunks, the progress file): every 10 s that is under 1% of extraction, and a kill redoes at most
10 s of it (at 2 s it was 1.8%, docs/performance.md)."""
CHECKPOINT_VARIABLE = "SELECTIVITY_EVAL_CHECKPOINT_SECONDS"


def checkpoint_seconds() -> float:
    """Seconds between the extraction's checkpoints: ``SELECTIVITY_EVAL_CHECKPOINT_SECONDS``, else 10.

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

    def run_missing(missing: list[ResolvedLayer], cache: dict[str, str]) -> list[str]:
        return _extract_missing(model, data, missing, store, keys, batch_size, device, reporter, cache)

    return through_store(store, data, layers, keys, reporter, run_missing)


def through_store(store, data: LoadedDataset, layers, keys: dict[str, str], reporter, run_missing) -> Extraction:
    """Layers from the store where complete, the rest from ``run_missing(missing, cache)`` under their locks.

    After taking the locks the store is looked up again: a run this one waited for may have
    finished some layers meanwhile. ``run_missing`` returns the unreadable images' names.
    """
    stored, cache = stored_hits(store, layers, keys)
    missing = [layer for layer in layers if layer.label not in stored]
    if missing:
        entries = [(layer.label, keys[layer.label]) for layer in missing]
        with store.locked(entries, on_wait=_say_waiting(reporter)):
            waited, waited_cache = stored_hits(store, missing, keys)
            stored.update(waited)
            cache.update(waited_cache)
            missing = [layer for layer in missing if layer.label not in stored]
            if missing:
                unreadable = run_missing(missing, cache)
                for layer in missing:
                    stored[layer.label] = store.complete(layer.label, keys[layer.label], verify=False)
                return Extraction.from_store(stored, layers, cache, unreadable)
    return from_hits(data, stored, layers, cache)


def from_hits(data: LoadedDataset, stored: dict[str, StoredLayer], layers, cache: dict[str, str]) -> Extraction:
    """The extraction of layers all found complete in the store, with the unreadable images it recorded."""
    unreadable = list(stored[layers[0].label].record.get("unreadable", []))
    honour_unreadable_policy(data, unreadable)
    return Extraction.from_store(stored, layers, cache, unreadable)


def stored_hits(store, layers: list[ResolvedLayer], keys: dict[str, str]) -> tuple[dict[str, StoredLayer], dict[str, str]]:
    """The layers complete (and intact) in the store, and "hit" for each of them."""
    stored = {}
    for layer in layers:
        hit = store.complete(layer.label, keys[layer.label])
        if hit is not None:
            stored[layer.label] = hit
    return stored, {label: "hit" for label in stored}


def honour_unreadable_policy(data: LoadedDataset, unreadable: list[str]) -> None:
    """A cached extraction that skipped images fails a run whose data set says ``on_unreadable: fail``."""
    if unreadable and data.on_unreadable != "skip":
        raise UserInputError(
            f"Image {unreadable[0]} could not be read ({len(unreadable)} unreadable images were skipped when these "
            "activations were stored). Fix or remove it, or set `on_unreadable: skip` in the data set to skip "
            "unreadable images."
        )


def _say_waiting(reporter: Reporter | None):
    def say(message: str) -> None:
        warnings.warn(f"Activation store: {message}.", StoreWarning, stacklevel=4)
        if reporter is not None:
            reporter.say(message)

    return say


def _extract_missing(model, data, missing, store, keys, batch_size, device, reporter, cache) -> list[str]:
    """Run the model for the missing layers (resuming where possible) and finish them in the store."""
    start = min(store.resumable_rows(layer.label, keys[layer.label]) for layer in missing)
    writing = {layer.label: store.reopen(layer.label, keys[layer.label]) for layer in missing} if start else {}
    resumed = store.resumed_unreadable(missing[0].label, keys[missing[0].label]) if start else []
    for layer in missing:
        cache[layer.label] = f"resumed at image {start}" if start else "miss"
    unreadable = resumed + _run_model(
        model, data, missing, start, writing, store, keys, batch_size, device, reporter, resumed=resumed
    )
    for layer in missing:
        store.finish(writing[layer.label], {"layer": layer.label, "module": layer.module_name}, unreadable)
    return unreadable


def _run_model(
    model, data, layers, start, writing, store, keys, batch_size, device, reporter, stop=None, resumed=()
) -> list[str]:
    """Images ``start`` to ``stop`` (default: the end) through the model into ``writing``; returns unreadable names.

    ``resumed``: the unreadable names before ``start``, recorded again with each checkpoint.
    """
    modules = dict(model.module.named_modules())
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for layer in layers:

        def hook(_module, _inputs, output, layer=layer):
            captured[layer.label] = layer.reduce(output)

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
                skipped = []  # joins ``unreadable`` once the batch is written, so checkpoints name only rows on disk
                for offset in range(size):
                    if offset not in readable:
                        name = data.name_of(row + offset)
                        if data.on_unreadable != "skip":
                            raise UserInputError(
                                f"Image {name} (item {row + offset}) could not be read. Fix or remove it, "
                                "or set `on_unreadable: skip` in the data set to skip unreadable images."
                            )
                        skipped.append(name)
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
                        if values.shape[0] != len(positions):
                            raise UserInputError(
                                f"Layer {label!r} gives {values.shape[0]} rows for a batch of {len(positions)} images: "
                                "the module runs on parts of images (attention windows, say), not whole images. "
                                "Measure the block around it instead."
                            )
                        if label not in writing:
                            writing[label] = store.create(label, keys[label], n_images, values.shape[1])
                            prepare_kernels(n_images * values.shape[1], device)  # compiles while extracting
                        target = writing[label]
                        target.values[rows] = values.cpu().numpy()
                        target.readable[rows] = True
                        if predicted is not None:
                            target.predicted[rows] = predicted
                    captured.clear()
                unreadable.extend(skipped)
                row += size
                if steps:
                    steps.advance(size)
                if time.monotonic() - last_checkpoint >= interval:
                    for target in writing.values():
                        store.checkpoint(target, row, [*resumed, *unreadable])
                    last_checkpoint = time.monotonic()
    except BaseException:
        for target in writing.values():
            store.checkpoint(target, row, [*resumed, *unreadable])
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
