"""The ``gradient-ascent`` AM method: Lucid-style images for many units at once, written with a table.

For each chosen layer and unit it writes ``am/<layer>/<unit>.png`` and ``am/<layer>/contact_sheet.png``,
and one ``am.csv`` with the activation each image reaches, the unit's highest activation on the
data set (same objective: pre-ReLU, centre or mean), their ratio and the network's own top-1 class
for the image. The optimisation itself is in ``am_engine``; see docs/am.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from selectivity_eval.core.am.method import AMContext, AMMethod
from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.registry.hookspecs import hookimpl
from selectivity_eval.core.cli.progress import Reporter
from selectivity_eval.core.sources.base import LoadedModel
from selectivity_eval.core.store.residency import release
from selectivity_eval.plugins.am.dataset_max import dataset_maxima
from selectivity_eval.core.extraction.extract import ResolvedLayer, with_spec_layouts
from selectivity_eval.core.extraction.reduce import am_reduction
from selectivity_eval.plugins.am.engine import layer_outputs, optimise_units
from selectivity_eval.plugins.am.input_space import InputSpace, input_space
from selectivity_eval.plugins.am.outputs import contact_sheet, save_png, write_am_csv
from selectivity_eval.plugins.am.params import GradientAscentParams, TopUnits

WHERE = "am."


@dataclass
class LayerPlan:
    label: str
    module_name: str
    n_units: int
    spatial: bool  # the output has more than one value per unit (a conv map, a token sequence)
    shape: tuple[int, ...] = ()  # the output's shape without the batch


class GradientAscent(AMMethod):
    """Gradient ascent on the input, many units per batch (Fourier, decorrelated colour, jitter/scale/rotate)."""

    name = "gradient-ascent"
    Params = GradientAscentParams

    def validate(self, model: LoadedModel, layers) -> None:
        self._plan(with_spec_layouts(model, layers), {layer.label: layer.module_name for layer in layers})

    def _plan(self, model: LoadedModel, layers: dict[str, str]) -> tuple[InputSpace, list[LayerPlan]]:
        p = self.params
        chosen = list(layers) if p.layers is None else p.layers
        for index, label in enumerate(chosen):
            if label not in layers:
                raise UserInputError(
                    f"{WHERE}layers[{index}]: {label!r} is not one of the run's layers ({', '.join(layers)})."
                )
        space = input_space(model, p, WHERE)
        shapes = layer_outputs(model, [layers[label] for label in chosen], space, WHERE)
        plans = []
        for label in dict.fromkeys(chosen):
            shape = shapes[layers[label]]
            n_units = am_reduction(label, model.layout_of(layers[label]), p.objective).units(shape)
            plans.append(LayerPlan(label, layers[label], n_units, len(shape) > 1, tuple(shape)))
            if isinstance(p.units, list):
                for index, unit in enumerate(p.units):
                    if unit >= n_units:
                        raise UserInputError(
                            f"{WHERE}units[{index}]: unit {unit} is out of range for layer {label!r}, which has "
                            f"{n_units} units (0-{n_units - 1})."
                        )
        return space, plans

    def select_units(self, plan: LayerPlan, results: dict[str, np.ndarray]) -> list[int]:
        units = self.params.units
        if units == "all":
            return list(range(plan.n_units))
        if isinstance(units, TopUnits):
            values = results.get(units.by)
            if values is None or not np.issubdtype(np.asarray(values).dtype, np.number):
                numeric = [c for c, v in results.items() if np.issubdtype(np.asarray(v).dtype, np.number)]
                raise UserInputError(
                    f"{WHERE}units.by: {units.by!r} is not a numeric measure column of layer {plan.label!r} "
                    f"(it has {', '.join(numeric) or 'none'})."
                )
            values = np.asarray(values, dtype=np.float64)
            order = np.argsort(-np.where(np.isnan(values), -np.inf, values), kind="stable")
            return [int(unit) for unit in order[: units.top]]
        return list(units)

    def run(self, context: AMContext) -> list[Path]:
        p = self.params
        reporter = context.reporter or Reporter(quiet=True)
        seed = context.seed if p.seed is None else p.seed
        context = replace(context, model=with_spec_layouts(context.model, context.layer_settings.values()))
        space, plans = self._plan(context.model, context.layers)
        chosen = {plan.label: self.select_units(plan, context.results.get(plan.label, {})) for plan in plans}
        maxima = self._data_maxima(context, plans, reporter)
        written: list[Path] = []
        rows = []
        bar = reporter.steps("AM: gradient ascent", sum(len(u) for u in chosen.values()) * p.steps)
        for plan in plans:
            units = chosen[plan.label]
            result = optimise_units(
                context.model, plan.module_name, units, p, seed=seed, device=context.device, space=space, steps_bar=bar
            )
            folder = context.output_dir / "am" / safe_name(plan.label)
            for unit, image in zip(units, result.images):
                written.append(save_png(image, folder / f"{unit}.png", p.png_min_size))
            written.append(contact_sheet(result.images, [f"unit {u}" for u in units], folder / "contact_sheet.png", p.png_min_size))
            rows.extend(self._rows(context, plan, units, result, maxima.get(plan.label)))
        written.append(write_am_csv(context.output_dir / "am.csv", rows))
        return written

    def data_layers(self, model: LoadedModel, layers) -> list[ResolvedLayer]:
        """The objective on every image, for each AM layer whose measured activations are not it (a
        ReLU, or another reduction of a map): read in the run's own pass, no second pass for data_max."""
        model = with_spec_layouts(model, layers)
        settings = {layer.label: layer for layer in layers}
        _space, plans = self._plan(model, {layer.label: layer.module_name for layer in layers})
        readings = []
        for plan in plans:
            if self._measured_is_objective(model, plan, settings.get(plan.label)):
                continue
            layout = model.layout_of(plan.module_name)
            objective = am_reduction(plan.label, layout, self.params.objective)
            readings.append(ResolvedLayer(objective_label(plan.label, self.params.objective), plan.module_name,
                                          objective.pool, False, tokens=objective.tokens, layout=layout, pool_given=True))
        return readings

    def _measured_is_objective(self, model: LoadedModel, plan: LayerPlan, setting) -> bool:
        """Whether the measured activations are the AM objective's own reduction of the layer."""
        if setting is None or setting.relu:
            return False
        if not plan.spatial:
            return True
        objective = am_reduction(plan.label, model.layout_of(plan.module_name), self.params.objective)
        return setting.reduction.describe(plan.shape) == objective.describe(plan.shape)

    def _data_maxima(self, context: AMContext, plans: list[LayerPlan], reporter: Reporter) -> dict[str, np.ndarray]:
        """Per layer, the units' highest objective value on the data set: the measured activations
        when they are that same value (no ReLU, and the same reduction or no map), else one more pass."""
        maxima, missing = {}, {}
        for plan in plans:
            reading = objective_label(plan.label, self.params.objective)
            same = self._measured_is_objective(context.model, plan, context.layer_settings.get(plan.label))
            if same and plan.label in context.activations:
                maxima[plan.label] = column_maxima(context.activations[plan.label])
            elif reading in context.activations:  # read in the run's pass (data_layers)
                maxima[plan.label] = column_maxima(context.activations[reading])
            elif context.data is not None:
                missing[plan.label] = plan.module_name
        if missing:
            maxima.update(
                dataset_maxima(
                    context.model, context.data, missing, self.params.objective, context.device,
                    measured=context.measured, reporter=reporter,
                )
            )
        return maxima

    def _rows(self, context, plan, units, result, data_max) -> list[dict]:
        columns = context.results.get(plan.label, {})
        names = context.model.class_names
        rows = []
        for index, unit in enumerate(units):
            reached = float(result.activations[index])
            peak = float(data_max[unit]) if data_max is not None and np.isfinite(data_max[unit]) else float("nan")
            row = {
                "layer": plan.label,
                "unit": unit,
                "activation": reached,
                "data_max": peak,
                "ratio": reached / peak if peak > 0 else float("nan"),
            }
            if result.top1 is not None:
                top1 = int(result.top1[index])
                row.update(top1_class=top1, top1_probability=float(result.top1_probability[index]))
                row["top1_name"] = names[top1] if names and top1 < len(names) else None
                for measure in ("ccmas", "topclass"):
                    if f"{measure}_class" in columns:
                        label = columns[f"{measure}_class"][unit]
                        row[f"{measure}_class"] = label
                        model_class = model_class_of(label, context, names)
                        row[f"top1_is_{measure}_class"] = None if model_class is None else model_class == top1
            rows.append(row)
        return rows


