"""A broken plugin disables itself, not the program (issue 13, items 7 and 8): a register hook that
raises, a model or data set that fails to load, labels that do not match the images, and an
autoload variable that matches nothing installed."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import selectivity_eval as se
from selectivity_eval.core.cli.app import app
from selectivity_eval.core.registry.manager import LOAD_PLUGINS_ENV, get_registry
from selectivity_eval.plugins.datasets.digits import Digits
from selectivity_eval.plugins.models.digits_cnn import DigitsCNNSource

from .fake_distributions import fake_distribution

BROKEN_HOOK = """
import selectivity_eval as se

class Sharp(se.Measure):
    name = "sharp"
    columns = {"sharp": se.Column.VALUE}

    def compute(self, stats):
        return {"sharp": stats.unit_max.double()}

@se.hookimpl
def register_measures(register):
    register(Sharp)  # registered, then the hook fails: nothing of this plugin may remain

@se.hookimpl
def register_models(register):
    raise RuntimeError("boom in the hook")
"""

BUILTIN_SPEC = {
    "model": "digits-cnn",
    "dataset": {"plugin": "digits", "split": "test"},
    "layers": ["fc2"],
    "measures": ["topclass"],
    "device": "cpu",
}


@pytest.fixture
def broken_hook_installed(tmp_path, monkeypatch, fresh_plugins):
    root = tmp_path / "site"
    root.mkdir()
    fake_distribution(root, "hook-breaker", "hook_breaker", BROKEN_HOOK, entry_point="hook_breaker_ep")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)
    return root


def cli(args: list[str], pythonpath: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != LOAD_PLUGINS_ENV}
    if pythonpath is not None:
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), environment.get("PYTHONPATH")]))
    environment.update(env)
    command = [sys.executable, "-m", "selectivity_eval", *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)


def spec_file(tmp_path: Path, spec: dict, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({**spec, "output": str(tmp_path / name.replace(".yaml", ""))}))
    return path


def test_a_register_hook_that_raises_disables_that_plugin_alone(broken_hook_installed):
    with pytest.warns(UserWarning) as caught:
        registry = get_registry()
    message = " ".join(str(w.message) for w in caught)
    assert "'hook_breaker_ep'" in message and "hook_breaker_ep = hook_breaker" in message
    assert "'hook-breaker'" in message and "RuntimeError: boom in the hook" in message and "disabled" in message
    assert "sharp" not in registry.names("measure")  # registered before the failure, dropped with the plugin
    assert {"precision", "topclass"} <= set(registry.names("measure")) and "digits-cnn" in registry.names("model")
    values = se.compute_measures(np.array([[1.0, 0.0], [3.0, 2.0]]), [0, 1], measures=["topclass"])
    assert values["topclass_class"].tolist() == [1, 1]
    with pytest.raises(se.SelectivityEvalError, match="Unknown measure plugin 'sharp'.*hook_breaker_ep.*boom"):
        registry.get("measure", "sharp")


def test_the_cli_runs_built_in_specs_and_refuses_the_broken_plugin_with_exit_2(broken_hook_installed, tmp_path):
    fine = cli(["validate", str(spec_file(tmp_path, BUILTIN_SPEC))], pythonpath=broken_hook_installed)
    assert fine.returncode == 0, fine.stderr
    assert "hook_breaker_ep" in fine.stderr  # the warning, on stderr
    uses_it = spec_file(tmp_path, {**BUILTIN_SPEC, "measures": ["sharp"]}, "sharp.yaml")
    refused = cli([str(uses_it), "-q"], pythonpath=broken_hook_installed)
    assert refused.returncode == 2, refused.stderr
    assert "measures[0].name" in refused.stderr and "'sharp'" in refused.stderr
    assert "disabled" in refused.stderr and "boom in the hook" in refused.stderr
    assert "Traceback" not in refused.stderr


class FailingModel(DigitsCNNSource):
    name = "failing-model"

    def load(self, *, seed):
        raise OSError("weights file is corrupt")


class ShortLabels(Digits):
    """The digits data set with its last five labels missing."""

    name = "short-labels"

    def load(self, *, seed, transform=None):
        data = super().load(seed=seed, transform=transform)
        return replace(data, labels=data.labels[:-5])


class BrokenSources:
    @se.hookimpl
    def register_models(self, register):
        register(FailingModel)

    @se.hookimpl
    def register_datasets(self, register):
        register(ShortLabels)


def test_a_model_that_fails_to_load_is_named_with_the_step(registered_plugin, write_spec):
    registered_plugin(BrokenSources(), name="broken-sources", distribution="broken-sources-dist")
    result = CliRunner().invoke(app, [str(write_spec({**BUILTIN_SPEC, "model": "failing-model"})), "-q"])
    assert result.exit_code == 1
    assert "model plugin 'failing-model'" in result.output and "'broken-sources-dist'" in result.output
    assert "failed in load: OSError: weights file is corrupt" in result.output


@pytest.mark.parametrize("command", ["validate", "run"])
def test_labels_shorter_than_the_images_are_refused_at_load(registered_plugin, write_spec, tmp_path, command):
    registered_plugin(BrokenSources(), name="broken-sources")
    spec = write_spec({**BUILTIN_SPEC, "dataset": {"plugin": "short-labels", "split": "test"}})
    result = CliRunner().invoke(app, [command, str(spec)])
    assert result.exit_code == 2, result.output
    assert "'short-labels'" in result.output and "450 images but 445 labels" in result.output
    assert not (tmp_path / "run" / "units.csv").exists()


def test_an_autoload_variable_matching_nothing_warns_and_lists_what_is_installed(broken_hook_installed, monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "hook_breaker_ep")  # the entry point's name, not the distribution's
    with pytest.warns(UserWarning, match=LOAD_PLUGINS_ENV) as caught:
        registry = get_registry()
    message = str(caught[0].message)
    assert "'hook_breaker_ep'" in message and "distribution 'hook-breaker'" in message
    assert "entry points 'hook_breaker_ep'" in message
    with pytest.raises(se.SelectivityEvalError) as error:
        registry.get("measure", "sharp")
    assert f"{LOAD_PLUGINS_ENV} is set to 'hook_breaker_ep'" in str(error.value)
    assert "distribution 'hook-breaker'" in str(error.value)


def test_an_empty_autoload_variable_loads_no_third_party_plugin_without_a_warning(broken_hook_installed, monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry = get_registry()
    with pytest.raises(se.SelectivityEvalError, match=f"{LOAD_PLUGINS_ENV} is set to ''"):
        registry.get("measure", "sharp")
