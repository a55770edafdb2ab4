"""The plugin core: hooks, registration as a third party would do it, entry points, clashes."""

from __future__ import annotations

import inspect
import json
import warnings

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import selectivity_eval as se
from selectivity_eval.core.registry import hookspecs
from selectivity_eval.core.cli.app import app
from selectivity_eval.core.errors import PluginConflictError
from selectivity_eval.core.registry.manager import BUILTIN_MODULES, LOAD_PLUGINS_ENV, get_registry

from . import thirdparty_plugin
from .fake_distributions import fake_distribution

HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "selectivity_eval_spec")]


def test_every_hook_has_a_one_line_docstring_and_a_register_name():
    assert sorted(HOOKS) == ["register_am_methods", "register_datasets", "register_measures", "register_models"]
    for name in HOOKS:
        doc = getattr(hookspecs, name).__doc__
        assert doc and len(doc.strip().splitlines()) == 1, name
        assert list(inspect.signature(getattr(hookspecs, name)).parameters) == ["register"]


def test_every_hook_is_exercised_by_the_test_plugin():
    implemented = {name for name in HOOKS if hasattr(thirdparty_plugin, name)}
    assert implemented == set(HOOKS)


def test_builtins_register_through_the_hooks(fresh_plugins, monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    registry = get_registry()
    assert registry.names("measure") == ["ccmas", "detection", "localist", "precision", "topclass"]
    assert "digits-cnn" in registry.names("model") and "digits" in registry.names("dataset")
    assert {entry.origin.distribution for entry in registry} == {"selectivity-eval"}
    assert {entry.origin.plugin for entry in registry} == set(BUILTIN_MODULES)
    entry = registry.entry("measure", "precision")
    assert entry.origin.plugin == "selectivity_eval.plugins.measures.precision"
    assert entry.origin.distribution == "selectivity-eval"


def test_registered_plugin_shows_in_plugins_and_runs_from_a_spec(write_spec, tmp_path):
    runner = CliRunner()
    with se.plugin_registered(thirdparty_plugin, name="thirdparty", distribution="thirdparty-dist", version="9.9"):
        listed = json.loads(runner.invoke(app, ["plugins", "--json"]).stdout)
        mine = {(row["name"], row["kind"]) for row in listed if row["distribution"] == "thirdparty-dist"}
        assert mine == {("tiny-mlp", "model"), ("blobs", "dataset"), ("max-minus-mean", "measure"), ("marker", "am")}
        assert {row["version"] for row in listed if row["distribution"] == "thirdparty-dist"} == {"9.9"}

        spec = write_spec(
            {
                "model": {"plugin": "tiny-mlp"},
                "dataset": {"plugin": "blobs", "n_per_class": 10},
                "layers": ["h", {"name": "out"}],
                "measures": [{"name": "max-minus-mean", "scale": 2.0}, "topclass"],
                "am": {"method": "marker", "note": "hi"},
            }
        )
        result = runner.invoke(app, [str(spec), "--quiet"])
        assert result.exit_code == 0, result.output
    units = (tmp_path / "run" / "units.csv").read_text().splitlines()
    assert units[0] == "layer,unit,max_minus_mean,topclass_class,topclass_count,topclass"
    assert len(units) == 1 + 6 + 3
    assert (tmp_path / "run" / "marker-h.txt").read_text() == "hi hidden 6"
    assert "tiny-mlp" not in get_registry().names("model")


def test_plugin_parameters_are_validated_before_work(write_spec, tmp_path):
    with se.plugin_registered(thirdparty_plugin, name="thirdparty"):
        spec = write_spec(
            {
                "model": "tiny-mlp",
                "dataset": {"plugin": "blobs"},
                "layers": ["h"],
                "measures": [{"name": "max-minus-mean", "scael": 2.0}],
            }
        )
        result = CliRunner().invoke(app, [str(spec)])
    assert result.exit_code == 2
    assert "measures[0].scael" in result.output
    assert not (tmp_path / "run").exists()


def test_two_plugins_registering_one_name_is_an_error_naming_both():
    class Clash(se.Measure):
        """Clashes with the built-in precision."""

        name = "precision"
        columns = {"precision": se.Column.VALUE}

    class ClashPlugin:
        @se.hookimpl
        def register_measures(self, register):
            register(Clash)

    with se.plugin_registered(ClashPlugin(), name="clashing-plugin"):
        with pytest.raises(PluginConflictError) as error:
            get_registry()
    message = str(error.value)
    assert "precision" in message
    assert "selectivity_eval.plugins.measures.precision" in message and "clashing-plugin" in message


def test_measure_that_raises_keeps_other_results_and_fails_the_run(write_spec, tmp_path, digits_spec):
    digits_spec.pop("output")
    spec = write_spec({**digits_spec, "layers": ["fc2"], "measures": ["broken", "topclass"]})
    with se.plugin_registered(thirdparty_plugin.BrokenPlugin(), name="broken-plugin"):
        result = CliRunner().invoke(app, [str(spec), "-q"])
    assert result.exit_code == 1
    assert "broken-plugin" in result.output and "fc2" in result.output
    header = (tmp_path / "run" / "units.csv").read_text().splitlines()[0]
    assert header == "layer,unit,topclass_class,topclass_count,topclass"
    run_record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run_record["status"] == "failed"
    assert run_record["failures"][0]["plugin"] == "broken-plugin"


@pytest.fixture
def installed_distributions(tmp_path, monkeypatch, fresh_plugins):
    """Two real distributions on sys.path with entry points: one good, one that fails to import."""
    fake_distribution(
        tmp_path,
        "good-measures",
        "good_measures_plugin",
        """
        import selectivity_eval as se

        class Peak(se.Measure):
            '''The highest activation.'''
            name = "peak"
            columns = {"peak": se.Column.VALUE}

            def compute(self, stats):
                return {"peak": stats.unit_max.double()}

        @se.hookimpl
        def register_measures(register):
            register(Peak)
        """,
    )
    fake_distribution(tmp_path, "broken-measures", "broken_measures_plugin", "raise ImportError('no such thing')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_entry_point_plugins_load_and_a_broken_one_only_warns(installed_distributions, monkeypatch):
    monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = get_registry()
    assert "peak" in registry.names("measure")
    assert registry.entry("measure", "peak").origin.distribution == "good-measures"
    assert registry.entry("measure", "peak").origin.version == "1.2.3"
    assert "precision" in registry.names("measure")
    messages = [str(w.message) for w in caught]
    assert any("broken_measures_plugin" in m and "broken-measures" in m for m in messages)
    values = se.compute_measures(np.array([[1.0], [3.0]]), [0, 1], measures=["peak"])
    assert values["peak"].tolist() == [3.0]


@pytest.mark.parametrize(("allowed", "expect_peak"), [("", False), ("good-measures", True), ("Good_Measures", True)])
def test_load_plugins_variable_restricts_autoloading(installed_distributions, monkeypatch, allowed, expect_peak):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, allowed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry = get_registry()
    assert ("peak" in registry.names("measure")) is expect_peak
    assert {e.origin.distribution for e in registry if e.name != "peak"} == {"selectivity-eval"}


def test_plugins_table_lists_name_kind_distribution_version():
    result = CliRunner().invoke(app, ["plugins"])
    assert result.exit_code == 0
    for text in ("name", "kind", "distribution", "version", "digits-cnn", "selectivity-eval", se.__version__):
        assert text in result.stdout


def test_spec_yaml_round_trips_through_spec_resolved(tmp_path):
    from selectivity_eval.core.spec.loader import load_spec

    from .conftest import EXAMPLE_SPEC

    spec = load_spec(EXAMPLE_SPEC)
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True)))
    assert load_spec(resolved) == spec


