"""report.html and rating.html in headless Chromium; the rating page's CSV merged back with `ratings`."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from selectivity_eval.core.cli.app import app
from selectivity_eval.core.report.ratings import compare

from .browser import chromium, console_errors, screenshot_is_blank

@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    root = tmp_path_factory.mktemp("chromium")
    driver = chromium(root / "profile", root / "downloads")
    driver.downloads = root / "downloads"
    driver.screenshots = root
    yield driver
    driver.quit()


def keep(browser, name: str, png: bytes) -> None:
    """Keep the screenshot beside the browser's profile, for a person to look at."""
    (browser.screenshots / name).write_bytes(png)


def test_report_loads_in_chromium_without_console_errors(report_run, browser):
    run_dir, _ = report_run
    browser.get((run_dir / "report.html").as_uri())
    assert browser.title.startswith("Selectivity report")
    loaded = browser.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"
    )
    assert loaded and all(ok for _, ok in loaded), [src for src, ok in loaded if not ok]
    png = browser.get_screenshot_as_png()
    keep(browser, "report.png", png)
    assert not screenshot_is_blank(png)
    assert console_errors(browser) == []


def key_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "rating_key.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_rating_page_hides_units_and_records_keypresses_as_csv(report_run, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    run_dir, _ = report_run
    page = (run_dir / "rating.html").read_text()
    key = key_rows(run_dir)
    assert len(key) == 6  # fc1 and fc2, three AM images each
    shown = [(row["layer"], int(row["unit"])) for row in key]
    assert shown != sorted(shown) and sorted(shown) == sorted(set(shown))  # shuffled, each image once
    text_only = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert "fc1" not in text_only and "fc2" not in text_only and "am/" not in text_only and "unit" not in text_only

    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(browser.downloads)})
    browser.get((run_dir / "rating.html").as_uri())
    png = browser.get_screenshot_as_png()
    keep(browser, "rating.png", png)
    assert not screenshot_is_blank(png)
    assert browser.find_element(By.ID, "counter").text == "Image 1 of 6"
    body = browser.find_element(By.TAG_NAME, "body")
    browser.find_element(By.ID, "rater").send_keys("ab", Keys.ENTER)
    body.send_keys("y")
    body.send_keys("/")
    browser.switch_to.active_element.send_keys('a "four", maybe', Keys.ENTER)
    body.send_keys("n")
    body.send_keys("u")
    body.send_keys(Keys.ARROW_LEFT)  # back to the third image, and change its answer
    body.send_keys("y")
    assert browser.find_element(By.ID, "counter").text == "Image 4 of 6"
    text = browser.execute_script("return window.ratingsCsv();")
    rows = list(csv.DictReader(io.StringIO(text)))
    ids = [row["image_id"] for row in key]
    assert [(r["image_id"], r["rating"], r["description"], r["rater"]) for r in rows] == [
        (ids[0], "yes", "", "ab"), (ids[1], "no", 'a "four", maybe', "ab"), (ids[2], "yes", "", "ab")
    ]
    assert {r["page"] for r in rows} == {key[0]["page"]}

    browser.find_element(By.ID, "download").click()
    downloaded = browser.downloads / "ratings.csv"
    for _ in range(50):
        if downloaded.is_file():
            break
        time.sleep(0.1)
    assert downloaded.read_bytes().decode() == text
    assert console_errors(browser) == []

    copy = shutil.copytree(run_dir, tmp_path / "run")  # the shared run stays without ratings
    result = CliRunner().invoke(app, ["ratings", str(copy), str(downloaded)])
    assert result.exit_code == 0, result.output
    merged = list(csv.DictReader((copy / "ratings_merged.csv").open(newline="")))
    assert [(r["image_id"], r["rating"], r["interpretable"]) for r in merged] == [
        (ids[0], "yes", "true"), (ids[1], "no", "false"), (ids[2], "yes", "true")
    ]
    assert merged[0]["layer"] == key[0]["layer"] and merged[0]["unit"] == key[0]["unit"]
    summary = json.loads((copy / "ratings.json").read_text())
    assert summary["all_layers"]["n_images"] == 3 and summary["all_layers"]["n_interpretable"] == 2
    assert set(summary["all_layers"]["measures"]) == {"localist", "precision", "ccmas", "topclass"}
    assert "Interpretable AM images by layer" in result.output and "Selectivity of interpretable vs other" in result.output


def write_ratings(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([["image_id", "rating", "description", "rater"], *rows])
    return path


def test_malformed_ratings_exit_2_naming_each_bad_row(report_run, tmp_path):
    run_dir, _ = report_run
    ids = [row["image_id"] for row in key_rows(run_dir)]
    bad = write_ratings(tmp_path / "bad.csv", [[ids[0], "yes", "", ""], ["img999", "no", "", ""], [ids[1], "maybe", "", ""]])
    result = CliRunner().invoke(app, ["ratings", str(run_dir), str(bad)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "line 3: unknown image id 'img999'" in message
    assert "line 4: rating 'maybe' is not yes, no or unsure" in message
    twice = write_ratings(tmp_path / "twice.csv", [[ids[0], "yes", "", "x"], [ids[0], "no", "", "x"]])
    result = CliRunner().invoke(app, ["ratings", str(run_dir), str(twice)])
    assert result.exit_code == 2 and "rated again" in result.output
    headless = tmp_path / "headless.csv"
    headless.write_text("id,answer\nimg001,yes\n")
    result = CliRunner().invoke(app, ["ratings", str(run_dir), str(headless)])
    assert result.exit_code == 2 and "image_id" in result.output


def test_interpretable_vs_other_statistics_match_scipy():
    from scipy.stats import mannwhitneyu, pointbiserialr

    flags = np.array([True, True, False, False, False, True])
    values = np.array([0.9, 0.7, 0.2, np.nan, 0.4, 0.8])
    out = compare(flags, values)
    keep = ~np.isnan(values)
    assert out["mean_interpretable"] == pytest.approx(0.8) and out["mean_other"] == pytest.approx(0.3)
    u = mannwhitneyu(values[keep][flags[keep]], values[keep][~flags[keep]], alternative="two-sided")
    assert out["mann_whitney_u"] == u.statistic and out["mann_whitney_p"] == pytest.approx(u.pvalue)
    assert out["point_biserial_r"] == pytest.approx(pointbiserialr(flags[keep], values[keep]).statistic)
    assert compare(np.array([True, True]), np.array([1.0, 2.0]))["mann_whitney_u"] is None
