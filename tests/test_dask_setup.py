"""Setting up the dask executor: no dask installed, a bad executor block, an unreachable scheduler."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from selectivity_eval.core.cli.app import app

from .dask_specs import digits_example, spec_file


def test_dask_spec_without_the_extra_exits_2_with_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` now raises ImportError
    monkeypatch.setitem(sys.modules, "dask", None)
    spec = {**digits_example(), "executor": {"kind": "dask", "local_cluster": {"workers": 2}}}
    result = CliRunner().invoke(app, [str(spec_file(tmp_path, "dask", spec))])
    assert result.exit_code == 2, result.output
    assert "pip install 'selectivity-eval[dask]'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "dask").exists()
    checked = CliRunner().invoke(app, ["validate", str(spec_file(tmp_path, "dask", spec))])
    assert checked.exit_code == 2 and "pip install 'selectivity-eval[dask]'" in checked.output, checked.output


def test_the_core_runs_without_dask(tmp_path):
    """In a fresh interpreter where dask cannot be imported, a local run works and never tries to."""
    spec = spec_file(tmp_path, "local", {**digits_example(), "layers": ["fc2"], "executor": "local"})
    code = (
        "import sys; sys.modules['dask'] = None; sys.modules['distributed'] = None\n"
        "from selectivity_eval.core.cli.app import main\n"
        f"main([{str(spec)!r}, '-q'])\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "local" / "units.csv").is_file()


@pytest.mark.parametrize(
    ("executor", "expected"),
    [
        ({"kind": "dask"}, "exactly one of `address`"),
        ({"kind": "dask", "address": "tcp://127.0.0.1:1", "local_cluster": {}}, "exactly one of `address`"),
        ({"kind": "local", "local_cluster": {"workers": 2}}, "local_cluster: used only with kind: dask"),
        ({"kind": "dask", "local_cluster": {"workers": 0}}, "executor.local_cluster.workers"),
        ({"kind": "spark"}, "executor.kind"),
    ],
)
def test_bad_executor_block_exits_2_at_its_place(tmp_path, executor, expected):
    result = CliRunner().invoke(app, [str(spec_file(tmp_path, "bad", {**digits_example(), "executor": executor}))])
    assert result.exit_code == 2 and expected in result.output, result.output


def test_unreachable_scheduler_exits_2(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    from selectivity_eval.core.distributed import dask_executor

    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT_S", 1)
    spec = {**digits_example(), "executor": {"kind": "dask", "address": "tcp://127.0.0.1:1"}}
    result = CliRunner().invoke(app, [str(spec_file(tmp_path, "dask", spec))])
    assert result.exit_code == 2 and "Could not use the dask scheduler at tcp://127.0.0.1:1" in result.output
