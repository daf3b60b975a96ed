"""Headless Chromium (Debian's chromium + chromedriver, driven by Selenium), and `serve`: the tests' real uvicorn
server on loopback (`tests.servers.live_server`).

Shared by the browser tests and docs/take_screenshots.py. Nothing here downloads a browser or a driver.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tests.servers import live_server as serve

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

__all__ = ["chromium", "missing_browser", "serve", "set_viewport"]

CHROMIUM = Path(os.environ.get("QA_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("QA_CHROMEDRIVER", "/usr/bin/chromedriver"))

# As root in a sandbox with no network: no setuid sandbox, no GPU, and no background calls to Google's hosts.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--lang=vi-VN",
)


def missing_browser() -> str | None:
    """Why the browser can't run here, or None when it can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install -e '.[dev]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is missing (make browser, or apt-get install chromium chromium-driver)"
    return None


@contextmanager
def chromium(width: int = 1200, height: int = 900) -> Iterator[WebDriver]:
    """A fresh headless Chromium with its own empty profile, closed (and the profile removed) on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="qa-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        set_viewport(driver, width, height)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def set_viewport(driver: WebDriver, width: int, height: int, *, mobile: bool = False) -> None:
    """Exact CSS-pixel viewport (window sizes in headless mode include no chrome, but be exact anyway)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )
