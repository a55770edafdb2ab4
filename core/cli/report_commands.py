"""The ``report`` and ``ratings`` commands, registered on the main ``selectivity-eval`` app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from selectivity_eval.core.cli.app import DebugOption, QuietOption, app, reported_errors, stderr, stdout
from selectivity_eval.core.cli.printing import print_tables
from selectivity_eval.core.cli.progress import Reporter


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="The output directory of a finished run.")],
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """(Re)build report.html (and rating.html) from a finished run's outputs; the model is not loaded."""
    from selectivity_eval.core.report.build import build_report

    with reported_errors(debug):
        path = build_report(run_dir, Reporter(console=stderr, quiet=quiet))
    if not quiet:
        rating = path.parent / "rating.html"
        if rating.is_file():
            stdout.print(f"Rating page: {rating}", highlight=False, soft_wrap=True)
        stdout.print(f"Report: {path}", highlight=False, soft_wrap=True)


def _number(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _p(value) -> str:
    return "-" if value is None else f"{value:.3g}"


def ratings_tables(result: dict) -> list[Table]:
    share = Table(title="Interpretable AM images by layer")
    for column in ("layer", "images rated", "interpretable", "share"):
        share.add_column(column, justify="left" if column == "layer" else "right")
    relation = Table(title="Selectivity of interpretable vs other units")
    headers = ("layer", "measure", "mean (interpretable)", "mean (other)", "Mann-Whitney U", "p", "r (point-biserial)", "p ")
    for column in headers:
        relation.add_column(column, justify="left" if column in ("layer", "measure") else "right")
    groups = {**result["layers"], "all layers": result["all_layers"]}
    for layer, stats in groups.items():
        counts = (str(stats["n_images"]), str(stats["n_interpretable"]), _number(stats["share_interpretable"]))
        share.add_row(escape(layer), *counts)
        for measure, test in stats["measures"].items():
            relation.add_row(
                escape(layer), escape(measure), _number(test["mean_interpretable"]), _number(test["mean_other"]),
                _number(test["mann_whitney_u"], 1), _p(test["mann_whitney_p"]), _number(test["point_biserial_r"]),
                _p(test["point_biserial_p"]),
            )
    share.caption = result["rule"]
    return [share, relation]


@app.command()
def ratings(
    run_dir: Annotated[Path, typer.Argument(help="The output directory of a run with a rating page.")],
    files: Annotated[list[Path], typer.Argument(help="Ratings CSV files downloaded from rating.html (one per rater).")],
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Merge rating.html's CSV files into the run: ratings_merged.csv, ratings.json and a per-layer summary."""
    from selectivity_eval.core.report.ratings import merge_ratings
    from selectivity_eval.core.report.inputs import load_finished_run

    with reported_errors(debug):
        result = merge_ratings(load_finished_run(run_dir), files)
    if not quiet:
        print_tables(stdout, ratings_tables(result))
        stdout.print(
            f"Merged: {run_dir / 'ratings_merged.csv'} and {run_dir / 'ratings.json'}. "
            f"`selectivity-eval report {run_dir}` adds them to report.html.",
            highlight=False,
            soft_wrap=True,
        )
