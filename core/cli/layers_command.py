"""``selectivity-eval layers``: a model's modules with their aliases, output sizes, units and reduction.

Registered on the main ``app`` by importing this module (``core/cli/app.py`` does, at its end).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from selectivity_eval.core.cli.app import DebugOption, app, reported_errors, stdout
from selectivity_eval.core.cli.printing import print_tables
from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.spec.default import default_spec_path


def parse_settings(settings: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` pairs -> parameters; each value is read as a YAML scalar (``3`` is a number)."""
    import yaml

    params: dict[str, object] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key.strip():
            raise UserInputError(f"--set {setting!r}: expected KEY=VALUE, e.g. --set arch=alexnet.")
        try:
            params[key.strip()] = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            params[key.strip()] = value
    return params


def layer_rows(model, chosen: list | None = None) -> tuple[list[dict], bool]:
    """Every module of ``model`` with its aliases, output size, unit count and reduction; and whether sizes are known.

    Sizes come from one forward pass of ``model.example_input`` (or, failing that, zeros of the
    transform's crop size) under forward hooks. ``units`` is what a spec's layer yields: the
    channels of a conv map (which ``pool`` reduces to one value each), the features of a linear layer
    or of a token sequence (which ``tokens`` reduces). ``chosen``: a spec's layers, whose own
    ``pool``/``tokens`` settings are shown for the modules they name (other modules: the defaults).
    ``reduction`` is None where the output is 3-D, undeclared, and no spec layer chooses.
    """
    import torch

    from selectivity_eval.core.extraction.extract import resolve_layers
    from selectivity_eval.core.extraction.reduce import Reduction

    settings = {layer.module_name: layer for layer in resolve_layers(model, chosen or [])}

    aliases: dict[str, list[str]] = {}
    for alias, target in model.aliases.items():
        aliases.setdefault(target, []).append(alias)
    example = model.example_input
    crop = getattr(model.transform, "crop_size", None)
    if example is None and crop is not None:
        side = int(crop[0] if isinstance(crop, (list, tuple)) else crop)
        example = torch.zeros(1, 3, side, side)
    seen: dict[str, dict] = {}
    if example is not None:
        handles = []
        for name, module in model.module.named_modules():
            if not name:
                continue

            def hook(_module, _inputs, output, name=name):
                if isinstance(output, (tuple, list)) and output:
                    output = output[0]
                entry = seen.setdefault(name, {"calls": 0})
                entry["calls"] += 1
                entry["shape"] = list(output.shape[1:]) if isinstance(output, torch.Tensor) else None

            handles.append(module.register_forward_hook(hook))
        model.module.eval()
        try:
            with torch.inference_mode():
                model.forward(example)
        finally:
            for handle in handles:
                handle.remove()
    rows = []
    for name, module in model.module.named_modules():
        if not name:
            continue
        entry = seen.get(name, {})
        shape = entry.get("shape")
        setting = settings.get(name)
        reduction = setting.reduction if setting else Reduction(name, model.layout_of(name))
        units, described = None, None
        if shape is not None:
            try:
                units, described = reduction.units(shape), reduction.describe(shape)
            except UserInputError:
                pass
        rows.append(
            {
                "layer": name,
                "aliases": aliases.get(name, []),
                "module": type(module).__name__,
                "output": shape,
                "units": units,
                "reduction": described,
                "calls": entry.get("calls", 0),
            }
        )
    return rows, example is not None


