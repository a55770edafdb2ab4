"""Which code computes a chunk's shared statistics: the compiled (numba) passes or torch.

Both give bit-identical results; ``SELECTIVITY_EVAL_KERNELS`` chooses, and a run loads the
compiled passes on a thread while it extracts, so that their one-time cost is hidden.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from types import ModuleType

import torch

from selectivity_eval.core.errors import UserInputError

KERNELS_VARIABLE = "SELECTIVITY_EVAL_KERNELS"
KERNEL_MODES = ("auto", "compiled", "torch")
COMPILED_MIN_ACTIVATIONS = 2**24
LOADED_MIN_ACTIVATIONS = 2**20
COMPILED_MODULES = (
    "selectivity_eval.core.statistics.kernels",
    "selectivity_eval.plugins.measures.detection_kernel",
    "selectivity_eval.plugins.measures.precision_kernel",
)
"""Modules of compiled passes, each with a ``warm_up()`` that compiles (or loads) its kernels."""


def kernel_mode() -> str:
    """``SELECTIVITY_EVAL_KERNELS`` (``auto`` when unset), checked: runs check it before any work."""
    mode = os.environ.get(KERNELS_VARIABLE, "auto")
    if mode not in KERNEL_MODES:
        raise UserInputError(
            f"The environment variable {KERNELS_VARIABLE} is {mode!r}; it must be one of "
            f"{', '.join(KERNEL_MODES)} (or unset, which means auto)."
        )
    return mode


def compiled_kernels(activations: torch.Tensor) -> ModuleType | None:
    """``stats_kernels`` when its compiled passes should compute these activations' statistics.

    ``SELECTIVITY_EVAL_KERNELS`` chooses: ``auto`` (the default) compiles CPU float chunks of at
    least ``COMPILED_MIN_ACTIVATIONS`` values, where the kernels' one-time load (about half a
    second) is repaid, or of ``LOADED_MIN_ACTIVATIONS`` once this process has loaded them (a run
    with a large layer measures its smaller ones with them too), and uses torch if numba is
    missing; ``compiled`` compiles every CPU float chunk; ``torch`` never does. Both give
    identical results.
    """
    mode = kernel_mode()
    if (
        mode == "torch"
        or activations.device.type != "cpu"
        or activations.dtype not in (torch.float32, torch.float64)
        or activations.requires_grad
        or activations.numel() == 0
        or (mode == "auto" and activations.numel() < _auto_threshold())
    ):
        return None
    try:
        from selectivity_eval.core.statistics import kernels as stats_kernels
    except ImportError:
        if mode == "compiled":
            raise
        return None
    return stats_kernels


def _auto_threshold() -> int:
    loaded = all(name in sys.modules for name in COMPILED_MODULES)
    return min(LOADED_MIN_ACTIVATIONS, COMPILED_MIN_ACTIVATIONS) if loaded else COMPILED_MIN_ACTIVATIONS


_warming: threading.Thread | None = None


def prepare_kernels(largest_chunk: int, device: torch.device) -> None:
    """Start loading the compiled kernels on a thread, when chunks of ``largest_chunk`` activations will use them.

    Loading takes about half a second; the first time after an install numba compiles them for
    several seconds more (then caches them). A run starts this as soon as it knows its layers'
    sizes, so that happens while it extracts, and ``kernels_ready`` shows any wait that is left.
    """
    global _warming
    mode = kernel_mode()
    if _warming is not None or mode == "torch" or torch.device(device).type != "cpu":
        return
    if mode == "auto" and largest_chunk < COMPILED_MIN_ACTIVATIONS:
        return

    def warm() -> None:
        for name in COMPILED_MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:  # auto without numba: torch computes the statistics
                return
            module.warm_up()

    _warming = threading.Thread(target=warm, name="selectivity-eval-kernels", daemon=True)
    _warming.start()


def kernels_ready(reporter) -> None:
    """Wait for ``prepare_kernels``' thread, on a progress bar of its own when it is not done yet."""
    if _warming is None or not _warming.is_alive():
        return
    with reporter.live():
        steps = reporter.steps("Compiling the statistics kernels (numba, first run after an install)", 1)
        _warming.join()
        steps.advance()
