"""The parameters of the ``gradient-ascent`` AM method, shared by the spec and ``se.maximise``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from selectivity_eval.schemas.params import PluginParams, Seed


class TopUnits(PluginParams):
    """The ``top`` units of a layer ranked by a measure column, highest first (ties: lower unit first)."""

    top: int = Field(ge=1, description="How many units.")
    by: str = Field(description="A numeric column of units.csv, e.g. ccmas, precision, topclass.")


class OptimiseParams(PluginParams):
    """How each image is optimised: what ``se.maximise`` takes, besides the layer and the units."""

    steps: int = Field(256, ge=1, description="Gradient-ascent steps per image.")
    lr: float = Field(0.05, gt=0, description="Adam's learning rate.")
    batch_size: int = Field(32, ge=1, description="Units optimised together, one image each.")
    image_size: int | None = Field(
        None, ge=1, description="Side of the square image; None: the model's own input size (example_input)."
    )
    channels: int | None = Field(None, ge=1, description="Image channels; None: the model's own.")
    parameterisation: Literal["fourier", "pixel"] = Field(
        "fourier", description="fourier: a scaled spectrum (Olah et al. 2017); pixel: plain pixels."
    )
    decorrelate: bool = Field(True, description="Decorrelated colour (RGB images only; Olah et al. 2017).")
    jitter: float = Field(8.0, ge=0, description="Random shift each step, up to this many pixels each way.")
    scale: tuple[float, float] = Field(
        (0.9, 1.1), description="Random zoom each step, a factor between these two (1 = none)."
    )
    rotate: float = Field(10.0, ge=0, description="Random rotation each step, up to this many degrees each way.")
    l2: float = Field(0.0, ge=0, description="Weight of the L2 decay: mean squared distance of the image from grey.")
    tv: float = Field(0.0, ge=0, description="Weight of the total variation: mean absolute neighbour difference.")
    blur_every: int = Field(0, ge=0, description="Gaussian blur every this many steps (0: never; Yosinski et al. 2015).")
    blur_sigma: float = Field(0.5, gt=0, description="Standard deviation of that blur, in pixels.")
    objective: Literal["center", "mean", "cls"] = Field(
        "center",
        description=(
            "For a conv channel: its value at the centre of the map (center, cls), or the map's mean (mean). "
            "For a transformer feature (batch, tokens, features): its value at the class token (cls; center "
            "too where the model has a class token, else the mean), or its mean over all tokens (mean)."
        ),
    )
    normalise: Literal["auto", "none", "imagenet"] = Field(
        "auto",
        description="auto: the model transform's mean/std when it has them, else none; imagenet: ImageNet's.",
    )
    seed: Seed | None = Field(None, description="Seed of every random draw; None: the run's seed.")
    precision: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="bfloat16: optimise with the network under bfloat16 autocast, about 3x faster on CPUs with "
        "AMX and on recent GPUs, slower elsewhere; activations reported are from a float32 pass either way.",
    )

    @field_validator("scale")
    @classmethod
    def _scale_range(cls, scale: tuple[float, float]) -> tuple[float, float]:
        low, high = scale
        if not 0 < low <= high:
            raise ValueError(f"scale must be [low, high] with 0 < low <= high, not {list(scale)}")
        return scale


class GradientAscentParams(OptimiseParams):
    """The spec's ``am:`` block for ``method: gradient-ascent``."""

    layers: list[str] | None = Field(None, description="Which of the run's layers; None: every measured layer.")
    units: Literal["all"] | list[int] | TopUnits = Field(
        "all", description="'all', a list of unit indices, or {top: K, by: COLUMN} (the K highest units by COLUMN)."
    )
    png_min_size: int = Field(128, ge=1, description="PNGs smaller than this are enlarged (nearest neighbour) to it.")

    @field_validator("units", mode="before")
    @classmethod
    def _units(cls, units: Any) -> Any:
        return parse_units(units)


def parse_units(units: Any) -> str | list[int] | TopUnits:
    """``'all'``, a list of unit indices (duplicates dropped) or a ``TopUnits``; ValueError naming the item."""
    if isinstance(units, TopUnits) or units == "all":
        return units
    if isinstance(units, dict):
        return TopUnits.model_validate(units)
    if isinstance(units, (list, tuple)):
        if not units:
            raise ValueError("units is an empty list; give 'all', unit indices, or {top: K, by: COLUMN}")
        for index, unit in enumerate(units):
            if isinstance(unit, bool) or not isinstance(unit, int):
                raise ValueError(f"units[{index}] is {unit!r}, not a unit index (an integer)")
            if unit < 0:
                raise ValueError(f"units[{index}] is {unit}: unit indices start at 0")
        return list(dict.fromkeys(units))
    raise ValueError(f"units must be 'all', a list of unit indices, or {{top: K, by: COLUMN}}, not {units!r}")
