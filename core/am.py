"""The base class of an activation-maximisation method."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from selectivity_eval.core.plugin_base import Plugin

if TYPE_CHECKING:
    from selectivity_eval.core.sources import LoadedModel


@dataclass
class AMContext:
    """What an AM method gets from a run: the model, the measured layers and where to write."""

    model: LoadedModel
    layers: dict[str, str]
    activations: dict[str, np.ndarray]
    results: dict[str, dict[str, np.ndarray]]
    output_dir: Path
    device: torch.device
    seed: int


class AMMethod(Plugin):
    """Makes images that drive chosen units, and writes them under ``context.output_dir``."""

    kind: ClassVar[str] = "am"

    def run(self, context: AMContext) -> list[Path]:
        raise NotImplementedError
