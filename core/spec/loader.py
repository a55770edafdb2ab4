"""Read a YAML spec safely and validate it, every problem reported at its place in the YAML.

Validation has two stages: the shape of the spec (``RunSpec``), then each named plugin's own
parameters against that plugin's ``Params`` model. Both run before any work starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from selectivity_eval.core.measures.chance import value_columns
from selectivity_eval.core.measures.compute import check_distinct_columns
from selectivity_eval.core.errors import SpecError, SpecProblem, UserInputError
from selectivity_eval.core.registry.manager import Registry, get_registry
from selectivity_eval.core.spec.yaml_loader import read_yaml
from selectivity_eval.schemas.spec import AMSpec, MeasureRef, PluginRef, RunSpec

Location = Sequence[str | int]


def format_location(location: Location) -> str:
    """('layers', 2, 'pool') -> 'layers[2].pool'."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def line_of(node: yaml.Node | None, location: Location) -> int | None:
    """1-based line of the deepest YAML node that ``location`` reaches."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in location:
        if isinstance(node, yaml.MappingNode):
            node = next((value for key, value in node.value if key.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def read_spec(path: str | Path) -> tuple[Any, yaml.Node | None]:
    """Parsed YAML (through a ``SafeLoader``, see yaml_loader.py) and its node tree, for line numbers in errors."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"Spec file {str(path)!r} does not exist (or is not a file).")
    return read_yaml(path)


def load_spec(path: str | Path, registry: Registry | None = None) -> RunSpec:
    """Read and fully validate a spec file; returns the spec with every plugin default filled in."""
    data, node = read_spec(path)
    return validate_spec(data, registry, source=str(path), node=node)


def validate_spec(
    data: Any, registry: Registry | None = None, source: str | None = None, node: yaml.Node | None = None
) -> RunSpec:
    """Check the spec's shape and every plugin's parameters, reporting all problems at once."""
    if not isinstance(data, dict):
        raise SpecError([SpecProblem("", "a spec must be a YAML mapping (model:, dataset:, layers:, ...)")], source)
    problems: list[SpecProblem] = []
    try:
        RunSpec.model_validate(data)
    except ValidationError as error:
        problems.extend(_problems(error, (), node))
    registry = registry or get_registry()
    resolved = dict(data)
    for key, kind, ref_model, name_key in PLUGIN_FIELDS:
        if data.get(key) is None:
            continue
        entries = data[key] if kind == "measure" else [data[key]]
        if not isinstance(entries, list):
            continue
        checked = []
        for index, entry in enumerate(entries):
            location = (key, index) if kind == "measure" else (key,)
            try:
                ref = ref_model.model_validate(entry)
            except ValidationError:
                checked.append(entry)
                continue
            checked.append(_check_plugin(registry, kind, ref, name_key, location, node, problems))
        resolved[key] = checked if kind == "measure" else checked[0]
    if problems:
        raise SpecError(_deduplicated(problems), source)
    if resolved.get("measures") is None:
        resolved["measures"] = [{"name": name} for name in registry.names("measure")]
    spec = RunSpec.model_validate(resolved)
    measures = [(registry.get("measure", m.name)(m.params()), m.column_label) for m in spec.measures]
    try:
        check_distinct_columns(measures)
    except ValueError as error:
        raise SpecError([SpecProblem("measures", str(error), line_of(node, ("measures",)))], source) from None
    if spec.chance is not None and spec.chance.columns is not None:
        testable = value_columns(measures, headline_only=False)
        for index, column in enumerate(spec.chance.columns):
            if column not in testable:
                where = ("chance", "columns", index)
                problems.append(
                    SpecProblem(
                        format_location(where),
                        f"{column!r} is not a value column of the measures; choose from {', '.join(testable)}",
                        line_of(node, where),
                    )
                )
        if problems:
            raise SpecError(problems, source)
    return spec


PLUGIN_FIELDS = (
    ("model", "model", PluginRef, "plugin"),
    ("dataset", "dataset", PluginRef, "plugin"),
    ("measures", "measure", MeasureRef, "name"),
    ("am", "am", AMSpec, "method"),
)


def _check_plugin(registry, kind, ref, name_key, location, node, problems) -> Any:
    """The reference with its plugin's parameters validated and defaults filled, or recorded problems."""
    name = getattr(ref, name_key)
    try:
        cls = registry.get(kind, name)
    except UserInputError as error:
        where = (*location, name_key)
        problems.append(SpecProblem(format_location(where), str(error), line_of(node, where)))
        return None
    try:
        params = cls.Params.model_validate(ref.params()).model_dump(mode="json")
    except ValidationError as error:
        problems.extend(_problems(error, location, node))
        return None
    fixed = ref.model_dump(mode="json", exclude_none=True, exclude=set(ref.model_extra or ()))
    return {**fixed, **params}


def _deduplicated(problems: list[SpecProblem]) -> list[SpecProblem]:
    return list(dict.fromkeys(problems))


def _problems(error: ValidationError, prefix: tuple, node: yaml.Node | None) -> list[SpecProblem]:
    problems = []
    for detail in error.errors(include_url=False):
        location = (*prefix, *detail["loc"])
        message = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "extra_forbidden":
            message = "unknown key (a typo?)"
        elif detail["type"] == "missing":
            message = "required but missing"
        problems.append(SpecProblem(format_location(location), message, line_of(node, location)))
    return problems
