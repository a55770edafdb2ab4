"""Test helpers for plugin authors: a measure contract check and pytest fixtures.

Import them as ``from selectivity_eval.testing import check_measure_contract``. The fixtures
(``registered_plugin``) need no import: installing selectivity-eval registers this module with
pytest through the ``pytest11`` entry point, so every test session in that environment has them.

``check_measure_contract`` checks what docs/plugins.md asks of a measure and what a machine can
check: exactly the declared columns, each of shape (units,) and of the dtype its ``Column`` kind
needs, and each the same when asked for alone; the same result whatever the order of the images
and whatever the chunk of units; the activations left unchanged. That a measure does not loop
over units in Python is not checked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from importlib import metadata
from types import ModuleType
from typing import Any

import numpy as np
import torch

from selectivity_eval.core.measures.compute import as_activation_tensor, compute_measures
from selectivity_eval.core.statistics.labels import Labels
from selectivity_eval.core.measures.base import Column, Measure
from selectivity_eval.core.registry.manager import LOAD_PLUGINS_ENV, plugin_registered, reload_plugins
from selectivity_eval.core.statistics.layer_stats import LayerStats

try:  # the fixtures need pytest; check_measure_contract does not
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

__all__ = ["builtin_plugins_only", "check_measure_contract", "contract_data", "registered_plugin"]

CONTRACT_LABELS = (30, 10, 40, 20)


def contract_data(n_images: int = 48, n_units: int = 9, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Activations (float32, images x units) and labels that a correct measure must handle.

    Four classes of unequal size with label values 10..40 that are not their codes, images in no
    class order, units on scales from 1e-3 to 1e3, the last two signed, and no two activations of
    a unit equal (a measure may break ties by image index, as ``LayerStats`` rankings do, and then
    shuffling the images may legitimately change its result).
    """
    rng = np.random.default_rng(seed)
    classes = np.array(CONTRACT_LABELS)
    codes = np.resize(np.arange(len(classes)), n_images)
    codes[: n_images // 6] = 0  # unequal class sizes
    labels = classes[rng.permutation(codes)]
    values = rng.random((n_images, n_units)) + 0.01
    values[:, 0] += 2.0 * (labels == labels[0])  # one strongly selective unit
    values *= np.logspace(-3, 3, n_units)
    if n_units >= 3:
        values[:, -2:] -= values[:, -2:].mean(0)  # signed, e.g. logits
    return values.astype(np.float32), labels


def check_measure_contract(
    measure: Measure | type[Measure],
    activations: Any = None,
    labels: Any = None,
    *,
    chunk_sizes: Sequence[int] = (1, 2),
    seed: int = 0,
    rtol: float = 1e-6,
    atol: float = 1e-12,
) -> dict[str, np.ndarray]:
    """Assert that ``measure`` keeps the measure contract; return its columns on the data.

    ``activations`` (images x units) and ``labels`` default to ``contract_data()``. Your own data
    should have no tied activations within a unit if your measure breaks ties by image index.
    Checks, each failing with an ``AssertionError`` that says what is wrong:

    - ``compute`` returns a dict with exactly the declared ``columns``, each a torch tensor of
      shape (units,): class columns integer class codes in 0..C-1, flags ``torch.bool``, counts
      integers, values floating point and never infinite (NaN is allowed);
    - ``compute`` leaves the activations unchanged;
    - ``compute_columns`` asked for any one column gives it as ``compute`` does (exactly);
    - the results are the same with the images shuffled (activations and labels together), with
      units computed ``chunk_sizes`` at a time, and when computed twice (value columns to
      ``rtol``/``atol``, NaN equal to NaN; the others exactly).
    """
    if isinstance(measure, type):
        measure = measure()
    if not isinstance(measure, Measure):
        _fail(f"{measure!r} is not a selectivity_eval Measure")
    if activations is None and labels is None:
        activations, labels = contract_data(seed=seed)
    elif activations is None or labels is None:
        _fail("give both activations and labels, or neither")
    matrix = as_activation_tensor(activations)
    labels = np.asarray(labels)
    name = getattr(measure, "name", type(measure).__name__)
    _check_declared_columns(measure, name)
    _check_raw_output(measure, name, matrix, Labels.from_array(labels))

    whole = compute_measures(matrix, labels, [measure])
    expected = measure.output_columns()
    if list(whole) != list(expected):
        _fail(f"measure {name!r}: compute_measures gave columns {list(whole)}, expected {list(expected)}")
    order = np.random.default_rng(seed).permutation(len(labels))
    _compare(whole, compute_measures(matrix[order], labels[order], [measure]), expected, name,
             "changes when the images are shuffled (it must not depend on their order)", rtol, atol)
    for size in chunk_sizes:
        _compare(whole, compute_measures(matrix, labels, [measure], chunk_size=size), expected, name,
                 f"changes when units are computed {size} at a time (each unit must be treated on its own)",
                 rtol, atol)
    _compare(whole, compute_measures(matrix, labels, [measure]), expected, name,
             "changes when computed a second time (it must be deterministic)", rtol, atol)
    _check_single_columns(measure, name, matrix, Labels.from_array(labels))
    return whole


def _fail(message: str) -> None:
    raise AssertionError(message)


def _check_declared_columns(measure: Measure, name: str) -> None:
    columns = getattr(measure, "columns", None)
    if not isinstance(columns, dict) or not columns:
        _fail(f"measure {name!r} must declare `columns`, a dict of column name -> selectivity_eval.Column")
    for column, kind in columns.items():
        if not isinstance(kind, Column):
            _fail(f"measure {name!r}: column {column!r} is declared as {kind!r}, not a selectivity_eval.Column")


def _check_raw_output(measure: Measure, name: str, matrix: torch.Tensor, labels: Labels) -> None:
    before = matrix.clone()
    raw = measure.compute(LayerStats(matrix, labels))
    if not torch.equal(matrix, before):
        _fail(f"measure {name!r} changed the activations in place")
    if not isinstance(raw, dict):
        _fail(f"measure {name!r}: compute returned {type(raw).__name__}, not a dict of column -> tensor")
    missing = [c for c in measure.columns if c not in raw]
    extra = [c for c in raw if c not in measure.columns]
    if missing or extra:
        _fail(f"measure {name!r}: compute returned columns {list(raw)}, declared {list(measure.columns)} "
              f"(missing {missing}, not declared {extra})")
    n_units = matrix.shape[1]
    for column, kind in measure.columns.items():
        values = raw[column]
        if not isinstance(values, torch.Tensor):
            _fail(f"measure {name!r}: column {column!r} is a {type(values).__name__}, not a torch tensor")
        if tuple(values.shape) != (n_units,):
            _fail(f"measure {name!r}: column {column!r} has shape {tuple(values.shape)}, expected ({n_units},)")
        dtype = values.dtype
        integer = not dtype.is_floating_point and not dtype.is_complex and dtype is not torch.bool
        if kind is Column.VALUE and not dtype.is_floating_point:
            _fail(f"measure {name!r}: value column {column!r} has dtype {dtype}, expected a floating dtype")
        if kind is Column.VALUE and dtype.is_floating_point and bool(torch.isinf(values).any()):
            units = torch.nonzero(torch.isinf(values)).flatten()[:5].tolist()
            _fail(f"measure {name!r}: value column {column!r} is infinite for units {units} (finite "
                  "activations); a value column must hold finite numbers, NaN where a unit has no value")
        if kind is Column.FLAG and dtype is not torch.bool:
            _fail(f"measure {name!r}: flag column {column!r} has dtype {dtype}, expected torch.bool")
        if kind in (Column.COUNT, Column.CLASS) and not integer:
            _fail(f"measure {name!r}: {kind.value} column {column!r} has dtype {dtype}, expected an integer dtype")
        if kind is Column.CLASS and values.numel() and not bool(((values >= 0) & (values < labels.n_classes)).all()):
            _fail(f"measure {name!r}: class column {column!r} must hold class codes 0..{labels.n_classes - 1} "
                  f"(the engine turns them into label values), got {values.unique().tolist()[:10]}")


def _check_single_columns(measure: Measure, name: str, matrix: torch.Tensor, labels: Labels) -> None:
    whole = measure.compute(LayerStats(matrix, labels))
    for column in measure.columns:
        alone = measure.compute_columns(LayerStats(matrix, labels), frozenset({column}))
        if column not in alone:
            _fail(f"measure {name!r}: compute_columns asked for {column!r} returned {list(alone)} without it")
        if not np.array_equal(alone[column].cpu().numpy(), whole[column].cpu().numpy(), equal_nan=True):
            _fail(f"measure {name!r}: column {column!r} from compute_columns differs from compute's")


def _compare(expected: dict, actual: dict, kinds: dict, name: str, what: str, rtol: float, atol: float) -> None:
    for column, kind in kinds.items():
        a, b = np.asarray(expected[column]), np.asarray(actual[column])
        if kind is Column.VALUE:
            a, b = a.astype(np.float64), b.astype(np.float64)
            same = np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
        else:
            same = (a == b) | (_isnan(a) & _isnan(b))
        if not same.all():
            units = np.flatnonzero(~same)
            _fail(f"measure {name!r}: column {column!r} {what}; units {units[:5].tolist()} differ: "
                  f"{a[units[:5]].tolist()} vs {b[units[:5]].tolist()}")


def _isnan(values: np.ndarray) -> np.ndarray:
    return np.isnan(values) if values.dtype.kind == "f" else np.zeros(values.shape, dtype=bool)


@contextmanager
def builtin_plugins_only() -> Iterator[None]:
    """Inside the block, only the built-in plugins load: no third-party plugin is autoloaded.

    Use it to register a plugin that is also installed (its entry point would otherwise have
    registered it already), or to keep other installed plugins out of a test. The plugin manager
    is reloaded on entry and again on exit, with ``SELECTIVITY_EVAL_LOAD_PLUGINS`` as it was.
    """
    previous = os.environ.get(LOAD_PLUGINS_ENV)
    os.environ[LOAD_PLUGINS_ENV] = ""
    reload_plugins()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(LOAD_PLUGINS_ENV, None)
        else:
            os.environ[LOAD_PLUGINS_ENV] = previous
        reload_plugins()


def _origin_of(plugin: Any) -> tuple[str, str]:
    """The installed distribution and version that provide a plugin module's top-level package, if any."""
    if not isinstance(plugin, ModuleType):
        return "(runtime)", ""
    package = plugin.__name__.split(".")[0]
    for distribution in metadata.packages_distributions().get(package, []):
        try:
            return distribution, metadata.version(distribution)
        except metadata.PackageNotFoundError:  # pragma: no cover
            continue
    return "(runtime)", ""


if pytest is not None:

    @pytest.fixture
    def registered_plugin():
        """Register plugins for one test: ``registered_plugin(module, name=None) -> registered name``.

        Every plugin registered through it is unregistered after the test. While any is
        registered, third-party plugins are not autoloaded (see ``builtin_plugins_only``), so a
        plugin that is also installed can be registered from its module without an "already
        registered" error, and other installed plugins cannot clash with it. ``distribution`` and
        ``version`` (what ``selectivity-eval plugins`` shows) default to the installed
        distribution that provides the plugin's package, else ``(runtime)``.
        """
        with ExitStack() as stack:
            isolated = False

            def register(plugin: Any, name: str | None = None, *, distribution: str | None = None,
                         version: str | None = None) -> str:
                nonlocal isolated
                if not isolated:
                    stack.enter_context(builtin_plugins_only())
                    isolated = True
                found_distribution, found_version = _origin_of(plugin)
                return stack.enter_context(
                    plugin_registered(
                        plugin,
                        name=name,
                        distribution=distribution or found_distribution,
                        version=found_version if version is None else version,
                    )
                )

            yield register
