"""Chance baselines under shuffled labels, and the untrained-network baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import selectivity_eval as se
from selectivity_eval.core.measures.chance import chance_baselines, significant, value_columns
from selectivity_eval.core.measures.compute import resolve_measures
from selectivity_eval.core.cli.app import app


def noise_with_one_selective_unit(seed=0, n_units=200):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(5), 20)
    matrix = rng.random((100, n_units))
    matrix[:, 0] = np.where(labels == 3, 5.0, 0.0) + rng.random(100)
    return matrix, labels


def test_noise_units_get_roughly_uniform_p_values_and_a_selective_unit_a_tiny_one():
    matrix, labels = noise_with_one_selective_unit()
    out = chance_baselines(matrix, labels, ["ccmas", "topclass"], permutations=99, seed=1)
    p = out["ccmas_p"][1:]
    # Under the null, p is uniform on {1/100, ..., 1}: mean 0.505, and 5% of units at or below 0.05.
    assert abs(p.mean() - 0.505) < 0.06
    assert 0.01 <= (p <= 0.05).mean() <= 0.11
    assert out["ccmas_p"][0] == pytest.approx(1 / 100)
    assert out["ccmas_z"][0] > 5
    assert out["topclass_p"][0] == pytest.approx(1 / 100)
    # The smallest p that 99 shufflings can give, 0.01, cannot survive a correction over 200 units:
    # resolving p = 0.05 / 200 takes at least 4,000 shufflings.
    assert not significant(out["ccmas_p"], 0.05, "fdr_bh").any()
    assert significant(out["ccmas_p"][:4], 0.05, "fdr_bh")[0]


def test_same_seed_same_numbers_and_chunking_changes_nothing():
    matrix, labels = noise_with_one_selective_unit(2, n_units=12)
    first = chance_baselines(matrix, labels, ["precision"], {"precision": {"top_n": 10}}, permutations=20, seed=5)
    again = chance_baselines(
        matrix, labels, ["precision"], {"precision": {"top_n": 10}}, permutations=20, seed=5, chunk_size=1
    )
    other = chance_baselines(matrix, labels, ["precision"], {"precision": {"top_n": 10}}, permutations=20, seed=6)
    for column in first:
        np.testing.assert_array_equal(first[column], again[column])
    assert not np.array_equal(first["precision_null_mean"], other["precision_null_mean"])


@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_a_unit_with_a_nan_or_infinite_activation_has_no_null_distribution(chunk_size):
    """Its observed columns are NaN, so its null columns are too, whichever units share its chunk."""
    matrix, labels = noise_with_one_selective_unit(3, n_units=6)
    matrix[4, 2] = np.nan
    matrix[7, 4] = np.inf
    with pytest.warns(UserWarning, match="NaN or infinite"):
        out = chance_baselines(matrix, labels, ["ccmas", "detection"], permutations=9, seed=0, chunk_size=chunk_size)
    for column in ("ccmas", "auroc", "max_informedness"):
        for suffix in ("", "_null_mean", "_null_std", "_z", "_p"):
            values = out[column + suffix]
            assert np.isnan(values[[2, 4]]).all(), column + suffix
            assert not np.isnan(values[[0, 1, 3, 5]]).any(), column + suffix


def test_significance_corrections():
    p = np.array([0.001, 0.02, 0.03, 0.2, np.nan])
    assert significant(p, 0.05, "none").tolist() == [True, True, True, False, False]
    assert significant(p, 0.05, "bonferroni").tolist() == [True, False, False, False, False]
    # Benjamini-Hochberg with m=4: thresholds 0.0125, 0.025, 0.0375, 0.05 -> the first three pass.
    assert significant(p, 0.05, "fdr_bh").tolist() == [True, True, True, False, False]


class ClassZeroGap(se.Measure):
    """Mean of class 0 minus the mean of the rest (a third-party measure with no chance code)."""

    name = "class-zero-gap"
    columns = {"class_zero_gap": se.Column.VALUE}

    def compute(self, stats):
        rest = (stats.total_sum - stats.class_sum[0]) / (stats.n_images - stats.labels.counts[0])
        return {"class_zero_gap": stats.class_mean[0] - rest}


class GapPlugin:
    @se.hookimpl
    def register_measures(self, register):
        register(ClassZeroGap)


def test_a_third_party_measure_gets_chance_baselines_in_a_run(write_spec, digits_spec, tmp_path):
    digits_spec.pop("output")
    spec = write_spec(
        {
            **digits_spec,
            "layers": ["fc2"],
            "measures": ["class-zero-gap", "ccmas"],
            "chance": {"permutations": 19, "seed": 3, "columns": ["class_zero_gap", "ccmas"]},
        }
    )
    with se.plugin_registered(GapPlugin(), name="gap"):
        result = CliRunner().invoke(app, [str(spec), "-q"])
    assert result.exit_code == 0, result.output
    header = (tmp_path / "run" / "units.csv").read_text().splitlines()[0].split(",")
    for column in ("class_zero_gap", "ccmas"):
        assert {f"{column}{s}" for s in ("_null_mean", "_null_std", "_z", "_p")} <= set(header)
    chance = json.loads((tmp_path / "run" / "summary.json").read_text())["fc2"]["chance"]
    assert chance["ccmas"]["n_above_chance"] == 10 and chance["ccmas"]["correction"] == "fdr_bh"
    assert chance["ccmas"]["null_mean"] < chance["ccmas"]["observed_mean"]


def test_untrained_baseline_measures_the_same_layers_with_random_weights(write_spec, digits_spec, tmp_path):
    digits_spec.pop("output")
    spec = write_spec({**digits_spec, "layers": ["fc1", "fc2"], "measures": ["ccmas"], "untrained_baseline": True})
    result = CliRunner().invoke(app, [str(spec), "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    trained = summary["fc2"]["columns"]["ccmas"]["mean"]
    untrained = summary["fc2"]["untrained"]["columns"]["ccmas"]["mean"]
    assert abs(untrained) < abs(trained)
    assert (tmp_path / "run" / "untrained" / "units.csv").is_file()
    model = se.get_registry().get("model", "digits-cnn")().load(seed=0)
    first, again = model.untrained(0).module.state_dict(), model.untrained(0).module.state_dict()
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["classifier.3.weight"], model.module.state_dict()["classifier.3.weight"])


def test_default_columns_are_the_headline_ones_and_any_value_column_can_be_chosen():
    matrix, labels = noise_with_one_selective_unit(3, n_units=6)
    out = chance_baselines(matrix, labels, ["precision", "topclass", "localist"], permutations=3, seed=0)
    tested = {column[: -len("_p")] for column in out if column.endswith("_p")}
    assert tested == {"precision", "topclass", "localist"}
    chosen = chance_baselines(
        matrix, labels, ["precision", "topclass"], permutations=3, seed=0, columns=["precision_min", "topclass_count"]
    )
    assert {"precision_min_p", "topclass_count_p"} <= set(chosen) and "precision_p" not in chosen
    measures = [(m, m.name) for m in resolve_measures(["precision", "localist"], None)]
    assert value_columns(measures) == ["precision", "localist"]
    assert value_columns(measures, headline_only=False) == [
        "precision", "precision_min", "precision_max", "precision_ties", "localist", "localist_norm", "localist_off"
    ]


def test_a_spec_may_choose_detail_columns_but_not_class_columns(digits_spec):
    from selectivity_eval.core.errors import SpecError
    from selectivity_eval.core.spec.loader import validate_spec

    spec = {**digits_spec, "chance": {"permutations": 2, "columns": ["precision_min", "topclass_count", "ccmas"]}}
    assert validate_spec(spec).chance.columns == ["precision_min", "topclass_count", "ccmas"]
    with pytest.raises(SpecError, match="precision_class"):
        validate_spec({**digits_spec, "chance": {"columns": ["precision_class"]}})
