"""Make and load a spec's model and data set through their plugins, naming the plugin when one fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from selectivity_eval.core.errors import PluginError, SelectivityEvalError, UserInputError
from selectivity_eval.core.registry.manager import Registry
from selectivity_eval.core.sources.base import LoadedDataset, LoadedModel


@contextmanager
def plugin_step(registry: Registry, kind: str, name: str, step: str) -> Iterator[None]:
    """An exception from plugin code becomes a ``PluginError`` naming the plugin, its origin and the step.

    Errors the plugin already words for the user (``SelectivityEvalError``) pass unchanged; the
    original exception stays chained, so ``--debug`` shows where it came from.
    """
    try:
        yield
    except SelectivityEvalError:
        raise
    except Exception as error:
        origin = registry.entry(kind, name).origin
        raise PluginError(
            f"The {kind} plugin {name!r} (plugin {origin.describe()}) failed in {step}: "
            f"{type(error).__name__}: {error}"
        ) from error


def load_model_source(registry: Registry, plugin: str, params: dict[str, Any], seed: int) -> LoadedModel:
    with plugin_step(registry, "model", plugin, "load"):
        source = registry.get("model", plugin)(params)
        return source.load(seed=seed)


def load_dataset_source(
    registry: Registry,
    plugin: str,
    params: dict[str, Any],
    seed: int,
    transform: Callable[[Any], torch.Tensor] | None,
) -> LoadedDataset:
    """The data set, with as many labels as images (checked here, before any work)."""
    with plugin_step(registry, "dataset", plugin, "load"):
        data = registry.get("dataset", plugin)(params).load(seed=seed, transform=transform)
    try:
        n_items = len(data.dataset)
    except TypeError:  # a data set without a length: nothing to compare
        return data
    if n_items != len(data.labels):
        raise UserInputError(
            f"The dataset plugin {plugin!r} gave {n_items} images but {len(data.labels)} labels; "
            "every image needs exactly one label (check the data set's label file or listing)."
        )
    return data
