"""What docs and examples may import: the facade and ``selectivity_eval.testing``, by their public names.

Plugin authors copy what the docs and examples show; a name reached through ``core`` or ``plugins``
there would tie their code to our internal layout.
"""

from __future__ import annotations

import ast
import importlib
import re

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .conftest import REPO

PUBLIC_MODULES = {"selectivity_eval", "selectivity_eval.testing"}
CODE_BLOCK = re.compile(r"```(?:python|py)\n(.*?)```", re.S)


def documented_code() -> dict[str, str]:
    """Every Python source a user reads: docs' and READMEs' code blocks, and examples' files."""
    sources = {}
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "examples").rglob("*.md"))]:
        for index, block in enumerate(CODE_BLOCK.findall(page.read_text(encoding="utf-8"))):
            sources[f"{page.relative_to(REPO)}[{index}]"] = block
    for script in sorted((REPO / "examples").rglob("*.py")):
        sources[str(script.relative_to(REPO))] = script.read_text(encoding="utf-8")
    return sources


def imports_and_uses(source: str) -> tuple[dict[str, set[str]], set[str]]:
    """The selectivity_eval modules imported (with the names taken from each) and ``se.NAME`` uses."""
    tree = ast.parse(source)
    modules: dict[str, set[str]] = {}
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "selectivity_eval":
                    modules.setdefault(alias.name, set())
                    if alias.name == "selectivity_eval":
                        aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "selectivity_eval":
            modules.setdefault(node.module, set()).update(alias.name for alias in node.names)
    attributes = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
    }
    return modules, attributes


def test_docs_and_examples_use_only_public_names():
    sources = documented_code()
    seen_modules: set[str] = set()
    seen_names = 0
    for place, source in sources.items():
        try:
            modules, attributes = imports_and_uses(source)
        except SyntaxError:
            continue  # console sessions and fragments; imports in them are checked below by pattern
        for module_name, names in modules.items():
            assert module_name in PUBLIC_MODULES, f"{place} imports the internal module {module_name}"
            module = importlib.import_module(module_name)
            for name in names:
                assert name in module.__all__, f"{place} imports {name!r}, not public in {module_name}"
            seen_names += len(names)
            seen_modules.add(module_name)
        for name in attributes:
            assert name in importlib.import_module("selectivity_eval").__all__, f"{place} uses se.{name}, not public"
        seen_names += len(attributes)
    assert seen_modules == PUBLIC_MODULES and seen_names > 20


def test_no_fragment_imports_an_internal_module():
    internal = re.compile(r"(?:from|import)\s+selectivity_eval\.(?!testing\b)\w+")
    for place, source in documented_code().items():
        assert not internal.search(source), f"{place}: {internal.search(source).group(0)}"


def test_every_public_name_is_importable():
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing, f"{module_name}.__all__ names what it lacks: {missing}"


def package_folders() -> set[str]:
    roots = {"selectivity_eval.core": REPO / "core", "selectivity_eval.plugins": REPO / "plugins",
             "selectivity_eval.schemas": REPO / "schemas"}
    found = {"selectivity_eval"}
    for name, root in roots.items():
        for init in root.rglob("__init__.py"):
            relative = init.parent.relative_to(root).parts
            found.add(".".join([name, *relative]))
    return found


def test_pyproject_lists_every_package_folder():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(setuptools["packages"]) == package_folders()


@pytest.mark.parametrize("suffix", [".pt", ".txt", ".yaml"])
def test_package_data_covers_every_shipped_file(suffix):
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    shipped = [p for root in ("core", "plugins", "schemas") for p in (REPO / root).rglob(f"*{suffix}")]
    assert shipped
    for path in shipped:
        package = ".".join(["selectivity_eval", *path.parent.relative_to(REPO).parts])
        assert f"*{suffix}" in setuptools["package-data"].get(package, []), f"{path} is not package data"