def test_columns_that_would_collide_are_refused_before_work(write_spec, tmp_path):
    with se.plugin_registered(thirdparty_plugin, name="thirdparty"):
        spec = write_spec(
            {
                "model": "tiny-mlp",
                "dataset": "blobs",
                "layers": ["h"],
                "measures": ["max-minus-mean", {"name": "max-minus-mean", "label": "max"}],
            }
        )
        ok = CliRunner().invoke(app, [str(spec), "-q"])
        assert ok.exit_code == 0, ok.output
        assert (tmp_path / "run" / "units.csv").read_text().splitlines()[0] == "layer,unit,max_minus_mean,max_max_minus_mean"
        with pytest.raises(ValueError, match="both produce the column 'max_minus_mean'"):
            se.compute_measures(np.ones((4, 2)), [0, 0, 1, 1], measures=[thirdparty_plugin.MaxMinusMean()] * 2)


def test_registering_a_registered_plugin_is_a_clear_error():
    with se.plugin_registered(thirdparty_plugin, name="thirdparty"):
        with pytest.raises(se.SelectivityEvalError, match="already registered"):
            with se.plugin_registered(thirdparty_plugin, name="again"):
                pass


def test_a_failing_am_method_keeps_everything_already_computed(write_spec, tmp_path, digits_spec):
    class FailingAM(se.AMMethod):
        """Always fails."""

        name = "failing-am"

        def run(self, context):
            raise RuntimeError("the AM method broke")

    class FailingAMPlugin:
        @se.hookimpl
        def register_am_methods(self, register):
            register(FailingAM)

    digits_spec.pop("output")
    spec = write_spec({**digits_spec, "layers": ["fc2"], "measures": ["topclass"], "am": {"method": "failing-am"}})
    with se.plugin_registered(FailingAMPlugin(), name="failing-am-plugin"):
        result = CliRunner().invoke(app, [str(spec), "-q"])
    assert result.exit_code == 1 and "the AM method broke" in result.output
    for name in ("units.csv", "summary.json", "run.json", "spec.resolved.yaml"):
        assert (tmp_path / "run" / name).is_file(), name
    assert json.loads((tmp_path / "run" / "run.json").read_text())["layers"] == {"fc2": 10}
