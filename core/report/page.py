"""report.html: one page, no scripts and no network, with its figures beside it (relative paths)."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from urllib.parse import quote

from selectivity_eval.core.outputs.results import TIED_SUFFIX as TIED
from selectivity_eval.core.report.inputs import FinishedRun
from selectivity_eval.core.report.unit_cards import UnitCard

HOW_TO_READ = {
    "localist": "Lowest activation of the top class minus the highest activation of every other class. "
    "Positive only for a localist (\"grandmother\") unit, whose top class sits wholly above the rest: "
    "the green band on a jitterplot; a red band is the overlap.",
    "precision": "Share of the unit's top N images (dashed line on a jitterplot) that belong to their most "
    "frequent class. High precision says nothing about the rest of that class, which may lie far below.",
    "ccmas": "(mean of the best class - mean of the others) / (their sum): how far the best class mean "
    "stands out. A few very strong images can make it high while most of the class is unremarkable.",
    "topclass": "Share of the top class that comes before the first image of another class, walking down "
    "from the highest activation: 1 exactly for a localist unit, near 0 when an intruder is near the top.",
    "auroc": "Chance that a random image of the target class activates the unit more than a random other "
    "image (0.5: chance, 1: a perfect detector).",
    "max_informedness": "Best hit rate minus false-alarm rate over all thresholds (Youden's J).",
}
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1200px;
padding:0 20px 40px;color:#222}
h1{margin-top:24px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:36px}
nav a{margin-right:14px}table{border-collapse:collapse;margin:8px 0 16px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th:first-child,td:first-child{text-align:left}
tr.dim td{color:#777;font-size:12px}caption{caption-side:bottom;font-size:12px;color:#555;text-align:left}
figure{margin:12px 0}figure img{max-width:100%;height:auto}figcaption{font-size:12px;color:#555}
.cards{display:flex;flex-direction:column;gap:14px}
.card{border:1px solid #ccc;border-radius:6px;padding:10px;display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.card h3{width:100%;margin:0;font-size:15px}.card .why{color:#555;font-weight:normal;font-size:12px}
.card .note{width:100%;margin:2px 0;color:#8a4b00;font-size:13px}
.card img{height:auto}.card .jitter{width:480px;max-width:100%}.pix{image-rendering:pixelated}
.card .am{width:160px}.card table{font-size:12px;margin:0}.card td{padding:1px 6px}
dl dt{font-weight:bold;margin-top:6px}pre{background:#f6f6f6;padding:10px;overflow:auto;font-size:12px}
.note{color:#555;font-size:12px}table.facts td{text-align:left}
"""


def src(run: FinishedRun, path: Path) -> str:
    """A path under the run directory as a relative URL for report.html (which sits in that directory)."""
    return quote(path.relative_to(run.directory).as_posix())


