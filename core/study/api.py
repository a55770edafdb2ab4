"""Studies as library calls: run a spec in this process, load a model or a data set by plugin name.

``run_study`` is what ``selectivity-eval run`` does, minus the terminal: it returns the run's
``RunResult`` and raises ``SelectivityEvalError`` (never ``SystemExit``) on bad input, so notebooks,
scripts and plugin authors' tests can run whole studies.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from selectivity_eval.core.cli.progress import Reporter
from selectivity_eval.core.registry.manager import get_registry
from selectivity_eval.core.sources.base import LoadedDataset, LoadedModel
from selectivity_eval.core.spec.loader import load_spec, validate_spec
from selectivity_eval.core.study.run import RunResult, run_spec
from selectivity_eval.schemas.spec import RunSpec


def run_study(
    spec: RunSpec | Mapping[str, Any] | str | Path | None = None,
    *,
    output: str | Path | None = None,
    progress: bool = False,
) -> RunResult:
    """Run the study ``spec`` describes and return its result.

    ``spec`` is a spec file's path, a mapping shaped like a spec file, or a validated ``RunSpec``;
    ``None`` runs the embedded digits example. ``output`` overrides the spec's output folder;
    ``progress`` shows the progress bars a terminal run shows.
    """
    if spec is None:
        from selectivity_eval.core.spec.default import default_spec_path

        spec = default_spec_path()
    if isinstance(spec, RunSpec):
        validated = spec
    elif isinstance(spec, Mapping):
        validated = validate_spec(dict(spec), source="the spec mapping")
    else:
        validated = load_spec(Path(spec))
    if output is not None:
        validated = validated.model_copy(update={"output": Path(output)})
    return run_spec(validated, reporter=Reporter(quiet=not progress))


def load_model(plugin: str, *, seed: int = 0, **params: Any) -> LoadedModel:
    """The network a model plugin gives for ``params`` (``se.load_model("digits-cnn")``)."""
    return get_registry().get("model", plugin)(params).load(seed=seed)


def load_dataset(plugin: str, *, seed: int = 0, transform=None, **params: Any) -> LoadedDataset:
    """The images and labels a data set plugin gives for ``params``; ``transform`` as in ``DatasetSource.load``."""
    return get_registry().get("dataset", plugin)(params).load(seed=seed, transform=transform)
