"""One value per unit and image from a module's output, by the layout the model declares.

Conv maps (channels-first, or channels-last as Swin keeps them) have one unit per channel and are
reduced over space by the layer's ``pool``; token sequences (batch, tokens, features) have one unit
per feature and are reduced over tokens by the layer's ``tokens``:

- ``cls``: the first token, the class token (an error where the model has none);
- ``mean`` / ``max``: over all tokens, class and other prefix tokens included;
- ``patch_mean`` / ``patch_max``: over the patch tokens only, the prefix tokens left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.sources.layout import CHANNELS_FIRST, OutputLayout

TOKEN_REDUCTIONS = ("cls", "mean", "max", "patch_mean", "patch_max")


def default_tokens(layout: OutputLayout) -> str:
    """A token layer's reduction when the spec names none: the class token where there is one, else the mean."""
    return "cls" if layout.class_token else "mean"


@dataclass(frozen=True)
class Reduction:
    """How one layer's output becomes (images, units): ``layout`` from the model (None: undeclared),
    ``pool``/``tokens``/``relu`` from the spec (``pool_given``: the spec set ``pool`` itself)."""

    label: str
    layout: OutputLayout | None = None
    pool: str = "max"
    tokens: str | None = None
    relu: bool = False
    pool_given: bool = False

    def layout_for(self, ndim: int) -> OutputLayout:
        """The layout an output of ``ndim`` dimensions (batch included) is read with; an error when
        it is a 3-D output nothing declares and the spec gives no choice, or a choice that does not fit."""
        layout = self.layout
        if self.tokens is not None and layout is not None and layout.kind != "tokens" and ndim >= 3:
            raise UserInputError(
                f"Layer {self.label!r}: `tokens: {self.tokens}` is set, but the model declares its output "
                f"{layout.describe()} (a map with one unit per channel). Use `pool` for it, or drop `tokens`."
            )
        if layout is None:
            if ndim == 3 and self.tokens is not None:
                layout = OutputLayout("tokens")
            elif ndim == 3 and not self.pool_given:
                raise UserInputError(
                    f"Layer {self.label!r}: its output is 3-D (batch, N, M) and the model does not say whether N "
                    "is tokens (a transformer's (batch, tokens, features): one unit per feature) or channels "
                    "(a 1-D conv map (batch, channels, length): one unit per channel). Set the layer's "
                    "`tokens` (cls, mean, max, patch_mean or patch_max) for tokens, or its `pool` "
                    "(max, mean or center) for channels."
                )
            else:
                layout = CHANNELS_FIRST
        if layout.kind == "tokens" and ndim != 3 and ndim > 2:
            raise UserInputError(
                f"Layer {self.label!r}: the model declares its output as tokens, but it has {ndim} dimensions, "
                "not (batch, tokens, features)."
            )
        if layout.kind == "tokens" and ndim == 3:
            self._check_tokens(layout)
        return layout

    def effective_tokens(self, layout: OutputLayout) -> str:
        return self.tokens or default_tokens(layout)

    def _check_tokens(self, layout: OutputLayout) -> None:
        tokens = self.effective_tokens(layout)
        if tokens == "cls" and layout.prefix_tokens is not None and not layout.class_token:
            raise UserInputError(
                f"Layer {self.label!r}: `tokens: cls`, but the model has no class token; use mean, max, "
                "patch_mean or patch_max."
            )
        if tokens.startswith("patch_") and layout.prefix_tokens is None:
            raise UserInputError(
                f"Layer {self.label!r}: `tokens: {tokens}` needs to know which tokens are patch tokens, and the "
                "model does not declare its prefix tokens; use cls, mean or max."
            )

    def units(self, shape: tuple[int, ...] | list[int]) -> int:
        """How many units an output of ``shape`` (without the batch) gives."""
        if len(shape) <= 1:
            return shape[0] if shape else 1
        layout = self.layout_for(len(shape) + 1)
        return shape[-1] if layout.kind in ("tokens", "channels_last") else shape[0]

    def describe(self, shape: tuple[int, ...] | list[int]) -> str:
        """The reduction an output of ``shape`` (without the batch) takes, for the ``layers`` listing."""
        if len(shape) <= 1:
            return "-"
        layout = self.layout_for(len(shape) + 1)
        if layout.kind == "tokens":
            return f"tokens: {self.effective_tokens(layout)}"
        return f"pool: {self.pool}" + (" (HWC map)" if layout.kind == "channels_last" else "")

    def key(self) -> dict:
        """What besides module, pool and relu decides the values, for cache keys (empty for plain layers)."""
        extra = {}
        if self.tokens is not None:
            extra["tokens"] = self.tokens
        if self.layout is not None and self.layout != CHANNELS_FIRST:
            extra["layout"] = self.layout.describe()
        return extra

    def __call__(self, output) -> torch.Tensor:
        """One float32 value per unit and image, copied so in-place ops after the hook can't alter it.

        ReLU is monotone, so the maximum (or a chosen element: the centre, the class token) of the
        rectified output is the rectified maximum (element): those reduce first and rectify one value
        per unit, bit for bit the same for less work. A mean needs the whole output rectified first.
        """
        if isinstance(output, (tuple, list)):
            output = output[0]
        values = output.detach()
        relu_after = False
        if values.ndim == 1:
            values = values.unsqueeze(1)
        if values.ndim >= 3:
            layout = self.layout_for(values.ndim)
            if layout.kind == "tokens":
                tokens = self.effective_tokens(layout)
                relu_after = self.relu and not tokens.endswith("mean")
                values = torch.relu(values) if self.relu and not relu_after else values
                values = reduce_tokens(values, tokens, layout.prefix_tokens or 0)
            else:
                relu_after = self.relu and self.pool != "mean"
                values = torch.relu(values) if self.relu and not relu_after else values
                if layout.kind == "channels_last":
                    values = values.movedim(-1, 1)
                values = pool_map(values, self.pool)
        elif self.relu:
            values = torch.relu(values)
        if relu_after:
            values = torch.relu(values)
        return values.to(torch.float32, copy=True)


