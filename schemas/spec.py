"""The run spec: which model, data set, layers, measures and AM settings a study uses.

These models check the spec's shape. Each plugin's own parameters are checked against that
plugin's ``Params`` model by ``selectivity_eval.core.spec.loader``, which knows the registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from selectivity_eval.schemas.executor import ExecutorSpec
from selectivity_eval.schemas.params import Seed
from selectivity_eval.schemas.report import ReportSpec


def _name_to_mapping(value: Any, key: str) -> Any:
    return {key: value} if isinstance(value, str) else value


class PluginRef(BaseModel):
    """A model or data set: ``plugin`` names it, every other key is a parameter of that plugin."""

    model_config = ConfigDict(extra="allow")

    plugin: str = Field(description="Name of a registered model or data set plugin.")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return _name_to_mapping(value, "plugin")

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LayerSpec(BaseModel):
    """A layer to measure: a dotted module name or an alias the model declares."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Module name from named_modules(), or an alias such as fc2.")
    pool: Literal["max", "mean", "center"] = Field(
        "max", description="Spatial reduction of a conv feature map to one value per channel."
    )
    relu: bool = Field(False, description="Take the value after the ReLU that follows the module.")
    tokens: Literal["cls", "mean", "max", "patch_mean", "patch_max"] | None = Field(
        None,
        description=(
            "Reduction of a (batch, tokens, features) output to one value per feature: cls (the class token), "
            "mean or max over all tokens, patch_mean or patch_max over the patch tokens only (class and other "
            "prefix tokens left out). Omitted: cls where the model has a class token, else mean."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return _name_to_mapping(value, "name")


class MeasureRef(BaseModel):
    """A measure: ``name`` picks it, ``label`` renames its columns, other keys are its parameters."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="Name of a registered measure plugin.")
    label: str | None = Field(
        None, description="Replaces the measure's name in its column names, to run one measure twice."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return _name_to_mapping(value, "name")

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def column_label(self) -> str:
        return self.label or self.name


class AMSpec(BaseModel):
    """Activation maximisation: ``method`` names an AM plugin, other keys are its parameters."""

    model_config = ConfigDict(extra="allow")

    method: str = Field(description="Name of a registered AM method plugin.")

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ChanceSpec(BaseModel):
    """Chance baselines: every chosen column recomputed under shuffled labels."""

    model_config = ConfigDict(extra="forbid")

    permutations: int = Field(100, ge=1, description="How many label shufflings.")
    seed: Seed = Field(0, description="Seed of the shufflings.")
    columns: list[str] | None = Field(
        None,
        description=(
            "Columns to test (any value or count column); omitted means each measure's headline "
            "value and count columns, e.g. precision but not precision_min, precision_max or precision_ties."
        ),
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level for counting units above chance.")
    correction: Literal["fdr_bh", "bonferroni", "none"] = Field(
        "fdr_bh", description="Multiple-comparison correction across a layer's units."
    )


class RunSpec(BaseModel):
    """One study: a model, a data set, the layers to measure and the measures to compute."""

    model_config = ConfigDict(extra="forbid")

    model: PluginRef
    dataset: PluginRef
    layers: list[LayerSpec] = Field(min_length=1)
    measures: list[MeasureRef] | None = Field(
        None, min_length=1, description="Measures to compute; omitted means every registered measure."
    )
    am: AMSpec | None = None
    chance: ChanceSpec | None = None
    report: ReportSpec = Field(default_factory=ReportSpec, description="Figures, unit cards and report.html.")
    summary_units: Literal["responsive", "all"] = Field(
        "responsive",
        description=(
            "Units that summary means are over: responsive (every unit whose activation varies; "
            "silent, constant units are counted beside) or all."
        ),
    )
    untrained_baseline: bool = Field(
        False, description="Also measure the same layers with the architecture's random initialisation (seeded)."
    )
    output: Path = Field(Path("runs/selectivity"), description="Directory the run writes its results to.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(256, ge=1)
    seed: Seed = Field(0, description="Seed of every random draw (0 to 2**63 - 1).")
    executor: ExecutorSpec = Field(
        default_factory=ExecutorSpec, description="Where extraction and measures run: local or dask (distributed.md)."
    )

    @field_validator("layers")
    @classmethod
    def _unique_layers(cls, layers: list[LayerSpec]) -> list[LayerSpec]:
        _require_unique([layer.name for layer in layers], "the layer")
        return layers

    @field_validator("measures")
    @classmethod
    def _unique_measures(cls, measures: list[MeasureRef] | None) -> list[MeasureRef] | None:
        if measures is not None:
            _require_unique([m.column_label for m in measures], "the measure (give one a `label`)")
        return measures


def _require_unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"names {what} {name!r} twice")
        seen.add(name)


def _allow_string_shorthand(node: Any) -> Any:
    """Where the schema refers to a model that also accepts a bare name, allow a string there too."""
    shorthand = {f"#/$defs/{name}" for name in ("PluginRef", "LayerSpec", "MeasureRef")}
    if isinstance(node, dict):
        if node.get("$ref") in shorthand and len(node) == 1:
            return {"anyOf": [node, {"type": "string"}]}
        return {key: _allow_string_shorthand(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_allow_string_shorthand(item) for item in node]
    return node


def run_spec_json_schema() -> dict[str, Any]:
    """JSON Schema of ``RunSpec``, including the shorthands (``model: digits-cnn``, ``layers: [fc2]``)."""
    return _allow_string_shorthand(RunSpec.model_json_schema())
