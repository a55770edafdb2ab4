"""Errors a user can act on. The CLI prints them as one paragraph and exits non-zero."""

from __future__ import annotations

from dataclasses import dataclass


class SelectivityEvalError(Exception):
    """Base class of every error the CLI reports without a traceback."""

    exit_code = 1


class UserInputError(SelectivityEvalError):
    """Bad input: a spec, a file, a parameter or a name that does not exist (exit code 2)."""

    exit_code = 2


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation that failed: CUDA's OutOfMemoryError or the CPU allocator's."""
    import torch

    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error)
    )


@dataclass(frozen=True)
class SpecProblem:
    """One problem in a spec, at a location such as ``layers[2].pool``."""

    location: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.location or "(spec)"
        at_line = f" (line {self.line})" if self.line else ""
        return f"{where}{at_line}: {self.message}"


class SpecError(UserInputError):
    """A spec that fails validation; carries every problem found, each at its place in the YAML."""

    def __init__(self, problems: list[SpecProblem], source: str | None = None):
        self.problems = problems
        self.source = source
        head = f"Invalid spec {source}" if source else "Invalid spec"
        super().__init__(f"{head}: " + "; ".join(str(p) for p in problems))


class PluginConflictError(SelectivityEvalError):
    """Two plugins registered the same name for the same kind."""


class MeasureFailure(SelectivityEvalError):
    """A measure plugin raised while computing a layer; the run keeps the other results."""


class PluginError(SelectivityEvalError):
    """A model or data set plugin raised while loading; the message names the plugin and the step."""


class DiskFullError(UserInputError):
    """A write found no space left on the device (exit code 2); names the path and the bytes needed."""


class StoreCorruption(Exception):
    """An activation store file failed its check; the store discards the entry and recomputes it."""