def pool_map(values: torch.Tensor, pool: str) -> torch.Tensor:
    """(batch, channels, *space) -> (batch, channels): the maximum, mean or centre value of each map."""
    spatial = tuple(range(2, values.ndim))
    if pool == "max":
        return values.amax(dim=spatial)
    if pool == "mean":
        return values.mean(dim=spatial)
    return values[(slice(None), slice(None), *(size // 2 for size in values.shape[2:]))]


def reduce_tokens(values: torch.Tensor, tokens: str, prefix_tokens: int) -> torch.Tensor:
    """(batch, tokens, features) -> (batch, features) by ``tokens`` (see the module's docstring)."""
    if tokens == "cls":
        return values[:, 0]
    if tokens.startswith("patch_"):
        values = values[:, prefix_tokens:]
    return values.amax(dim=1) if tokens.endswith("max") else values.mean(dim=1)


def am_reduction(label: str, layout: OutputLayout | None, objective: str) -> Reduction:
    """The reduction of activation maximisation's ``objective`` (pre-ReLU), for the same layout rule.

    A conv channel: its value at the centre of the map (``center``, and ``cls``) or the map's mean
    (``mean``). A token feature: its value at the class token (``cls``; ``center`` too where the
    model has a class token, else the mean) or its mean over all tokens (``mean``). An undeclared
    3-D output is read as a (batch, channels, length) map.
    """
    tokens = None
    if layout is not None and layout.kind == "tokens":
        if objective == "mean" or (objective == "center" and layout.prefix_tokens is not None and not layout.class_token):
            tokens = "mean"
        else:
            tokens = "cls"
    return Reduction(label, layout, "mean" if objective == "mean" else "center", tokens, False, pool_given=True)
