"""A data set plugin for the kill-and-resume test, installed for it as a real distribution with an entry point.

``gated-imagenet-val`` is the ``imagenet-val`` data set whose items report to files in ``gate_dir``:
each item read appends its index to ``reads-<pid>.txt``; while ``gate_dir/block`` exists, the item
whose index that file holds touches ``blocked`` and then waits until the process is killed. The
test kills the run when ``blocked`` appears, so where the run stops depends on no timing. Its
parameters stay the same between the killed run and the rerun (they are part of the activation
store's key); only the files change.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from torch.utils.data import Dataset

from selectivity_eval.core.registry.hookspecs import hookimpl
from selectivity_eval.plugins.datasets.imagenet_val import ImageNetVal, ImageNetValParams


class GatedParams(ImageNetValParams):
    gate_dir: str


class GatedItems(Dataset):
    def __init__(self, items: Dataset, gate_dir: str):
        self.items = items
        self.gate = Path(gate_dir)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        with open(self.gate / f"reads-{os.getpid()}.txt", "a") as log:
            log.write(f"{index}\n")
        block = self.gate / "block"
        if block.is_file() and int(block.read_text()) == index:
            (self.gate / "blocked").touch()
            while True:
                time.sleep(60)
        return self.items[index]


class GatedImageNetVal(ImageNetVal):
    """imagenet-val whose reads are logged and which can be made to stop at one item until killed."""

    name = "gated-imagenet-val"
    Params = GatedParams

    def load(self, *, seed, transform=None):
        loaded = super().load(seed=seed, transform=transform)
        return replace(loaded, dataset=GatedItems(loaded.dataset, self.params.gate_dir))


@hookimpl
def register_datasets(register):
    register(GatedImageNetVal)
