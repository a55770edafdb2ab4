"""Base class for the parameters a plugin declares."""

from pydantic import BaseModel, ConfigDict


class PluginParams(BaseModel):
    """Parameters of one plugin. Unknown keys are errors, so a typo fails before any work starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)
