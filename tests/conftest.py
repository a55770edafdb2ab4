from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

from selectivity_eval.core.registry.manager import reload_plugins
from selectivity_eval.core.statistics.backend import KERNELS_VARIABLE

from .report_fixtures import _no_reports_unless_asked, report_run  # noqa: F401  (reports: off unless asked)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_SPEC = REPO / "examples" / "digits.yaml"


@pytest.fixture(scope="module")
def single_torch_thread():
    """Tiny matrices: one intra-op thread is much faster (and steadier on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=["compiled", "torch"])
def kernel_mode(request):
    """Each test of the module twice: statistics by the compiled (numba) kernels, and by torch."""
    previous = os.environ.get(KERNELS_VARIABLE)
    os.environ[KERNELS_VARIABLE] = request.param
    yield request.param
    if previous is None:
        os.environ.pop(KERNELS_VARIABLE, None)
    else:
        os.environ[KERNELS_VARIABLE] = previous


@pytest.fixture
def fresh_plugins():
    """A plugin manager loaded afresh for this test, and again afterwards for the next."""
    reload_plugins()
    yield
    reload_plugins()


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec (a dict, or YAML text) into tmp_path; its output goes to tmp_path/run by default."""

    def write(spec: dict | str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        if isinstance(spec, dict):
            spec = {"output": str(tmp_path / "run"), **spec}
            path.write_text(yaml.safe_dump(spec, sort_keys=False))
        else:
            path.write_text(spec)
        return path

    return write


@pytest.fixture
def digits_spec() -> dict:
    return yaml.safe_load(EXAMPLE_SPEC.read_text())
