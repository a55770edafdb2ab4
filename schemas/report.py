"""The spec's ``report:`` block: which figures, unit cards and pages a run writes beside its results."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from selectivity_eval.schemas.params import Seed


class ReportSpec(BaseModel):
    """``report.html`` (plots, layer tables, unit cards) and, when AM images exist, ``rating.html``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Build the report at the end of the run.")
    formats: list[Literal["png", "svg"]] = Field(
        ["png"], min_length=1, description="Figure formats written; the report shows the first."
    )
    units_per_measure: int = Field(
        8, ge=0, description="Unit cards per layer: the most selective units by each measure's headline column."
    )
    random_units: int = Field(8, ge=0, description="Unit cards per layer: this many more units, drawn at random.")
    top_images: int = Field(9, ge=0, le=64, description="Highest-activating data set images on each unit card.")
    seed: Seed = Field(0, description="Seed of the random units, the jitter of the plots and the rating page's order.")

    @model_validator(mode="before")
    @classmethod
    def _from_flag(cls, value: Any) -> Any:
        """``report: false`` is short for ``report: {enabled: false}`` (and ``true`` for the defaults)."""
        return {"enabled": value} if isinstance(value, bool) else value

    @field_validator("formats")
    @classmethod
    def _distinct(cls, formats: list[str]) -> list[str]:
        if len(set(formats)) != len(formats):
            raise ValueError("names a format twice")
        return formats
