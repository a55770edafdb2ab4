"""Base class for the parameters a plugin declares."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

MAX_SEED = 2**63 - 1

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
"""A seed every generator takes as it is (torch's ``manual_seed`` overflows above 2**64 - 1)."""


class PluginParams(BaseModel):
    """Parameters of one plugin. Unknown keys are errors, so a typo fails before any work starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)
