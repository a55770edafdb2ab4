"""Specs for the dask tests: the digits example written to a file, and the command that runs one."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from selectivity_eval.core.cli.app import app
from selectivity_eval.schemas.spec import RunSpec

from .conftest import EXAMPLE_SPEC

NO_REPORT = {"report": False} if "report" in RunSpec.model_fields else {}


def spec_file(tmp_path: Path, name: str, spec: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**spec, **NO_REPORT, "output": str(tmp_path / name)}, sort_keys=False))
    return path


def run(path: Path, *args: str):
    return CliRunner().invoke(app, [str(path), "-q", *args])


def digits_example() -> dict:
    spec = yaml.safe_load(EXAMPLE_SPEC.read_text())
    spec.pop("output")
    return spec
