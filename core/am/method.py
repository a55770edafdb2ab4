"""The base class of an activation-maximisation method."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from selectivity_eval.core.registry.plugin_base import Plugin

if TYPE_CHECKING:
    from selectivity_eval.core.extraction.extract import ResolvedLayer
    from selectivity_eval.core.cli.progress import Reporter
    from selectivity_eval.core.sources.base import LoadedDataset, LoadedModel


@dataclass
class AMContext:
    """What an AM method gets from a run: the model, the measured layers and where to write.

    ``data`` is the run's data set and ``measured`` marks its rows that the measures used (the rows
    of ``activations``, which also holds the readings the method asked for in ``data_layers``);
    ``layer_settings`` holds each layer's ``pool``/``relu`` as the measures took it; ``reporter``
    hands out progress bars. All four are None/empty outside a run.
    """

    model: LoadedModel
    layers: dict[str, str]
    activations: dict[str, np.ndarray]
    results: dict[str, dict[str, np.ndarray]]
    output_dir: Path
    device: torch.device
    seed: int
    data: LoadedDataset | None = None
    measured: np.ndarray | None = None
    layer_settings: dict[str, ResolvedLayer] = field(default_factory=dict)
    reporter: Reporter | None = None


class AMMethod(Plugin):
    """Makes images that drive chosen units, and writes them under ``context.output_dir``."""

    kind: ClassVar[str] = "am"

    def validate(self, model: LoadedModel, layers: list[ResolvedLayer]) -> None:
        """Check the parameters against the loaded model and the run's layers, before any extraction.

        Raise ``UserInputError`` naming the spec field (``am.layers[0]: ...``). Does nothing by default.
        """

    def data_layers(self, model: LoadedModel, layers: list[ResolvedLayer]) -> list[ResolvedLayer]:
        """Readings of the data set the method needs besides the run's layers (its objective on every
        image, say), so that it needs no pass of its own: the run extracts and stores them with its
        layers, in the same pass, and hands them over, unmeasured, in ``context.activations`` under
        their labels. None by default."""
        return []

    def run(self, context: AMContext) -> list[Path]:
        raise NotImplementedError
