"""Spec YAML through a hardened ``SafeLoader``: size and nesting limits, duplicate keys refused.

PyYAML's ``SafeLoader`` builds no Python objects beyond plain data, but it accepts a mapping that
repeats a key (the last one silently wins), composes nested nodes recursively (a deeply nested
document ends in ``RecursionError``) and reads a file of any size. A spec is a few kilobytes; these
limits are far above any real one and refuse a hostile or broken file at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from selectivity_eval.core.errors import SpecError, SpecProblem

MAX_SPEC_BYTES = 256 * 1024
MAX_NESTING = 64


class RefusedYAML(yaml.YAMLError):
    """Well-formed YAML that a spec may not be: a duplicate key, nesting too deep."""


class SpecLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses duplicate mapping keys and nesting deeper than ``MAX_NESTING``."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                mark = self.peek_event().start_mark
                raise RefusedYAML(
                    f"nested more than {MAX_NESTING} levels deep (line {mark.line + 1}); a spec is a few levels deep"
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):  # the mapping's own keys: a merge (<<) may be overridden
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in first_line:
                        raise RefusedYAML(
                            f"the key {key!r} appears twice in one mapping, on lines {first_line[key]} and {line}; "
                            "keep one"
                        )
                    first_line[key] = line
                except TypeError:  # an unhashable key: construct_mapping below says so
                    break
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """The spec file's data and its node tree (for line numbers), or a ``SpecError`` naming the file."""

    def refuse(message: str) -> SpecError:
        return SpecError([SpecProblem("", message)], source=str(path))

    size = path.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise refuse(f"the file is {size:,} bytes; a spec may be at most {MAX_SPEC_BYTES:,} bytes")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        byte = raw[error.start : error.start + 1]
        raise refuse(f"not UTF-8 text: byte {error.start} (line {line}) is {byte!r}") from None
    loader = SpecLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except RefusedYAML as error:
        raise refuse(str(error)) from None
    except yaml.YAMLError as error:
        raise refuse(f"not valid YAML: {error}") from None
    finally:
        loader.dispose()
    return data, node
