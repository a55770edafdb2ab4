"""How a module's output is laid out, as the model declares it: which axis holds the units.

A conv map is (batch, channels, *space) and has one unit per channel; Swin keeps its maps
(batch, height, width, channels); a transformer's token sequence is (batch, tokens, features) and
has one unit per feature. A (batch, 197, 768) tensor could be either of the last two, so the engine
does not guess: a ``LoadedModel`` declares layouts in ``layouts`` (module name prefix -> layout),
and a 3-D output nothing declares is an error unless the spec's layer says ``tokens`` or ``pool``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

LayoutKind = Literal["channels_first", "channels_last", "tokens"]


@dataclass(frozen=True)
class OutputLayout:
    """``kind``: where the units are. For ``tokens``: ``prefix_tokens`` come before the patch tokens
    (class, distillation, register tokens; None when unknown) and ``class_token`` says whether the
    first token is a class token."""

    kind: LayoutKind
    prefix_tokens: int | None = None
    class_token: bool = False

    def describe(self) -> str:
        if self.kind != "tokens":
            return self.kind.replace("_", "-")
        if self.prefix_tokens is None:
            return "tokens"
        return f"tokens ({self.prefix_tokens} prefix token{'s' * (self.prefix_tokens != 1)}" + (
            ", the first a class token)" if self.class_token else ")"
        )


CHANNELS_FIRST = OutputLayout("channels_first")
CHANNELS_LAST = OutputLayout("channels_last")


def tokens(prefix_tokens: int, class_token: bool) -> OutputLayout:
    return OutputLayout("tokens", prefix_tokens, class_token)


def declared_layout(
    layouts: dict[str, OutputLayout], module_name: str, module: torch.nn.Module | None
) -> OutputLayout | None:
    """The layout of ``module_name``'s output: a convolution's is channels-first whatever its parent
    declares; otherwise the longest declared prefix (whole dotted parts) wins; None: undeclared."""
    if isinstance(module, torch.nn.modules.conv._ConvNd):
        return CHANNELS_FIRST
    best, best_length = None, -1
    for prefix, layout in layouts.items():
        matches = not prefix or module_name == prefix or module_name.startswith(prefix + ".")
        if matches and len(prefix) > best_length:
            best, best_length = layout, len(prefix)
    return best
