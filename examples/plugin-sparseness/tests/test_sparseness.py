"""Tests of the sparseness measure, written the way we suggest for any selectivity-eval plugin.

``check_measure_contract`` and the ``registered_plugin`` fixture come with selectivity-eval
(``selectivity_eval.testing``); the fixture needs no import.
"""

from __future__ import annotations

import json
from importlib import metadata

import numpy as np
import pytest
import yaml

import selectivity_eval as se
from selectivity_eval.testing import check_measure_contract
from selectivity_eval_sparseness import plugin
from selectivity_eval_sparseness.plugin import Sparseness


def textbook(responses: np.ndarray) -> float:
    """Vinje & Gallant's formula for one unit, written out plainly (a loop over units is fine in a test)."""
    n = len(responses)
    return (1 - (responses.sum() / n) ** 2 / ((responses**2).sum() / n)) / (1 - 1 / n)


def sparseness(activations, **params) -> np.ndarray:
    labels = np.arange(len(activations)) % 2  # sparseness ignores the labels
    return Sparseness(**params)(np.asarray(activations, dtype=np.float64), labels)["sparseness"]


def test_textbook_values():
    units = np.array(
        [
            [1.0, 2.0, 1.0, 0.0],
            [0.0, 2.0, 1.0, 0.0],
            [0.0, 2.0, 0.0, 0.0],
            [0.0, 2.0, 0.0, 0.0],
        ]
    )
    # one image only -> 1; every image alike -> 0; two of four images equally -> 2/3
    np.testing.assert_allclose(sparseness(units)[:3], [1.0, 0.0, 2 / 3])
    assert np.isnan(sparseness(units)[3])  # never responds: undefined


def test_matches_the_formula_on_random_responses():
    rng = np.random.default_rng(0)
    responses = rng.exponential(size=(200, 30)) * (rng.random((200, 30)) < 0.3)
    expected = [textbook(responses[:, unit]) for unit in range(30)]
    np.testing.assert_allclose(sparseness(responses), expected, rtol=1e-12)


@pytest.mark.parametrize("negatives", ["nan", "clip", "shift"])
def test_keeps_the_measure_contract(negatives):
    out = check_measure_contract(Sparseness(negatives=negatives))
    finite = out["sparseness"][~np.isnan(out["sparseness"])]
    assert finite.size and ((finite >= 0) & (finite <= 1)).all()


def test_negative_responses():
    unit = [[-1.0], [0.0], [1.0], [2.0]]
    assert np.isnan(sparseness(unit)[0])  # default: refuse to guess
    np.testing.assert_allclose(sparseness(unit, negatives="clip"), [textbook(np.array([0.0, 0.0, 1.0, 2.0]))])
    np.testing.assert_allclose(sparseness(unit, negatives="shift"), [textbook(np.array([0.0, 1.0, 2.0, 3.0]))])


def test_a_single_image_is_undefined():
    assert np.isnan(sparseness([[3.0]])[0])


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="Extra inputs"):
        Sparseness(negative="clip")
    with pytest.raises(ValueError, match="'nan', 'clip' or 'shift'"):
        Sparseness(negatives="abs")


def test_runs_by_name_and_from_a_spec(registered_plugin, tmp_path):
    registered_plugin(plugin)
    assert "sparseness" in se.get_registry().names("measure")
    out = se.compute_measures(np.eye(4), [0, 1, 2, 3], ["sparseness"], {"sparseness": {"negatives": "clip"}})
    np.testing.assert_allclose(out["sparseness"], [1.0, 1.0, 1.0, 1.0])

    spec = {
        "model": "digits-cnn",
        "dataset": {"plugin": "digits", "split": "test"},
        "layers": [{"name": "fc1", "relu": True}],
        "measures": ["sparseness", "topclass"],
        "output": str(tmp_path / "run"),
        "report": {"enabled": False},  # report.html: not needed here
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = se.run_study(tmp_path / "spec.yaml")
    assert result.failures == []
    summary = json.loads((result.output_dir / "summary.json").read_text())
    assert 0 < summary["fc1"]["columns"]["sparseness"]["mean"] < 1
    assert summary == result.summary


def test_the_installed_entry_point_registers_it(monkeypatch):
    try:
        version = metadata.version("selectivity-eval-sparseness")
    except metadata.PackageNotFoundError:
        pytest.skip("not installed: pip install .")
    monkeypatch.delenv("SELECTIVITY_EVAL_LOAD_PLUGINS", raising=False)
    se.reload_plugins()
    try:
        origin = se.get_registry().entry("measure", "sparseness").origin
    finally:
        se.reload_plugins()
    assert (origin.plugin, origin.distribution, origin.version) == ("sparseness", "selectivity-eval-sparseness", version)
