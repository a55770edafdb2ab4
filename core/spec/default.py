"""The spec embedded in the package: all four measures on all four layers of the digits CNN."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def default_spec_path() -> Path:
    return Path(str(resources.files("selectivity_eval.core.spec").joinpath("digits.yaml")))
