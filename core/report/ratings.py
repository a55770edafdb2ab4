"""``selectivity-eval ratings``: merge rating.html's CSV files into the run and relate them to selectivity.

Each AM image (one per unit) gets a verdict from its ratings: *interpretable* when more than half
of its ratings say "yes" (an "unsure" counts as not yes). Per layer, and over all layers, the
merge reports the share of interpretable images and, for each headline measure, its mean over
the interpretable and the other units, a Mann-Whitney U test between the two groups and the
point-biserial correlation of the verdict with the measure (Gale et al. 2019 asked whether
selective units give interpretable images).
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.core.outputs import atomic
from selectivity_eval.core.outputs.results import write_json
from selectivity_eval.core.report.rating_page import KEY_FILE
from selectivity_eval.core.report.inputs import FinishedRun
from selectivity_eval.core.cli.summary_table import main_columns

ANSWERS = {"yes": "yes", "y": "yes", "no": "no", "n": "no", "unsure": "unsure", "u": "unsure"}
RULE = 'An image is interpretable when more than half of its ratings are "yes" ("unsure" counts as not yes).'
MAX_PROBLEMS = 20


def read_key(run_dir: Path) -> tuple[dict[str, tuple[str, int]], str]:
    path = run_dir / KEY_FILE
    if not path.is_file():
        raise UserInputError(f"{path} is missing: the run made no rating page (it needs AM images; see `am:`).")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {row["image_id"]: (row["layer"], int(row["unit"])) for row in rows}, (rows[0]["page"] if rows else "")


def read_ratings(path: Path, key: dict[str, tuple[str, int]], page: str) -> list[dict[str, str]]:
    """The rows of one ratings CSV, checked; every problem is reported at once, each at its line."""
    if not path.is_file():
        raise UserInputError(f"Ratings file {str(path)!r} does not exist.")
    problems: list[str] = []
    rows: list[dict[str, str]] = []
    seen: dict[tuple[str, str], int] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"image_id", "rating"} - set(reader.fieldnames or [])
        if missing:
            raise UserInputError(f"{path}: the header lacks the column(s) {', '.join(sorted(missing))} "
                                 "(expected image_id,rating,description,rater,page as rating.html writes them).")
        for row in reader:
            line = reader.line_num
            image_id = (row.get("image_id") or "").strip()
            answer = (row.get("rating") or "").strip().lower()
            rater = (row.get("rater") or "").strip()
            where = f"{path} line {line}"
            if None in row:
                problems.append(f"{where}: more cells than columns")
            if image_id not in key:
                problems.append(f"{where}: unknown image id {image_id!r} (not in {KEY_FILE})")
            if answer not in ANSWERS:
                problems.append(f"{where}: rating {row.get('rating')!r} is not yes, no or unsure (y, n, u)")
            if (row.get("page") or page).strip() != page:
                problems.append(f"{where}: page {row.get('page')!r} is another rating page's (this run's is {page!r})")
            if (image_id, rater) in seen:
                problems.append(f"{where}: image {image_id!r} rated again by rater {rater!r} (first on line "
                                f"{seen[(image_id, rater)]})")
            seen.setdefault((image_id, rater), line)
            rows.append({"image_id": image_id, "rating": ANSWERS.get(answer, answer),
                         "description": (row.get("description") or "").strip(), "rater": rater})
    if problems:
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(problems) - MAX_PROBLEMS} more")
        raise UserInputError("Malformed ratings: " + "; ".join(shown))
    if not rows:
        raise UserInputError(f"{path} holds no ratings.")
    return rows


def verdicts(rows: list[dict[str, str]], key) -> dict[str, dict[str, Any]]:
    """Per rated image: its layer, unit, counts of each answer and whether it is interpretable."""
    counts: dict[str, Counter] = {}
    for row in rows:
        counts.setdefault(row["image_id"], Counter())[row["rating"]] += 1
    out = {}
    for image_id in sorted(counts):
        tally = counts[image_id]
        total = sum(tally.values())
        layer, unit = key[image_id]
        out[image_id] = {"layer": layer, "unit": unit, "n_ratings": total, "yes": tally["yes"], "no": tally["no"],
                         "unsure": tally["unsure"], "interpretable": tally["yes"] * 2 > total}
    return out


def _float(value) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def compare(flags: np.ndarray, values: np.ndarray) -> dict[str, Any]:
    """A measure over interpretable vs other units: means, Mann-Whitney U (two-sided), point-biserial r."""
    from scipy.stats import mannwhitneyu, pointbiserialr

    keep = np.isfinite(values)
    flags, values = flags[keep], values[keep]
    yes, no = values[flags], values[~flags]
    out: dict[str, Any] = {"n_interpretable": int(len(yes)), "n_other": int(len(no)),
                           "mean_interpretable": _float(yes.mean()) if len(yes) else None,
                           "mean_other": _float(no.mean()) if len(no) else None,
                           "mann_whitney_u": None, "mann_whitney_p": None, "point_biserial_r": None,
                           "point_biserial_p": None}
    if len(yes) and len(no):
        test = mannwhitneyu(yes, no, alternative="two-sided")
        out.update(mann_whitney_u=_float(test.statistic), mann_whitney_p=_float(test.pvalue))
        if len(values) > 2 and np.ptp(values) > 0:
            r = pointbiserialr(flags.astype(float), values)
            out.update(point_biserial_r=_float(r.statistic), point_biserial_p=_float(r.pvalue))
    return out


def layer_statistics(run: FinishedRun, images: dict[str, dict[str, Any]], layers: list[str]) -> dict[str, Any]:
    rated = [image for image in images.values() if image["layer"] in layers]
    flags = np.array([image["interpretable"] for image in rated], dtype=bool)
    stats: dict[str, Any] = {"n_images": len(rated), "n_interpretable": int(flags.sum()),
                             "share_interpretable": _float(flags.mean()) if len(rated) else None, "measures": {}}
    for column in main_columns(run.summary):
        values = np.array([run.units[i["layer"]][column][i["unit"]] if column in run.units[i["layer"]] else np.nan
                           for i in rated], dtype=np.float64)
        stats["measures"][column] = compare(flags, values)
    return stats


def merge_ratings(run: FinishedRun, paths: list[Path]) -> dict[str, Any]:
    """Read, check and merge the ratings; write ratings_merged.csv and ratings.json; return the latter's content."""
    key, page = read_key(run.directory)
    rows = [row for path in paths for row in read_ratings(Path(path), key, page)]
    images = verdicts(rows, key)
    rated_layers = [layer for layer in run.layers if any(i["layer"] == layer for i in images.values())]
    result = {
        "rule": RULE,
        "files": [str(path) for path in paths],
        "layers": {layer: layer_statistics(run, images, [layer]) for layer in rated_layers},
        "all_layers": layer_statistics(run, images, rated_layers),
        "images": images,
    }
    columns = main_columns(run.summary)
    with atomic.atomic_file(run.directory / "ratings_merged.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "layer", "unit", "rating", "description", "rater", "interpretable", *columns])
        for row in rows:
            layer, unit = key[row["image_id"]]
            units = run.units[layer]
            measures = [repr(float(units[c][unit])) if c in units else "" for c in columns]
            verdict = "true" if images[row["image_id"]]["interpretable"] else "false"
            writer.writerow([row["image_id"], layer, unit, row["rating"], row["description"], row["rater"], verdict,
                             *measures])
    write_json(run.directory / "ratings.json", result)
    return result
