"""A data set plugin for the dask tests, installed for them as a real distribution with an entry point.

``slow-digits`` is the digits data set with knobs: a delay per image, items that cannot be read,
``correct_only``, a file it writes (``signal_dir/<pid>``) when a dask worker reads item
``signal_at``, so a test knows which worker process to kill mid-shard, and an item that raises
while the file ``fail_flag`` exists. Dask workers are separate processes: they find this plugin
the way any third-party plugin is found, through its entry point on their ``sys.path``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from pydantic import Field

import selectivity_eval as se
from selectivity_eval.plugins.datasets.digits import digits_arrays


class SlowDigitsParams(se.PluginParams):
    split: str = "test"
    delay: float = Field(0.0, ge=0)
    broken: list[int] = Field(default_factory=list)
    on_unreadable: str = "fail"
    correct_only: bool = False
    signal_at: int | None = None
    signal_dir: str | None = None
    fail_flag: str | None = None
    fail_at: int | None = None


def _in_dask_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
        return True
    except (ImportError, ValueError):
        return False


class SlowDigits(se.DatasetSource):
    """Digits, slowly, with unreadable items and signals for the dask tests."""

    name = "slow-digits"
    Params = SlowDigitsParams

    def load(self, *, seed, transform=None):
        params = self.params
        images, labels = digits_arrays(params.split)
        broken = set(params.broken)

        class Items(torch.utils.data.Dataset):
            def __len__(self):
                return len(labels)

            def __getitem__(self, index):
                if params.delay:
                    time.sleep(params.delay)
                if index == params.signal_at and params.signal_dir and _in_dask_worker():
                    Path(params.signal_dir, str(os.getpid())).touch()
                if index == params.fail_at and params.fail_flag and Path(params.fail_flag).exists():
                    raise RuntimeError(f"item {index} fails while {params.fail_flag} exists")
                return (None if index in broken else torch.from_numpy(images[index])), int(labels[index])

        return se.LoadedDataset(
            dataset=Items(),
            labels=labels,
            class_names=[str(d) for d in range(10)],
            identity={"split": params.split, "broken": sorted(broken), "n_images": len(labels)},
            describe=lambda index: f"digit-{index}.png",
            on_unreadable=params.on_unreadable,
            correct_only=params.correct_only,
        )


@se.hookimpl
def register_datasets(register):
    register(SlowDigits)
