"""``selectivity-eval sweep SWEEP.yaml``: every combination of a grid as a run, then one summary table.

Registered on the main ``app`` by importing this module (``core/cli/app.py`` does, at its end).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from selectivity_eval.core.cli.app import EXIT_FAILED, DebugOption, QuietOption, app, reported_errors, stderr, stdout
from selectivity_eval.core.cli.printing import print_tables
from selectivity_eval.core.cli.progress import Reporter


@app.command()
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="The sweep YAML: a spec template and a grid.")],
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Override the sweep's output directory.")
    ] = None,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Run a spec template over a grid of models x weights x layers; one run directory per combination."""
    from selectivity_eval.core.study.sweep import load_sweep, run_sweep
    from selectivity_eval.core.study.sweep_summary import sweep_table

    with reported_errors(debug):
        sweep_spec, runs = load_sweep(sweep_file, output)
        reporter = Reporter(console=stderr, quiet=quiet)
        result = run_sweep(sweep_spec, runs, reporter=reporter)
    if not quiet:
        print_tables(stdout, [sweep_table(result)])
    for outcome in result.failed:
        stderr.print(
            f"[bold red]Error:[/] run {escape(outcome.run.name)} failed: {escape(outcome.error or '')}",
            highlight=False,
            soft_wrap=True,
        )
    if not quiet:
        stdout.print(f"Summary: {result.output_dir / 'sweep_summary.csv'}", highlight=False, soft_wrap=True)
    if result.failed:
        raise typer.Exit(EXIT_FAILED)
