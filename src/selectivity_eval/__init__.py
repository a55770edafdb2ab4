"""selectivity-eval: how selective are single units of neural networks?

Library use::

    import selectivity_eval as se
    columns = se.compute_measures(activations, labels)            # every registered measure
    columns = se.compute_measures(activations, labels, ["precision"], {"precision": {"top_n": 60}})

    result = se.maximise(model, "fc2", [0, 1, 2], steps=128)     # activation maximisation
    null = se.chance_baselines(activations, labels, ["ccmas"], permutations=100)  # chance levels

    result = se.run_study("study.yaml")          # a whole study in this process (a path, dict or None)
    result.output_dir, result.summary, result.failures, result.report

Write a new measure by subclassing ``se.Measure`` and registering it through the
``register_measures`` hook (see docs/plugins.md).
"""

import os

# MKL's strict conditional numerical reproducibility: a matrix product gives the same bits on any
# number of threads (about 6% slower products on AlexNet's fc6), so an in-process run and a Dask run
# of single-thread workers store the same activations. MKL reads it at its first product, so it is
# set before anything here imports torch; a value the user set wins (docs/distributed.md).
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from selectivity_eval._version import __version__
from selectivity_eval.core.am.method import AMContext, AMMethod
from selectivity_eval.core.measures.chance import chance_baselines
from selectivity_eval.core.measures.compute import compute_measures
from selectivity_eval.core.errors import SelectivityEvalError, SpecError, UserInputError
from selectivity_eval.core.registry.hookspecs import hookimpl
from selectivity_eval.core.statistics.labels import Labels
from selectivity_eval.core.measures.base import Column, ColumnSpec, Measure, Role
from selectivity_eval.core.registry.manager import get_registry, plugin_registered, reload_plugins
from selectivity_eval.core.statistics.ranking import ranked_top_indices
from selectivity_eval.core.sources.base import DatasetSource, LoadedDataset, LoadedModel, ModelSource
from selectivity_eval.core.statistics.layer_stats import LayerStats
from selectivity_eval.core.study.api import load_dataset, load_model, run_study
from selectivity_eval.core.study.run import RunResult
from selectivity_eval.plugins.am.library import AMResult, maximise
from selectivity_eval.schemas.params import PluginParams

__all__ = [
    "AMContext",
    "AMMethod",
    "AMResult",
    "Column",
    "ColumnSpec",
    "DatasetSource",
    "Labels",
    "LayerStats",
    "LoadedDataset",
    "LoadedModel",
    "Measure",
    "ModelSource",
    "PluginParams",
    "Role",
    "RunResult",
    "RunTables",
    "SelectivityEvalError",
    "SpecError",
    "UserInputError",
    "__version__",
    "chance_baselines",
    "compute_measures",
    "get_registry",
    "hookimpl",
    "jitterplot",
    "load_dataset",
    "load_model",
    "load_run",
    "maximise",
    "plugin_registered",
    "ranked_top_indices",
    "reload_plugins",
    "run_study",
]


LAZY = {"load_run", "RunTables", "jitterplot"}


def __getattr__(name: str):
    """``load_run``, ``RunTables`` and ``jitterplot`` (core/outputs/tables.py), imported on first use so
    that ``import selectivity_eval`` and the CLI do not pay for importing pandas."""
    if name in LAZY:
        from selectivity_eval.core.outputs import tables

        return getattr(tables, name)
    raise AttributeError(f"module 'selectivity_eval' has no attribute {name!r}")