def _number(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary_table(summary: dict, columns: list[str], title: str) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in ["layer", "units", "localist units", *columns])
    body = []
    for name, layer in summary.items():
        cells = []
        for column in columns:
            stats = layer["columns"].get(column, {})
            tip = f"median {_number(stats.get('median'))}, max {_number(stats.get('max'))}, NaN {stats.get('nan_count', 0)}"
            cells.append(f'<td title="{escape(tip)}">{_number(stats.get("mean"))}</td>')
        units = f"{layer['n_units']} ({layer['n_silent']} silent)" if layer.get("n_silent") else str(layer["n_units"])
        body.append(f"<tr><td>{escape(name)}</td><td>{units}</td><td>{layer.get('n_localist', '-')}</td>"
                    + "".join(cells) + "</tr>")
        chance = layer.get("chance", {})
        if chance:
            nulls = "".join(f"<td>{_number(chance.get(c, {}).get('null_mean'))}</td>" for c in columns)
            above = "".join(f"<td>{chance[c]['n_above_chance'] if c in chance else ''}</td>" for c in columns)
            body.append(f'<tr class="dim"><td>&nbsp;&nbsp;shuffled labels (mean)</td><td></td><td></td>{nulls}</tr>')
            body.append(f'<tr class="dim"><td>&nbsp;&nbsp;units above chance</td><td></td><td></td>{above}</tr>')
    notes = []
    first = next((c for layer in summary.values() for c in layer.get("chance", {}).values()), None)
    if first:
        notes.append(f"Shuffled labels: means over {first['permutations']} label shufflings; units above chance at "
                     f"alpha {first['alpha']} with the {first['correction']} correction.")
    signed = [name for name, layer in summary.items() if layer.get("signed_activations")]
    if signed:
        notes.append(f"{', '.join(signed)}: signed activations (e.g. logits), so ccmas can fall outside [0, 1]; "
                     "values are reported as computed, not clipped.")
    responsive = any(layer.get("summary_units") == "responsive" for layer in summary.values())
    over = "responsive units (silent units, whose activation never varies, left out)" if responsive else "units"
    notes.append(f"Means over each layer's {over}; hover a mean for its median, maximum and NaN count.")
    tied = [f"{name}: {', '.join(f'{c[: -len(TIED)]} {n}' for c, n in layer['n_tie_dependent'].items() if n)}"
            for name, layer in summary.items() if any(layer.get("n_tie_dependent", {}).values())]
    if tied:
        notes.append("Units whose value depends on how tied activations are ordered: " + "; ".join(tied) + ".")
    caption = "<br>".join(escape(n) for n in notes)
    return (f"<h3>{escape(title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
            f"<caption>{caption}</caption></table>")


def figure_html(run: FinishedRun, path: Path | None, caption: str, alt: str, extra_class: str = "") -> str:
    if path is None:
        return ""
    cls = f' class="{extra_class}"' if extra_class else ""
    return (f'<figure><img src="{src(run, path)}" alt="{escape(alt)}"{cls}>'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def card_html(run: FinishedRun, card: UnitCard) -> str:
    parts = [f'<h3 id="{escape(card.layer)}-{card.unit}">{escape(card.layer)}, unit {card.unit} '
             f'<span class="why">({escape("; ".join(card.reasons))})</span></h3>']
    parts.extend(f'<p class="note">{escape(note)}</p>' for note in card.notes)
    alt = f"jitterplot of {escape(card.layer)} unit {card.unit}"
    parts.append(f'<img class="jitter" src="{src(run, card.jitterplot)}" alt="{alt}">')
    if card.top_images is not None:
        parts.append(f'<figure><img class="pix" src="{src(run, card.top_images)}" alt="top images"><figcaption>'
                     "highest-activating images (class, activation)</figcaption></figure>")
    if card.am_image is not None:
        parts.append(f'<figure><img class="am pix" src="{src(run, card.am_image)}" alt="activation maximisation image">'
                     "<figcaption>activation maximisation</figcaption></figure>")
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in card.values.items())
    parts.append(f"<table>{rows}</table>")
    return '<div class="card">' + "".join(parts) + "</div>"


def ratings_html(ratings: dict) -> str:
    rows = []
    for layer, stats in ratings.get("layers", {}).items():
        share = stats.get("share_interpretable")
        rows.append(f"<tr><td>{escape(layer)}</td><td>{stats['n_images']}</td><td>{stats['n_interpretable']}</td>"
                    f"<td>{_number(share)}</td></tr>")
    table = ("<table><thead><tr><th>layer</th><th>images rated</th><th>interpretable</th><th>share</th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>")
    return f"<h2 id=\"ratings\">Human ratings of the AM images</h2><p>{escape(ratings.get('rule', ''))}</p>{table}" \
           f"<p class=\"note\">Per-measure comparisons: ratings.json and ratings_merged.csv.</p>"


