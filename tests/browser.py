"""Headless Chromium driven through Selenium and the system's chromedriver (nothing is downloaded).

CI installs Debian's ``chromium`` and ``chromium-driver`` (see .ci/run). Selenium Manager is never
asked for a driver: the chromedriver path goes in through ``Service``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1600",
]


def find(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium(profile: Path, downloads: Path):
    """A headless Chromium WebDriver that logs the browser console; the caller quits it."""
    from selenium import webdriver  # the `test` extra; a missing one fails the test rather than skipping it
    from selenium.webdriver.chrome.service import Service

    browser, driver = find("chromium", "chromium-browser"), find("chromedriver")
    if browser is None or driver is None:
        pytest.fail("Chromium and chromedriver are needed: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def console_errors(driver) -> list[str]:
    """The browser console's messages at level SEVERE since the last call (page errors, failed loads)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot_is_blank(png: bytes) -> bool:
    """True when the screenshot is one flat colour."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)
    return int(pixels.max() - pixels.min()) < 10 or float(pixels.std()) < 1.0
