"""selectivity_eval.testing: the contract check catches broken measures; the fixture isolates and cleans up."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

import selectivity_eval as se
from selectivity_eval.core.registry.manager import LOAD_PLUGINS_ENV, get_registry
from selectivity_eval.testing import builtin_plugins_only, check_measure_contract, contract_data

from . import thirdparty_plugin

BUILTIN_MEASURES = ["ccmas", "detection", "localist", "precision", "topclass"]


@pytest.mark.parametrize("name", BUILTIN_MEASURES)
def test_the_builtin_measures_keep_the_contract(name):
    columns = check_measure_contract(get_registry().get("measure", name))
    assert all(len(values) == 9 for values in columns.values())


def test_contract_data_is_tie_free_with_label_values_that_are_not_codes():
    activations, labels = contract_data()
    assert activations.dtype == np.float32 and activations.shape == (48, 9)
    assert all(len(np.unique(activations[:, unit])) == 48 for unit in range(9))
    assert sorted(set(labels.tolist())) == [10, 20, 30, 40]
    assert (activations < 0).any() and len(set(np.bincount(labels)[[10, 20, 30, 40]])) > 1


def _measure(compute, columns=None, name="broken", compute_columns=None):
    """A Measure subclass named ``name`` whose compute is ``compute(stats)`` (and, when given,
    whose compute_columns is ``compute_columns(stats, wanted)``)."""
    body = {"name": name, "columns": columns or {name: se.Column.VALUE}, "compute": lambda self, stats: compute(stats)}
    if compute_columns is not None:
        body["compute_columns"] = lambda self, stats, wanted: compute_columns(stats, wanted)
    return type("Broken", (se.Measure,), body)()


def _value(stats):
    return stats.unit_max.double()


BROKEN = {
    "wrong shape": (
        _measure(lambda s: {"broken": torch.zeros(s.n_units + 1, dtype=torch.float64)}),
        r"column 'broken' has shape \(10,\), expected \(9,\)",
    ),
    "2-D column": (_measure(lambda s: {"broken": s.class_max.double()}), r"has shape \(4, 9\)"),
    "missing column": (
        _measure(lambda s: {"broken": _value(s)}, {"broken": se.Column.VALUE, "broken_class": se.Column.CLASS}),
        r"missing \['broken_class'\]",
    ),
    "undeclared column": (
        _measure(lambda s: {"broken": _value(s), "extra": _value(s)}),
        r"not declared \['extra'\]",
    ),
    "not a dict": (_measure(lambda s: [_value(s)]), "not a dict"),
    "numpy column": (_measure(lambda s: {"broken": _value(s).numpy()}), "not a torch tensor"),
    "depends on image order": (
        _measure(lambda s: {"broken": s.activations[0].double()}),
        "changes when the images are shuffled",
    ),
    "depends on the chunk of units": (
        _measure(lambda s: {"broken": _value(s) / _value(s).abs().max()}),
        "changes when units are computed 1 at a time",
    ),
    "not deterministic": (
        _measure(lambda s: {"broken": _value(s) + torch.rand(s.n_units, dtype=torch.float64)}),
        "changes",
    ),
    "flag as float": (
        _measure(lambda s: {"broken": (_value(s) > 1).double()}, {"broken": se.Column.FLAG}),
        "flag column 'broken' has dtype torch.float64, expected torch.bool",
    ),
    "class as float": (
        _measure(lambda s: {"broken": s.top_class.double()}, {"broken": se.Column.CLASS}),
        "class column 'broken' has dtype torch.float64",
    ),
    "class as label values": (
        _measure(lambda s: {"broken": torch.as_tensor(s.labels.classes)[s.top_class]}, {"broken": se.Column.CLASS}),
        "must hold class codes 0..3",
    ),
    "count as float": (
        _measure(lambda s: {"broken": s.count_above(s.runner_up_max).double()}, {"broken": se.Column.COUNT}),
        "count column 'broken' has dtype torch.float64, expected an integer dtype",
    ),
    "value as integer": (_measure(lambda s: {"broken": s.top_class}), "expected a floating dtype"),
    "changes the activations": (
        _measure(lambda s: {"broken": s.activations.mul_(2).max(0).values.double()}),
        "changed the activations in place",
    ),
    "compute_columns leaves out a column": (
        _measure(
            lambda s: {"broken": _value(s), "broken_class": s.top_class},
            {"broken": se.Column.VALUE, "broken_class": se.Column.CLASS},
            compute_columns=lambda s, wanted: {"broken": _value(s)},
        ),
        "compute_columns asked for 'broken_class' returned \\['broken'\\] without it",
    ),
    "compute_columns differs from compute": (
        _measure(lambda s: {"broken": _value(s)}, compute_columns=lambda s, wanted: {"broken": _value(s) + 1}),
        "column 'broken' from compute_columns differs from compute's",
    ),
    "kind not a Column": (_measure(lambda s: {"broken": _value(s)}, {"broken": "value"}), "not a selectivity_eval.Column"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_measure_fails_the_check_saying_why(case):
    measure, message = BROKEN[case]
    with pytest.raises(AssertionError, match=message):
        check_measure_contract(measure)


def test_the_check_uses_given_data_and_returns_the_columns():
    activations = np.array([[3.0, 0.5], [2.0, 0.7], [0.1, 0.9], [0.2, 0.8]])
    out = check_measure_contract(get_registry().get("measure", "localist")(), activations, ["b", "b", "a", "a"])
    assert out["localist_class"].tolist() == ["b", "a"] and out["is_localist"].tolist() == [True, True]
    with pytest.raises(AssertionError, match="both activations and labels"):
        check_measure_contract(thirdparty_plugin.MaxMinusMean(), activations)


def test_registered_plugin_registers_for_the_test(registered_plugin):
    name = registered_plugin(thirdparty_plugin, name="thirdparty", version="2.0")
    assert name == "thirdparty"
    registry = get_registry()
    assert registry.entry("model", "tiny-mlp").origin.version == "2.0"
    assert registry.entry("measure", "max-minus-mean").origin.distribution == "(runtime)"
    assert os.environ[LOAD_PLUGINS_ENV] == ""  # third-party autoloading is off while it is registered
    assert {e.origin.distribution for e in registry} == {"selectivity-eval", "(runtime)"}


def test_builtin_plugins_only_restores_the_environment(monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "some-dist")
    with builtin_plugins_only():
        assert os.environ[LOAD_PLUGINS_ENV] == ""
        assert {e.origin.distribution for e in get_registry()} == {"selectivity-eval"}
    assert os.environ[LOAD_PLUGINS_ENV] == "some-dist"


INNER_TESTS = '''
import os
import selectivity_eval as se
from selectivity_eval.core.registry.manager import LOAD_PLUGINS_ENV

import thirdparty_copy


def test_a_registers(registered_plugin):
    registered_plugin(thirdparty_copy, name="copy")
    assert "tiny-mlp" in se.get_registry().names("model")


def test_b_it_is_gone_and_autoloading_is_back():
    assert "tiny-mlp" not in se.get_registry().names("model")
    assert LOAD_PLUGINS_ENV not in os.environ


def test_c_an_autoloaded_plugin_can_be_registered_from_its_module(registered_plugin):
    import importlib.metadata as md
    try:
        version = md.version("selectivity-eval-sparseness")
    except md.PackageNotFoundError:
        return
    from selectivity_eval_sparseness import plugin
    assert se.get_registry().entry("measure", "sparseness").origin.plugin == "sparseness"  # from the entry point
    registered_plugin(plugin)
    origin = se.get_registry().entry("measure", "sparseness").origin
    assert (origin.distribution, origin.version) == ("selectivity-eval-sparseness", version)
    assert origin.plugin != "sparseness"
'''


def test_the_fixture_reaches_any_pytest_session_through_the_entry_point(tmp_path):
    assert any(ep.value == "selectivity_eval.testing" for ep in metadata.entry_points(group="pytest11"))
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER_TESTS))
    (tmp_path / "thirdparty_copy.py").write_text(Path(thirdparty_plugin.__file__).read_text())
    env = {k: v for k, v in os.environ.items() if k != LOAD_PLUGINS_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_inner.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