@app.command()
def layers(
    spec: Annotated[
        Optional[Path], typer.Argument(help="A spec YAML whose model to list. Omitted: the embedded digits example.")
    ] = None,
    model: Annotated[
        Optional[str], typer.Option("--model", "-m", help="List this model plugin instead of a spec's model.")
    ] = None,
    settings: Annotated[
        Optional[list[str]],
        typer.Option("--set", "-s", help="A model parameter, KEY=VALUE (repeatable), e.g. --set arch=alexnet."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    debug: DebugOption = False,
) -> None:
    """List a model's layers: module names, aliases, output sizes and unit counts."""
    from pydantic import ValidationError

    from selectivity_eval.core.registry.manager import get_registry
    from selectivity_eval.core.sources.loading import plugin_step
    from selectivity_eval.core.spec.loader import load_spec

    with reported_errors(debug):
        registry = get_registry()
        overrides = parse_settings(settings or [])
        if model is not None and spec is not None:
            raise UserInputError("Give either a SPEC or --model PLUGIN, not both.")
        chosen = None
        if model is not None:
            plugin, params, seed = model, overrides, 0
        else:
            checked = load_spec(spec or default_spec_path(), registry)
            plugin, params, seed = checked.model.plugin, {**checked.model.params(), **overrides}, checked.seed
            chosen = checked.layers
        source_class = registry.get("model", plugin)
        try:
            source = source_class(params)
        except ValidationError as error:
            problems = []
            for detail in error.errors(include_url=False):
                message = detail["msg"].removeprefix("Value error, ")
                if detail["type"] == "extra_forbidden":
                    message = "unknown parameter (a typo?)"
                elif detail["type"] == "missing":
                    message = "required but missing"
                problems.append(f"{'.'.join(str(part) for part in detail['loc'])}: {message}")
            raise UserInputError(f"Invalid parameters of model plugin {plugin!r}: {'; '.join(problems)}") from None
        with plugin_step(registry, "model", plugin, "load"):
            loaded = source.load(seed=seed)
        rows, sized = layer_rows(loaded, chosen)
    if as_json:
        params = source.params.model_dump(mode="json")
        stdout.print_json(json.dumps({"model": plugin, "params": params, "layers": rows}))
        return
    described = ", ".join(f"{key}={value}" for key, value in source.params.model_dump(mode="json").items())
    table = Table(title=escape(f"Layers of {plugin}" + (f" ({described})" if described else "")))
    for column in ("layer", "alias", "module", "output", "units", "reduction"):
        table.add_column(column, justify="right" if column in ("output", "units") else "left", overflow="fold")
    repeated = ambiguous = misfit = False
    for row in rows:
        reduction = row["reduction"] or "-"
        if row["output"] is not None and row["units"] is None:
            output = " x ".join(str(size) for size in row["output"])
            undeclared = len(row["output"]) == 2
            units, reduction = "?", "tokens or pool?" if undeclared else "not its layout"
            ambiguous |= undeclared
            misfit |= not undeclared
        elif row["output"] is not None:
            output = " x ".join(str(size) for size in row["output"]) or "scalar"
            units = f"{row['units']:,}" + ("*" if row["calls"] > 1 else "")
            repeated |= row["calls"] > 1
        else:
            output = "-" if sized else "?"
            units = "not run" if sized and row["calls"] == 0 else "-"
        table.add_row(escape(row["layer"]), escape(", ".join(row["aliases"])), row["module"], output, units, escape(reduction))
    notes = [
        "units: one per channel of a conv map (a spec's `pool` reduces each map to one value), "
        "one per feature of a linear layer or of a transformer's tokens (a spec's `tokens` reduces them: "
        "cls, mean, max, patch_mean, patch_max). reduction: what the layer takes by default (or as the spec says)."
    ]
    if ambiguous:
        notes.append(
            "tokens or pool?: a 3-D output the model does not declare; a spec layer must set `tokens` "
            "(batch, tokens, features) or `pool` (batch, channels, length)."
        )
    if misfit:
        notes.append(
            "not its layout: the output does not have the layout the model declares for it (attention heads "
            "split out, say); it cannot be measured as a layer."
        )
    if repeated:
        notes.append("*: the module runs more than once per forward pass; a spec's layer keeps its last output.")
    if not sized:
        notes.append("The model gives no example input, so output sizes are unknown.")
    print_tables(stdout, [table])
    for note in notes:
        stdout.print(note, highlight=False, markup=False, soft_wrap=True)
