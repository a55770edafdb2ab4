"""Installed distributions for plugin tests: a module and its dist-info, in a folder the test puts on sys.path."""

from __future__ import annotations

import textwrap
from pathlib import Path


def fake_distribution(
    root: Path, dist: str, module: str, source: str, *, entry_point: str | None = None, version: str = "1.2.3"
) -> None:
    """``module.py`` from ``source``, and distribution ``dist`` whose entry point loads it.

    The entry point is named ``entry_point``, by default the module's name.
    """
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[selectivity_eval]\n{entry_point or module} = {module}\n")
