"""Pydantic models of the run spec and the base class of every plugin's parameters."""

from selectivity_eval.schemas.params import PluginParams
from selectivity_eval.schemas.spec import AMSpec, LayerSpec, MeasureRef, PluginRef, RunSpec

__all__ = ["AMSpec", "LayerSpec", "MeasureRef", "PluginParams", "PluginRef", "RunSpec"]
