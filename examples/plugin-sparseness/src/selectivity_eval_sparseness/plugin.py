"""Lifetime sparseness (Vinje & Gallant 2000) as a selectivity-eval measure.

For a unit with responses r_1 .. r_n to the n images,

    S = (1 - (sum_i r_i / n)^2 / (sum_i r_i^2 / n)) / (1 - 1/n)

S is 0 for a unit that responds equally to every image and 1 for a unit that responds to exactly
one image. Unlike the class-based measures, it ignores the labels: it says how sparsely a unit
fires over the images, not for which class.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

import selectivity_eval as se


class SparsenessParams(se.PluginParams):
    negatives: Literal["nan", "clip", "shift"] = Field(
        "nan",
        description=(
            "Units with negative responses, for which the formula is not meant: 'nan' (their "
            "sparseness is NaN), 'clip' (negative responses count as 0, as after a ReLU) or "
            "'shift' (subtract the unit's lowest response, so that it becomes 0)."
        ),
    )


class Sparseness(se.Measure):
    """Lifetime sparseness (Vinje & Gallant 2000): 0 responds to every image alike, 1 to one image only."""

    name = "sparseness"
    Params = SparsenessParams
    columns = {"sparseness": se.Column.VALUE}

    def compute(self, stats: se.LayerStats) -> dict[str, torch.Tensor]:
        mode = self.params.negatives
        lowest = stats.unit_min.double()  # (units,), shared with the other measures
        offset = lowest if mode == "shift" else torch.zeros_like(lowest)
        sums = torch.zeros(stats.n_units, dtype=torch.float64, device=stats.device)
        squares = torch.zeros_like(sums)
        # One pass over the chunk's images, a block of rows at a time: every unit at once,
        # in float64, without a float64 copy of the whole chunk.
        for _, block, _ in stats.row_blocks(contiguous=False):
            responses = block.double() - offset
            if mode == "clip":
                responses = responses.clamp(min=0)
            sums += responses.sum(0)
            squares += responses.square().sum(0)
        n = stats.n_images
        mean, mean_square = sums / n, squares / n
        if n < 2:  # 1 - 1/n = 0: undefined
            return {"sparseness": torch.full_like(sums, torch.nan)}
        sparseness = (1 - mean.square() / mean_square) / (1 - 1 / n)
        sparseness = sparseness.clamp(0.0, 1.0)  # exact in theory; removes rounding below 0 / above 1
        undefined = mean_square == 0  # a unit that never responds (all zero)
        if mode == "nan":
            undefined |= lowest < 0
        return {"sparseness": torch.where(undefined, torch.nan, sparseness)}


@se.hookimpl
def register_measures(register):
    register(Sparseness)
