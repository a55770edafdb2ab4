"""The base class shared by every kind of plugin: a name, a parameter model, a description."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from selectivity_eval.schemas.params import PluginParams


class Plugin:
    """Something a plugin registers: a model source, a data set source, a measure or an AM method.

    Subclasses set ``name`` (unique within their kind) and may set ``Params``, a pydantic model of
    the parameters a spec can give. An instance holds validated parameters in ``self.params``.
    """

    kind: ClassVar[str] = "plugin"
    name: ClassVar[str]
    Params: ClassVar[type[PluginParams]] = PluginParams

    def __init__(self, params: PluginParams | Mapping[str, Any] | None = None, /, **kwargs: Any):
        if isinstance(params, PluginParams) and not kwargs:
            self.params = params if isinstance(params, self.Params) else self.Params.model_validate(params.model_dump())
        else:
            self.params = self.Params.model_validate({**dict(params or {}), **kwargs})

    @classmethod
    def description(cls) -> str:
        """The first line of the class docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"
