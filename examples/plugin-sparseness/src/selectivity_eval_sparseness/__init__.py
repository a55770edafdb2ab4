"""Lifetime sparseness for selectivity-eval; the measure lives in ``selectivity_eval_sparseness.plugin``."""

__version__ = "0.1.0"
