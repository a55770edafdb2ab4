"""The ``selectivity-eval`` command line: ``selectivity-eval spec.yaml`` runs a study."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from selectivity_eval._version import __version__
from selectivity_eval.core.errors import SelectivityEvalError
from selectivity_eval.core.outputs.atomic import disk_full, no_space
from selectivity_eval.core.cli.progress import Reporter
from selectivity_eval.core.cli.printing import print_tables
from selectivity_eval.core.cli.summary_table import summary_tables
from selectivity_eval.core.spec.default import default_spec_path

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
        stderr.print(f"[bold red]Error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(error.exit_code) from None
    except OSError as error:
        if debug:
            raise
        if not no_space(error):
            _print_unexpected(error)
            raise typer.Exit(EXIT_FAILED) from None
        full = disk_full(Path(error.filename or "the output directory"))
        stderr.print(f"[bold red]Error:[/] {escape(str(full))}", highlight=False, soft_wrap=True)
        raise typer.Exit(full.exit_code) from None
    except Exception as error:
        if debug:
            raise
        _print_unexpected(error)
        raise typer.Exit(EXIT_FAILED) from None


def _print_unexpected(error: BaseException) -> None:
    stderr.print(
        f"[bold red]Error:[/] {type(error).__name__}: {escape(str(error))} (run again with --debug for the traceback)",
        highlight=False,
        soft_wrap=True,
    )


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
    from selectivity_eval.core.study.run import run_spec
    from selectivity_eval.core.spec.loader import load_spec

    with reported_errors(debug):
        run_spec_model = load_spec(spec or default_spec_path())
        if output is not None:
            run_spec_model = run_spec_model.model_copy(update={"output": output})
        reporter = Reporter(console=stderr, quiet=quiet)
        result = run_spec(run_spec_model, reporter=reporter)
        if not quiet:
            print_tables(stdout, summary_tables(result.summary))
        for failure in result.failures:
            stderr.print(
                f"[bold red]Error:[/] measure {failure.measure!r} (plugin {failure.plugin!r}) failed on layer "
                f"{failure.layer!r}: {failure.error}. The other results were written.",
                highlight=False,
                soft_wrap=True,
            )
        if not quiet:
            stdout.print(f"Results: {result.output_dir / 'units.csv'}", highlight=False, soft_wrap=True)
            if result.report is not None:
                stdout.print(f"Report: {result.report}", highlight=False, soft_wrap=True)
        if result.failures:
            raise typer.Exit(EXIT_FAILED)


@app.command()
def validate(
    spec: Annotated[Path, typer.Argument(help="The spec YAML to check.")],
    debug: DebugOption = False,
) -> None:
    """Check a spec, its plugins' parameters, its layer names and its data set's listing, decoding no image."""
    from selectivity_eval.core.distributed.executor import require_dask
    from selectivity_eval.core.extraction.extract import resolve_layers
    from selectivity_eval.core.registry.manager import get_registry
    from selectivity_eval.core.study.run import check_output_dir, load_dataset, load_model, resolve_device
    from selectivity_eval.core.spec.loader import load_spec
    from selectivity_eval.core.statistics.backend import kernel_mode

    with reported_errors(debug):
        registry = get_registry()
        checked = load_spec(spec, registry)
        resolve_device(checked.device)
        check_output_dir(Path(checked.output))
        kernel_mode()
        if checked.executor is not None and checked.executor.kind == "dask":
            require_dask()
        resolve_layers(load_model(checked, registry), checked.layers)
        load_dataset(checked, registry, None)  # its images and labels, without the model's transform
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
    from selectivity_eval.core.registry.manager import get_registry

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
    print_tables(stdout, [table])


@app.command()
def schema() -> None:
    """Print the JSON Schema of the run spec."""
    from selectivity_eval.schemas.spec import run_spec_json_schema

    stdout.out(json.dumps(run_spec_json_schema(), indent=2))


weights_app = typer.Typer(
    help="Manage pretrained weights files for the torchvision model plugin (nothing is downloaded).",
    no_args_is_help=True,
)
app.add_typer(weights_app, name="weights")


@weights_app.command("install")
def weights_install(
    file: Annotated[
        Path,
        typer.Argument(help="A torchvision weights file, under its published name (e.g. mobilenet_v2-b0353104.pth)."),
    ],
    link: Annotated[bool, typer.Option("--link", help="Symlink the file instead of copying it.")] = False,
    debug: DebugOption = False,
) -> None:
    """Put a torchvision weights file into the torch hub cache, where `weights: IMAGENET1K_V1` finds it."""
    from selectivity_eval.plugins.models.torchvision_models import install_weights

    with reported_errors(debug):
        destination, provides = install_weights(file, link=link)
    stdout.print(f"Installed {destination}", highlight=False, markup=False, soft_wrap=True)
    for arch, weights in provides:
        spec_line = f"  model: {{plugin: torchvision, arch: {arch}, weights: {weights.split('.', 1)[1]}}}  ({weights})"
        stdout.print(spec_line, highlight=False, markup=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="selectivity-eval")



from selectivity_eval.core.cli import layers_command  # noqa: E402,F401  (registers the `layers` command)
from selectivity_eval.core.cli import sweep_command  # noqa: E402,F401  (registers the `sweep` command)
from selectivity_eval.core.cli import report_commands  # noqa: E402,F401  (registers `report` and `ratings`)
