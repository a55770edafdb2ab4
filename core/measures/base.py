"""The base class of a selectivity measure: one class per measure, vectorised over units."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, ClassVar, Union

import torch

from selectivity_eval.core.registry.plugin_base import Plugin

if TYPE_CHECKING:
    from selectivity_eval.core.statistics.layer_stats import LayerStats


class Role(str, Enum):
    """Where a column is shown: headline columns in the terminal table, the report and sweeps."""

    HEADLINE = "headline"
    DETAIL = "detail"


class Column(str, Enum):
    """What a measure's output column holds; summaries and reports treat each kind differently.

    A bare kind has its default role: value columns are headline, the others detail. ``kind.headline()``
    and ``kind.detail()`` set the role where the column is declared.
    """

    VALUE = "value"
    CLASS = "class"
    COUNT = "count"
    FLAG = "flag"

    def headline(self) -> ColumnSpec:
        return ColumnSpec(self, Role.HEADLINE)

    def detail(self) -> ColumnSpec:
        return ColumnSpec(self, Role.DETAIL)

    @property
    def default_role(self) -> Role:
        return Role.HEADLINE if self is Column.VALUE else Role.DETAIL


@dataclass(frozen=True)
class ColumnSpec:
    """A column's kind and role, as ``Column.VALUE.detail()`` declares them."""

    kind: Column
    role: Role


ColumnDeclaration = Union[Column, ColumnSpec]


class Measure(Plugin):
    """A selectivity measure over every unit of a layer at once.

    Subclasses declare ``columns`` (output column name -> ``Column``, or ``Column.X.headline()`` /
    ``Column.X.detail()`` to choose where it is shown) and implement ``compute``,
    which reads shared statistics from ``LayerStats`` and returns one tensor of shape (units,) per
    column. Class columns hold class *codes* (0..C-1); the caller turns them into label values.
    A measure must not loop over units in Python and must be a pure function of the activations,
    the labels and its parameters.
    """

    kind: ClassVar[str] = "measure"
    columns: ClassVar[dict[str, Column]]
    column_roles: ClassVar[dict[str, Role]] = {}

    def __init_subclass__(cls, **kwargs):
        """Split declared ``columns`` into kinds (``columns``) and roles (``column_roles``)."""
        super().__init_subclass__(**kwargs)
        declared = cls.__dict__.get("columns")
        if declared is None:
            return
        cls.columns = {name: getattr(spec, "kind", spec) for name, spec in declared.items()}
        cls.column_roles = {
            name: spec.role if isinstance(spec, ColumnSpec) else Column(spec).default_role
            for name, spec in declared.items()
        }

    def compute(self, stats: LayerStats) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def compute_columns(self, stats: LayerStats, wanted: frozenset[str]) -> dict[str, torch.Tensor]:
        """At least the declared columns named in ``wanted`` (others returned are ignored).

        Chance baselines recompute only the columns they test, once per label shuffling. A measure
        whose other columns cost work of their own overrides this to skip that work; by default
        it is ``compute``.
        """
        return self.compute(stats)

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

    def output_roles(self, label: str | None = None) -> dict[str, Role]:
        """Each output column's role, under the names ``output_columns`` gives."""
        return {
            name: self.column_roles.get(column, kind.default_role)
            for (column, kind), name in zip(self.columns.items(), self.output_columns(label))
        }

    def __call__(self, activations, labels, **kwargs):
        """Compute this measure alone; see ``selectivity_eval.compute_measures``."""
        from selectivity_eval.core.measures.compute import compute_measures

        return compute_measures(activations, labels, measures=[self], **kwargs)
