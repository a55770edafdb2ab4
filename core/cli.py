"""The ``selectivity-eval`` command line: ``selectivity-eval spec.yaml`` runs a study."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from selectivity_eval._version import __version__
from selectivity_eval.core.errors import SelectivityEvalError
from selectivity_eval.core.progress import Reporter

EXIT_FAILED = 1


class RunByDefault(TyperGroup):
    """Treats ``selectivity-eval SPEC ...`` as ``selectivity-eval run SPEC ...``."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        positional = [arg for arg in args if not arg.startswith("-")]
        if positional and positional[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=RunByDefault,
    help="Measure how selective the units of a neural network are. `selectivity-eval SPEC.yaml` runs a study.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stdout = Console()
stderr = Console(stderr=True)

QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables; errors only.")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")]


def default_spec_path() -> Path:
    """The spec embedded in the package: all four measures on all four layers of the digits CNN."""
    return Path(str(resources.files("selectivity_eval.plugins").joinpath("digits.yaml")))


@contextmanager
def reported_errors(debug: bool) -> Iterator[None]:
    """Turn errors into one paragraph on stderr and an exit code; ``--debug`` re-raises them."""
    try:
        yield
    except typer.Exit:
        raise
    except SelectivityEvalError as error:
        if debug:
            raise
        stderr.print(f"[bold red]Error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(error.exit_code) from None
    except Exception as error:
        if debug:
            raise
        stderr.print(
            f"[bold red]Error:[/] {type(error).__name__}: {error} (run again with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_FAILED) from None


def _version_callback(value: bool) -> None:
    if value:
        stdout.print(f"selectivity-eval {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = None,
) -> None:
    """Measure how selective the units of a neural network are."""


@app.command()
def run(
    spec: Annotated[
        Optional[Path], typer.Argument(help="The spec YAML. Omitted: the embedded digits example.")
    ] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Override the spec's output directory.")] = None,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Run a study: extract activations, compute the measures, write the results."""
    from selectivity_eval.core.run import run_spec
    from selectivity_eval.core.spec_loader import load_spec

    with reported_errors(debug):
        run_spec_model = load_spec(spec or default_spec_path())
        if output is not None:
            run_spec_model = run_spec_model.model_copy(update={"output": output})
        reporter = Reporter(console=stderr, quiet=quiet)
        result = run_spec(run_spec_model, reporter=reporter)
        if not quiet:
            stdout.print(summary_table(result.summary))
        for failure in result.failures:
            stderr.print(
                f"[bold red]Error:[/] measure {failure.measure!r} (plugin {failure.plugin!r}) failed on layer "
                f"{failure.layer!r}: {failure.error}. The other results were written.",
                highlight=False,
                soft_wrap=True,
            )
        if not quiet:
            stdout.print(f"Results: {result.output_dir / 'units.csv'}", highlight=False, soft_wrap=True)
        if result.failures:
            raise typer.Exit(EXIT_FAILED)


def summary_table(summary: dict) -> Table:
    """Layers as rows; units, localist units and the mean of each measure's main column."""
    main_columns: list[str] = []
    for layer in summary.values():
        for column, stats in layer["columns"].items():
            if "mean" in stats and not column.endswith(("_count", "_norm", "_off")) and not column.startswith("is_"):
                if column not in main_columns:
                    main_columns.append(column)
    table = Table(title="Selectivity by layer (means over units)")
    table.add_column("layer")
    table.add_column("units", justify="right")
    table.add_column("localist units", justify="right")
    for column in main_columns:
        table.add_column(column, justify="right")
    for name, layer in summary.items():
        means = []
        for column in main_columns:
            mean = layer["columns"].get(column, {}).get("mean")
            means.append("-" if mean is None else f"{mean:.3f}")
        table.add_row(name, str(layer["n_units"]), str(layer.get("n_localist", "-")), *means)
    signed = [name for name, layer in summary.items() if layer.get("signed_activations")]
    if signed:
        table.caption = (
            f"{', '.join(signed)}: signed activations (e.g. logits), so ccmas can fall outside [0, 1]; "
            "values are reported as computed, not clipped."
        )
    return table


@app.command()
def validate(
    spec: Annotated[Path, typer.Argument(help="The spec YAML to check.")],
    debug: DebugOption = False,
) -> None:
    """Check a spec, its plugins' parameters and its layer names, without running anything heavy."""
    from selectivity_eval.core.extract import resolve_layers
    from selectivity_eval.core.plugins import get_registry
    from selectivity_eval.core.run import load_model, resolve_device
    from selectivity_eval.core.spec_loader import load_spec

    with reported_errors(debug):
        registry = get_registry()
        checked = load_spec(spec, registry)
        resolve_device(checked.device)
        resolve_layers(load_model(checked, registry), checked.layers)
        layers, measures = len(checked.layers), len(checked.measures or [])
        stdout.print(
            f"{spec}: valid ({layers} layer{'s' * (layers != 1)}, {measures} measure{'s' * (measures != 1)}).",
            highlight=False,
        )


@app.command()
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    debug: DebugOption = False,
) -> None:
    """List every registered plugin: name, kind, distribution, version."""
    from selectivity_eval.core.plugins import get_registry

    with reported_errors(debug):
        rows = [
            {
                "name": e.name,
                "kind": e.kind,
                "distribution": e.origin.distribution,
                "version": e.origin.version,
                "plugin": e.origin.plugin,
                "description": e.cls.description(),
            }
            for e in get_registry()
        ]
    if as_json:
        stdout.print_json(json.dumps(rows))
        return
    table = Table(title="Plugins")
    for column in ("name", "kind", "distribution", "version", "description"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["name"], row["kind"], row["distribution"], row["version"], row["description"])
    stdout.print(table)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the run spec."""
    from selectivity_eval.schemas.spec import run_spec_json_schema

    stdout.out(json.dumps(run_spec_json_schema(), indent=2))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="selectivity-eval")