def render_report(
    run: FinishedRun, columns, overview, histograms, contact_sheets, cards, rating_page, ratings, cards_note=""
) -> str:
    record, summary = run.record, run.summary
    images = record.get("images", {})
    model, dataset = record.get("model", {}), record.get("dataset", {})
    facts = [
        ("model", f"{model.get('plugin')} {json.dumps(model.get('params', {}))}"),
        ("data set", f"{dataset.get('plugin')} {json.dumps(dataset.get('params', {}))}"),
        ("images measured", f"{images.get('measured', '?')} of {images.get('in_data_set', '?')}"),
        ("seed, device", f"{record.get('seed')}, {record.get('device')}"),
        ("status", f"{record.get('status')} (selectivity-eval {record.get('selectivity_eval')})"),
    ]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>Selectivity report: {escape(str(model.get('plugin')))} on {escape(str(dataset.get('plugin')))}</title>",
           f"<style>{STYLE}</style></head><body>",
           "<h1>Selectivity report</h1>",
           '<table class="facts">' + "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in facts)
           + "</table>",
           '<nav><a href="#summary">Summary</a><a href="#figures">Figures</a>'
           + ('<a href="#am">Activation maximisation</a>' if contact_sheets else "")
           + ('<a href="#ratings">Ratings</a>' if ratings else "")
           + '<a href="#cards">Unit cards</a><a href="#measures">Reading the measures</a><a href="#spec">Spec</a></nav>',
           '<h2 id="summary">Layer summary</h2>', summary_table(summary, columns, "Trained network")]
    untrained = {name: layer["untrained"] for name, layer in summary.items() if "untrained" in layer}
    if untrained:
        out.append(summary_table(untrained, columns, "Untrained network (same architecture, random initialisation)"))
    for failure in record.get("failures", []):
        out.append(f"<p class=\"note\">Failed: measure {escape(str(failure.get('measure')))} on layer "
                   f"{escape(str(failure.get('layer')))}: {escape(str(failure.get('error')))}</p>")
    out.append('<h2 id="figures">Figures</h2>')
    for path, caption in overview:
        out.append(figure_html(run, path, caption, caption))
    for layer, path in histograms.items():
        out.append(figure_html(run, path, f"{layer}: histograms over units", f"histograms of {layer}"))
    if contact_sheets:
        out.append('<h2 id="am">Activation maximisation</h2>')
        out.append('<p>Each chosen unit\'s AM image; numbers in <a href="am.csv">am.csv</a>.'
                   + (f' Rate them blind in <a href="{rating_page}">{rating_page}</a>.' if rating_page else "") + "</p>")
        for layer, path in contact_sheets.items():
            out.append(figure_html(run, path, f"{layer}: AM images by unit", f"AM contact sheet of {layer}", "pix"))
    if ratings:
        out.append(ratings_html(ratings))
    out.append('<h2 id="cards">Unit cards</h2>')
    if cards_note:
        out.append(f'<p class="note">{escape(cards_note)}</p>')
    out.append('<p class="note">Jitterplots: every measured image\'s activation, one column per class (spread '
               "sideways at random so points do not hide each other), the top class in red. Green band: the "
               "localist gap; red band: where the top class overlaps the others. Dashed line: precision's top N.</p>")
    for layer, layer_cards in cards.items():
        out.append(f"<h3>{escape(layer)}</h3>")
        if not layer_cards:
            out.append('<p class="note">No unit chosen.</p>')
        out.append('<div class="cards">' + "".join(card_html(run, card) for card in layer_cards) + "</div>")
    out.append('<h2 id="measures">Reading the measures</h2><dl>')
    for column in columns:
        if column in HOW_TO_READ:
            out.append(f"<dt>{escape(column)}</dt><dd>{escape(HOW_TO_READ[column])}</dd>")
    out.append("</dl>")
    spec_text = (run.directory / "spec.resolved.yaml").read_text(encoding="utf-8")
    out.append(f'<h2 id="spec">Spec</h2><p class="note">spec.resolved.yaml, as run:</p><pre>{escape(spec_text)}</pre>')
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in record.get("timings_s", {}).items())
    out.append(f"<p class=\"note\">Timings: {escape(timings)}. Rebuild this page with "
               f"<code>selectivity-eval report {escape(run.directory.name)}</code>.</p></body></html>")
    return "\n".join(out) + "\n"
