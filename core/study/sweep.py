"""Sweeps: one spec template, a grid of models x weights x layers (x any spec key), a run per combination.

A sweep file::

    template: digits.yaml          # a spec file (relative to the sweep file) or an inline mapping
    grid:
      models: [digits-cnn, {plugin: torchvision, arch: alexnet}]   # each replaces `model`
      weights: [builtin, none]     # each sets the model's `weights` parameter
      layers: [conv1, [fc1, fc2]]  # each replaces `layers` (one layer, or a list of layers)
      dataset.split: [train, test] # any other key: a dotted path into the spec
    output: runs/sweep             # each run writes to output/<combination>
    executor: {kind: dask, local_cluster: {workers: 4}}   # omitted: the template's executor

Every combination is validated before any run starts. The runs share one executor, opened once
for the sweep; a run that fails is recorded and the others still run. ``sweep_summary.csv`` has one
row per run and layer, with each headline column's mean across the layer's units.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.markup import escape

from selectivity_eval.core.errors import SelectivityEvalError, SpecError, SpecProblem
from selectivity_eval.core.outputs import atomic
from selectivity_eval.core.store.activation_store import content_key
from selectivity_eval.schemas.executor import ExecutorSpec
from selectivity_eval.schemas.spec import RunSpec

AXES = ("models", "weights", "layers")


class SweepSpec(BaseModel):
    """A sweep file: a spec template, the grid to expand it over, where the runs go and where they run."""

    model_config = ConfigDict(extra="forbid")

    template: str | dict[str, Any] = Field(
        description="A spec YAML file (relative to the sweep file) or a spec mapping."
    )
    grid: dict[str, list[Any]] = Field(
        description="Axes: models, weights, layers, or a dotted spec key (seed, dataset.split); each a list of values."
    )
    output: Path = Field(Path("runs/sweep"), description="Directory of the sweep; each run writes to a sub-directory.")
    executor: ExecutorSpec | None = Field(None, description="Where the runs execute; omitted: the template's executor.")


@dataclass
class SweepRun:
    name: str
    values: dict[str, Any]
    spec: RunSpec
    labels: dict[str, str] = field(default_factory=dict)  # each axis value as a short text, for tables


@dataclass
class SweepOutcome:
    run: SweepRun
    summary: dict[str, Any] | None = None
    status: str = "ok"
    error: str | None = None


@dataclass
class SweepResult:
    output_dir: Path
    outcomes: list[SweepOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[SweepOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status != "ok"]


def load_sweep(path: str | Path, output: Path | None = None, registry=None) -> tuple[SweepSpec, list[SweepRun]]:
    """Read a sweep file and expand and validate every combination; all problems are reported at once."""
    from selectivity_eval.core.spec.loader import _problems, read_spec

    path = Path(path)
    data, node = read_spec(path)
    if not isinstance(data, dict):
        raise SpecError([SpecProblem("", "a sweep must be a YAML mapping (template:, grid:, output:)")], str(path))
    try:
        sweep = SweepSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(_problems(error, (), node), str(path)) from None
    if output is not None:
        sweep = sweep.model_copy(update={"output": output})
    if not sweep.grid or any(not values for values in sweep.grid.values()):
        raise SpecError([SpecProblem("grid", "needs at least one axis, each with at least one value")], str(path))
    template = sweep.template
    if isinstance(template, str):
        template_path = Path(template) if Path(template).is_absolute() else path.parent / template
        template, _ = read_spec(template_path)
        if not isinstance(template, dict):
            raise SpecError([SpecProblem("template", f"{template_path} is not a spec mapping")], str(path))
    return sweep, expand(sweep, template, str(path), registry)


def expand(sweep: SweepSpec, template: dict[str, Any], source: str, registry=None) -> list[SweepRun]:
    from selectivity_eval.core.spec.loader import validate_spec

    axes = [axis for axis in AXES if axis in sweep.grid] + [axis for axis in sweep.grid if axis not in AXES]
    runs, problems, names = [], [], set()
    for combination in itertools.product(*(sweep.grid[axis] for axis in axes)):
        values = dict(zip(axes, combination))
        data = copy.deepcopy(template)
        for axis, value in values.items():
            _apply(data, axis, value)
        labels = {axis: _label(axis, value) for axis, value in values.items()}
        name = _unique(_slug("_".join(labels.values())), names)
        data["output"] = str(sweep.output / name)
        if sweep.executor is not None:
            data["executor"] = sweep.executor.model_dump(mode="json", exclude_none=True)
        try:
            runs.append(SweepRun(name, values, validate_spec(data, registry, source=f"{source} [{name}]"), labels))
        except SpecError as error:
            problems.extend(SpecProblem(f"[{name}] {p.location}", p.message) for p in error.problems)
    if problems:
        raise SpecError(problems, source)
    return runs


def _apply(data: dict[str, Any], axis: str, value: Any) -> None:
    if axis == "models":
        data["model"] = copy.deepcopy(value)
    elif axis == "weights":
        model = data.get("model")
        model = {"plugin": model} if isinstance(model, str) else dict(model or {})
        model["weights"] = value
        data["model"] = model
    elif axis == "layers":
        data["layers"] = copy.deepcopy(value) if isinstance(value, list) else [copy.deepcopy(value)]
    else:
        *parents, last = axis.split(".")
        node = data
        for part in parents:
            child = node.get(part)
            node[part] = child = {"plugin": child} if isinstance(child, str) else dict(child or {})
            node = child
        node[last] = copy.deepcopy(value)


def _label(axis: str, value: Any) -> str:
    if axis == "models":
        if isinstance(value, dict):
            extra = [str(v) for k, v in value.items() if k in ("arch", "name")]
            return "-".join([str(value.get("plugin", "model")), *extra])
        return str(value)
    if axis == "weights":
        return Path(str(value)).stem if "/" in str(value) or "." in str(value) else str(value)
    if axis == "layers":
        items = value if isinstance(value, list) else [value]
        return "+".join(str(item.get("name") if isinstance(item, dict) else item) for item in items)
    if isinstance(value, (dict, list)):
        return f"{axis.rsplit('.', 1)[-1]}-{content_key({'value': value})[:8]}"
    return f"{axis.rsplit('.', 1)[-1]}-{value}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]+", "-", text).strip("-.")[:120] or "run"


def _unique(name: str, seen: set[str]) -> str:
    candidate, number = name, 2
    while candidate in seen:
        candidate, number = f"{name}-{number}", number + 1
    seen.add(candidate)
    return candidate


def run_sweep(sweep: SweepSpec, runs: list[SweepRun], *, reporter=None, registry=None) -> SweepResult:
    """Every run of the sweep on one executor, then ``sweep_summary.csv`` across them."""
    from selectivity_eval.core.distributed.executor import executor_scope
    from selectivity_eval.core.outputs.results import write_json
    from selectivity_eval.core.cli.progress import Reporter
    from selectivity_eval.core.study.run import run_spec
    from selectivity_eval.core.study.sweep_summary import write_sweep_summary

    reporter = reporter or Reporter(quiet=True)
    executor = sweep.executor or runs[0].spec.executor
    output = Path(sweep.output)
    result = SweepResult(output)
    with executor_scope(executor, reporter):  # first: a missing dask extra stops the sweep before it writes
        output.mkdir(parents=True, exist_ok=True)
        atomic.write_text(
            output / "sweep.resolved.yaml", yaml.safe_dump(sweep.model_dump(mode="json", exclude_none=True), sort_keys=False)
        )
        for number, run in enumerate(runs, 1):
            reporter.say(f"[{number}/{len(runs)}] {escape(run.name)}")
            outcome = SweepOutcome(run)
            try:
                done = run_spec(run.spec, reporter=reporter, registry=registry)
                outcome.summary = done.summary
                if done.failures:
                    outcome.status = "failed"
                    outcome.error = "; ".join(f"{f.measure} on {f.layer}: {f.error}" for f in done.failures)
            except SelectivityEvalError as error:
                outcome.status, outcome.error = "failed", str(error)
            except Exception as error:  # one broken run must not stop the others
                outcome.status, outcome.error = "failed", f"{type(error).__name__}: {error}"
            if outcome.error:
                reporter.say(f"[red]{escape(run.name)} failed:[/] {escape(outcome.error)}")
            result.outcomes.append(outcome)
    write_json(
        output / "sweep.json",
        {
            "runs": [
                {
                    "name": o.run.name,
                    "values": o.run.values,
                    "output": str(o.run.spec.output),
                    "status": o.status,
                    "error": o.error,
                }
                for o in result.outcomes
            ]
        },
    )
    write_sweep_summary(output / "sweep_summary.csv", result)
    return result
