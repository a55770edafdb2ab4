"""The units' highest value of the AM objective over a data set: one forward pass, stopped at the layers."""

from __future__ import annotations

import numpy as np
import torch

from selectivity_eval.core.extraction.reduce import am_reduction
from selectivity_eval.core.cli.progress import Reporter
from selectivity_eval.core.sources.base import LoadedDataset, LoadedModel
from selectivity_eval.plugins.am.engine import StopForward, prepared


def dataset_maxima(
    model: LoadedModel,
    data: LoadedDataset,
    module_names: dict[str, str],
    objective: str,
    device: torch.device,
    *,
    measured: np.ndarray | None = None,
    batch_size: int = 128,
    reporter: Reporter | None = None,
) -> dict[str, np.ndarray]:
    """Each layer's per-unit maximum of the AM objective (pre-ReLU, centre/mean) over the data set's images.

    One pass, stopped after the deepest of the layers; only the ``measured`` rows count (all readable
    ones when None); unreadable items are skipped.
    """
    rows = np.arange(len(data)) if measured is None else np.flatnonzero(measured)
    dataset = data.dataset if len(rows) == len(data) else torch.utils.data.Subset(data.dataset, rows.tolist())
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=data.num_workers, collate_fn=_readable
    )
    network = model.module.to(device)
    modules = dict(network.named_modules())
    maxima: dict[str, torch.Tensor] = {}
    captured: dict[str, torch.Tensor] = {}

    def hook_for(label):
        reduction = am_reduction(label, model.layout_of(module_names[label]), objective)

        def hook(_module, _inputs, output):
            if label in captured:
                return
            captured[label] = reduction(output)
            if len(captured) == len(module_names):
                raise StopForward

        return hook

    handles = [modules[name].register_forward_hook(hook_for(label)) for label, name in module_names.items()]
    steps = reporter.steps("AM: data set maxima", len(rows)) if reporter else None
    try:
        with prepared(network), torch.inference_mode():
            for inputs, count in loader:
                if inputs is not None:
                    captured.clear()
                    try:
                        model.forward(inputs.to(device))
                    except StopForward:
                        pass
                    for label, values in captured.items():
                        batch_max = values.amax(0)
                        maxima[label] = batch_max if label not in maxima else torch.maximum(maxima[label], batch_max)
                if steps:
                    steps.advance(count)
    finally:
        for handle in handles:
            handle.remove()
    return {label: values.cpu().numpy() for label, values in maxima.items()}


def _readable(batch):
    items = [item for item, _label in batch if item is not None]
    return (torch.utils.data.default_collate(items) if items else None), len(batch)
