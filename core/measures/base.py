"""The base class of a selectivity measure: one class per measure, vectorised over units."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, ClassVar

import torch

from selectivity_eval.core.registry.plugin_base import Plugin

if TYPE_CHECKING:
    from selectivity_eval.core.statistics.layer_stats import LayerStats


class Column(str, Enum):
    """What a measure's output column holds; summaries and reports treat each kind differently."""

    VALUE = "value"
    CLASS = "class"
    COUNT = "count"
    FLAG = "flag"


class Measure(Plugin):
    """A selectivity measure over every unit of a layer at once.

    Subclasses declare ``columns`` (output column name -> ``Column``) and implement ``compute``,
    which reads shared statistics from ``LayerStats`` and returns one tensor of shape (units,) per
    column. Class columns hold class *codes* (0..C-1); the caller turns them into label values.
    A measure must not loop over units in Python and must be a pure function of the activations,
    the labels and its parameters.
    """

    kind: ClassVar[str] = "measure"
    columns: ClassVar[dict[str, Column]]

    def compute(self, stats: LayerStats) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def output_columns(self, label: str | None = None) -> dict[str, Column]:
        """Column names as they appear in results.

        ``label`` replaces the measure's name inside each column name (``precision_class`` ->
        ``precision60_class``); a column that does not contain the name gets ``label_`` in front.
        """
        if not label or label == self.name:
            return dict(self.columns)
        return {
            column.replace(self.name, label) if self.name in column else f"{label}_{column}": kind
            for column, kind in self.columns.items()
        }

    def __call__(self, activations, labels, **kwargs):
        """Compute this measure alone; see ``selectivity_eval.compute_measures``."""
        from selectivity_eval.core.measures.compute import compute_measures

        return compute_measures(activations, labels, measures=[self], **kwargs)
