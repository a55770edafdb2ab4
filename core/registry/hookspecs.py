"""The hook specifications every plugin, built-in or third-party, implements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    from selectivity_eval.core.am.method import AMMethod
    from selectivity_eval.core.measures.base import Measure
    from selectivity_eval.core.sources.base import DatasetSource, ModelSource

hookspec = pluggy.HookspecMarker("selectivity_eval")
hookimpl = pluggy.HookimplMarker("selectivity_eval")


@hookspec
def register_models(register: Callable[[type[ModelSource]], None]) -> None:
    """Register model sources by calling ``register(ModelSourceSubclass)``."""


@hookspec
def register_datasets(register: Callable[[type[DatasetSource]], None]) -> None:
    """Register data set sources by calling ``register(DatasetSourceSubclass)``."""


@hookspec
def register_measures(register: Callable[[type[Measure]], None]) -> None:
    """Register selectivity measures by calling ``register(MeasureSubclass)``."""


@hookspec
def register_am_methods(register: Callable[[type[AMMethod]], None]) -> None:
    """Register activation-maximisation methods by calling ``register(AMMethodSubclass)``."""
