"""Which columns the terminal table, the report and sweeps show: the roles measures declare."""

from __future__ import annotations

import io
import sys
import types

import torch
from rich.console import Console

import selectivity_eval as se
from selectivity_eval.core.cli.printing import print_tables
from selectivity_eval.core.cli.summary_table import main_columns, summary_tables

from .report_fixtures import with_reports


class PeakCount(se.Measure):
    """Images above the unit's minimum (the headline), and its peak value (a detail)."""

    name = "peakcount"
    columns = {"peak": se.Column.VALUE.detail(), "peak_images": se.Column.COUNT.headline()}

    def compute(self, stats: se.LayerStats) -> dict[str, torch.Tensor]:
        return {"peak": stats.unit_max.double(), "peak_images": stats.count_above(stats.unit_min)}


plugin = types.ModuleType("peakcount_plugin")


@se.hookimpl
def register_measures(register):
    register(PeakCount)


plugin.register_measures = register_measures


def test_a_bare_kind_keeps_its_default_role():
    assert se.Column.VALUE.default_role is se.Role.HEADLINE and se.Column.FLAG.default_role is se.Role.DETAIL
    localist = se.get_registry().get("measure", "localist")()
    assert localist.output_roles() == {
        "localist_class": se.Role.DETAIL, "localist": se.Role.HEADLINE, "localist_norm": se.Role.DETAIL,
        "is_localist": se.Role.DETAIL, "localist_off": se.Role.DETAIL,
    }
    assert PeakCount.columns == {"peak": se.Column.VALUE, "peak_images": se.Column.COUNT}
    assert PeakCount().output_roles("pc") == {"pc_peak": se.Role.DETAIL, "pc_peak_images": se.Role.HEADLINE}


def test_a_third_party_headline_column_reaches_the_table_and_the_report(tmp_path):
    spec = {
        "model": "digits-cnn",
        "dataset": {"plugin": "digits", "split": "test"},
        "layers": [{"name": "fc1", "relu": True}, "fc2"],
        "measures": ["peakcount", "precision"],
        "report": {"units_per_measure": 1, "random_units": 0, "top_images": 0},
        "output": str(tmp_path / "run"),
    }
    with se.plugin_registered(plugin, name="peakcount-plugin"), with_reports():
        result = se.run_study(spec)
    assert main_columns(result.summary) == ["peak_images", "precision"]
    console = Console(file=io.StringIO(), width=200)
    print_tables(console, summary_tables(result.summary))
    header = console.file.getvalue().splitlines()[2]
    assert "peak_images" in header and "precision" in header and "peak " not in header
    html = result.report.read_text(encoding="utf-8")
    assert "<th>peak_images</th>" in html and "<th>peak</th>" not in html


def test_the_summary_table_off_a_terminal_keeps_every_column_name_whole():
    names = [f"measure_number_{index}_with_a_long_column_name" for index in range(10)]
    layer = {
        "n_units": 64,
        "n_localist": 0,
        "columns": {name: {"kind": "value", "role": "headline", "mean": 0.5} for name in names},
    }
    stream = io.StringIO()
    console = Console(file=stream)
    assert not console.is_terminal and console.width == 80
    print_tables(console, summary_tables({"conv1": layer, "fc8": layer}))
    text = stream.getvalue()
    assert all(name in text for name in names) and "…" not in text
    assert text.count("0.500") == 20


def test_the_cli_summary_off_a_terminal_is_whole(tmp_path, write_spec):
    import subprocess

    spec = write_spec({
        "model": "digits-cnn", "dataset": {"plugin": "digits", "split": "test"},
        "layers": ["fc2"], "measures": ["localist", "precision", "ccmas", "topclass", "detection"],
        "report": {"enabled": False},
    })
    completed = subprocess.run(
        [sys.executable, "-m", "selectivity_eval", "run", str(spec)], capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "SELECTIVITY_EVAL_LOAD_PLUGINS": ""},
    )
    assert completed.returncode == 0, completed.stderr
    header = next(line for line in completed.stdout.splitlines() if "┃ layer" in line)
    for column in ["localist", "precision", "ccmas", "topclass", "auroc", "max_informedness", "hit_rate", "false_alarm"]:
        assert f" {column} " in header, header
