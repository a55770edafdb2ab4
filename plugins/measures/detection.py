"""Signal-detection measures (Gale et al. 2020), measures.md section 5.

The unit is read as a detector of one target class: hit rate H(t) = P(a >= t | target) and false
alarm rate F(t) = P(a >= t | other) for a threshold t. Everything follows from, for each image of
the target class, how many images (of the target class, and in all) lie strictly below it and at
or below it, which a sort of each unit's activations and ``searchsorted`` give for all units at once.
The sort does not depend on the labels: chance baselines sort each unit once for all shufflings,
and each shuffling sorts only its target class's images. On CPU chunks that the compiled
statistics take, ``detection_kernel.py`` does each unit's work in one compiled pass, with the
same results bit for bit.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from selectivity_eval.core.registry.hookspecs import hookimpl
from selectivity_eval.core.measures.base import Column, Measure
from selectivity_eval.core.statistics.backend import compiled_kernels
from selectivity_eval.core.statistics.layer_stats import LayerStats
from selectivity_eval.schemas.params import PluginParams

SORT_BYTES = 64 * 2**20


class DetectionParams(PluginParams):
    target: Literal["mean", "top"] = Field(
        "mean", description="Target class: the class of highest mean (ccmas_class) or of the top activation."
    )


class Detection(Measure):
    """The unit as a detector of its target class: AUROC and the best hit minus false-alarm rate."""

    name = "detection"
    Params = DetectionParams
    columns = {
        "detection_class": Column.CLASS,
        "auroc": Column.VALUE,
        "max_informedness": Column.VALUE,
        "hit_rate": Column.VALUE,
        "false_alarm": Column.VALUE,
    }

    def compute(self, stats: LayerStats) -> dict[str, torch.Tensor]:
        target = stats.top_mean_class if self.params.target == "mean" else stats.top_class
        # Statistics kept for many labellings sort each unit once (``sorted_activations``) and
        # every labelling reads that; otherwise units are sorted a few at a time, in bounded memory.
        step = stats.n_units if stats.reused else max(1, SORT_BYTES // max(1, stats.n_images * 12))
        parts = [
            self._detect(stats, target[start : start + step], slice(start, start + step))
            for start in range(0, stats.n_units, step)
        ]
        out = {column: torch.cat([part[column] for part in parts]) for column in parts[0]} if parts else {}
        out["detection_class"] = target
        return out

    @staticmethod
    def _detect(stats: LayerStats, target: torch.Tensor, units: slice) -> dict[str, torch.Tensor]:
        ordered = stats.sorted_activations(units)
        if compiled_kernels(stats.activations) is not None:
            from selectivity_eval.plugins.measures.detection_kernel import detect

            return detect(stats.activations[:, units], ordered, stats.labels, target)
        n_units, n_images = ordered.shape
        device = ordered.device
        n_pos_count = stats.labels.counts[target]
        n_pos = n_pos_count.double()
        n_neg = n_images - n_pos
        # The positives' values in ascending order, each unit's row padded with +inf past its own
        # count: the target class's images gathered by class, then sorted within the unit.
        order, starts = stats.labels.grouped
        order = torch.as_tensor(order, device=device)
        first = torch.as_tensor(starts, device=device)[target]
        width = int(n_pos_count.max()) if n_units else 0
        slot = torch.arange(width, device=device)
        real = slot < n_pos_count.unsqueeze(1)
        images = order[first.unsqueeze(1) + torch.minimum(slot, n_pos_count.unsqueeze(1) - 1)]
        pos_values = torch.where(real, stats.activations[:, units].gather(0, images.T).T, torch.inf)
        # As a sort of the whole row with the other images at +inf would: a NaN comes after every
        # +inf, so only lands among the first ``width`` places when fewer non-NaN values precede it.
        nan = torch.isnan(pos_values)
        pos_ordered = torch.sort(pos_values.masked_fill(nan, torch.inf), dim=1).values
        not_nan = n_images - nan.sum(1, keepdim=True)
        pos_ordered = pos_ordered.masked_fill(slot >= not_nan, torch.nan).contiguous()
        below_all = torch.searchsorted(ordered, pos_ordered, side="left").double()
        upto_all = torch.searchsorted(ordered, pos_ordered, side="right").double()
        below_pos = torch.searchsorted(pos_ordered, pos_ordered, side="left").double()
        upto_pos = torch.searchsorted(pos_ordered, pos_ordered, side="right").double()
        neg_below = below_all - below_pos
        neg_equal = (upto_all - below_all) - (upto_pos - below_pos)
        auroc = torch.where(real, neg_below + 0.5 * neg_equal, 0.0).sum(1) / (n_pos * n_neg)

        # Threshold at each positive value v: hits are positives >= v, false alarms negatives >= v.
        # Informedness compared as the exact integer numerator hits*n_neg - alarms*n_pos.
        pos_at_or_above = n_pos.unsqueeze(1) - below_pos
        neg_at_or_above = n_neg.unsqueeze(1) - neg_below
        numerator = pos_at_or_above * n_neg.unsqueeze(1) - neg_at_or_above * n_pos.unsqueeze(1)
        numerator = torch.where(real, numerator, -torch.inf)
        # The highest threshold among equally good ones: the fewest false alarms for that informedness.
        best = numerator.shape[1] - 1 - torch.argmax(numerator.flip(1), dim=1, keepdim=True)
        best_value = numerator.gather(1, best).squeeze(1) / (n_pos * n_neg)
        hits = pos_at_or_above / n_pos.unsqueeze(1)
        alarms = neg_at_or_above / n_neg.unsqueeze(1)
        above_chance = best_value > 0
        nan = torch.full_like(auroc, torch.nan)
        has_both = (n_pos > 0) & (n_neg > 0)
        return {
            "auroc": torch.where(has_both, auroc, nan),
            "max_informedness": torch.where(has_both, best_value.clamp(min=0.0), nan),
            "hit_rate": torch.where(has_both, torch.where(above_chance, hits.gather(1, best).squeeze(1), 0.0), nan),
            "false_alarm": torch.where(
                has_both, torch.where(above_chance, alarms.gather(1, best).squeeze(1), 0.0), nan
            ),
        }


@hookimpl
def register_measures(register):
    register(Detection)