def model_class_of(label, context: AMContext, names: list[str] | None) -> int | None:
    """The model's output index for a data set label: through ``model_class_of_label`` when the data set
    has one, else the label itself when it is a whole number, else its position in the class names."""
    if label is None or (isinstance(label, float) and np.isnan(label)):
        return None
    mapping = context.data.model_class_of_label if context.data is not None else None
    try:
        value = int(label)
    except (TypeError, ValueError):
        return names.index(label) if names and label in names else None
    if mapping is not None:
        return int(mapping[value]) if 0 <= value < len(mapping) and mapping[value] >= 0 else None
    return value


def safe_name(label: str) -> str:
    """A layer label as a folder name (dots kept, anything odd replaced)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", label) or "layer"


@hookimpl
def register_am_methods(register):
    register(GradientAscent)


def objective_label(label: str, objective: str) -> str:
    """The label under which a run stores the AM objective's reading of a layer (its store folder too)."""
    return f"{label}.am-{objective}"


def column_maxima(values: np.ndarray) -> np.ndarray:
    """Each unit's highest activation as float64, NaN left out (-inf if it has no other value), read
    in the stored dtype with no copy of the layer; a memory-mapped layer's pages are given back."""
    with np.errstate(invalid="ignore"):
        highest = np.fmax.reduce(values, axis=0, initial=-np.inf) if len(values) else np.full(values.shape[1], -np.inf)
    release(values)
    return np.asarray(highest, dtype=np.float64)
