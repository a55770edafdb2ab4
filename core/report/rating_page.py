"""rating.html: a blind rating page for the run's AM images, and rating_key.csv, which maps its ids back.

The page holds the images themselves (PNG data URIs), in an order shuffled with the report's
seed, under anonymous ids (``img001``, ...): no layer or unit name, no file path. The rater answers
"object: yes / no / unsure" with the keys y / n / u, may type what they see, and downloads the
ratings as CSV (a Blob link; no server). ``rating_key.csv`` beside it (not in the page) maps each
id to its layer and unit; ``selectivity-eval ratings RUN_DIR ratings.csv`` reads both.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
from pathlib import Path

import numpy as np

from selectivity_eval.core.outputs import atomic

KEY_FILE = "rating_key.csv"
PAGE_FILE = "rating.html"
KEY_COLUMNS = ["image_id", "layer", "unit", "am_image", "page"]


def write_rating_page(run_dir: Path, am: dict[tuple[str, int], Path], seed: int) -> Path | None:
    """Write rating.html and rating_key.csv for every AM image (None when the run made none)."""
    if not am:
        return None
    entries = sorted(am.items())
    order = np.random.default_rng(seed % 2**32).permutation(len(entries))
    width = max(3, len(str(len(entries))))
    shuffled = [(f"img{position + 1:0{width}d}", *entries[index]) for position, index in enumerate(order)]
    key_rows = [
        [image_id, layer, unit, path.relative_to(run_dir).as_posix()] for image_id, (layer, unit), path in shuffled
    ]
    page = hashlib.sha256(json.dumps(key_rows).encode()).hexdigest()[:12]
    with atomic.atomic_file(run_dir / KEY_FILE, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(KEY_COLUMNS)
        writer.writerows(row + [page] for row in key_rows)
    images = [
        {"id": image_id, "src": "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")}
        for image_id, _, path in shuffled
    ]
    payload = json.dumps({"page": page, "images": images}).replace("</", "<\\/")
    path = run_dir / PAGE_FILE
    atomic.write_text(path, TEMPLATE.replace("__DATA__", payload))
    return path


TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Image rating</title>
<style>
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:760px;
padding:16px;color:#222;text-align:center}
#image{width:384px;height:384px;object-fit:contain;image-rendering:pixelated;border:1px solid #ccc;background:#fafafa}
button{font-size:15px;margin:4px;padding:6px 14px;cursor:pointer}button.chosen{outline:3px solid #1f77b4}
input[type=text]{font-size:15px;padding:5px}#description{width:70%}#rater{width:12em}.help{color:#555;font-size:13px}
#done{display:none}#counter{font-weight:bold}
</style></head><body>
<h1>Does this image show an object?</h1>
<p class="help">Keys: <b>y</b> yes, <b>n</b> no, <b>u</b> unsure (then the next image);
<b>&larr;</b> back, <b>&rarr;</b> skip, <b>/</b> type what you see (<b>Enter</b> to return to the keys).</p>
<p><label>Your name or initials (optional): <input type="text" id="rater" size="12"></label></p>
<div id="rating">
<p id="counter"></p>
<img id="image" alt="image to rate">
<p><input type="text" id="description" placeholder="What do you see? (optional)"></p>
<p><button id="yes" data-rating="yes">y: object, yes</button><button id="no" data-rating="no">n: no</button>
<button id="unsure" data-rating="unsure">u: unsure</button></p>
</div>
<div id="done"><p>All images are rated. Thank you! Download the ratings and send the file back.</p></div>
<p><a id="download" href="#" download="ratings.csv">Download ratings.csv</a> <span id="progress" class="help"></span></p>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const images = data.images;
const storeKey = "selectivity-eval-ratings-" + data.page;
let ratings = {};
let index = 0;
try { ratings = JSON.parse(window.localStorage.getItem(storeKey) || "{}"); } catch (e) { ratings = {}; }
const el = (id) => document.getElementById(id);
function save() {
  try { window.localStorage.setItem(storeKey, JSON.stringify(ratings)); } catch (e) { /* storage off: keep in memory */ }
}
function show() {
  const rated = images.filter((image) => ratings[image.id]).length;
  el("progress").textContent = rated + " of " + images.length + " rated";
  const done = index >= images.length;
  el("rating").style.display = done ? "none" : "block";
  el("done").style.display = done ? "block" : "none";
  if (done) { return; }
  const image = images[index];
  const answer = ratings[image.id];
  el("counter").textContent = "Image " + (index + 1) + " of " + images.length;
  el("image").src = image.src;
  el("description").value = answer ? answer.description : "";
  for (const name of ["yes", "no", "unsure"]) {
    el(name).classList.toggle("chosen", Boolean(answer && answer.rating === name));
  }
}
function rate(value) {
  if (index >= images.length) { return; }
  ratings[images[index].id] = {rating: value, description: el("description").value.trim()};
  save();
  index += 1;
  show();
}
function move(step) {
  index = Math.max(0, Math.min(images.length, index + step));
  show();
}
function quote(text) {
  text = String(text);
  return /[",\\r\\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}
function ratingsCsv() {
  const rater = el("rater").value.trim();
  const lines = ["image_id,rating,description,rater,page"];
  for (const image of images) {
    const answer = ratings[image.id];
    if (answer) {
      lines.push([image.id, answer.rating, answer.description, rater, data.page].map(quote).join(","));
    }
  }
  return lines.join("\\r\\n") + "\\r\\n";
}
window.ratingsCsv = ratingsCsv;
const keys = {y: "yes", n: "no", u: "unsure"};
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) { return; }
  if (event.target instanceof HTMLInputElement) {
    if (event.key === "Enter" || event.key === "Escape") { event.target.blur(); event.preventDefault(); }
    return;
  }
  const key = event.key.toLowerCase();
  if (keys[key]) { rate(keys[key]); }
  else if (event.key === "ArrowLeft" || event.key === "Backspace") { move(-1); }
  else if (event.key === "ArrowRight") { move(1); }
  else if (event.key === "/") { el("description").focus(); }
  else { return; }
  event.preventDefault();
});
for (const name of ["yes", "no", "unsure"]) {
  el(name).addEventListener("click", () => rate(name));
}
el("download").addEventListener("click", () => {
  el("download").href = URL.createObjectURL(new Blob([ratingsCsv()], {type: "text/csv"}));
});
while (index < images.length && ratings[images[index].id]) { index += 1; }
show();
</script>
</body></html>
"""
