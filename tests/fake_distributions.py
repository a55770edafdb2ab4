"""Installed distributions for plugin tests: a module and a dist-info with entry points, under a folder put on sys.path."""

from __future__ import annotations

import textwrap
from pathlib import Path


def fake_distribution(
    root: Path, dist: str, module: str, source: str, *, entry_point: str | None = None, version: str = "1.2.3"
) -> None:
    """``module.py`` from ``source`` and distribution ``dist`` whose entry point ``entry_point`` (default: the module's name) loads it."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[selectivity_eval]\n{entry_point or module} = {module}\n")
