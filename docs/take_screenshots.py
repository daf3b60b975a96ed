"""Takes docs/screenshot-empty.png and docs/screenshot-answer.png from the real page in headless Chromium.

    .venv/bin/python docs/take_screenshots.py

Builds a private index of seeds/ in a temporary folder (the real one is not touched), serves the app on a free
loopback port, and drives Debian's chromium + chromedriver (`make browser` installs them).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.web.browser import chromium, missing_browser, serve, set_viewport  # noqa: E402

QUESTION = "Quận Đống Đa thu ngân sách năm 2020 được bao nhiêu?"


def main() -> int:
    if reason := missing_browser():
        print(f"cannot take screenshots: {reason}", file=sys.stderr)
        return 1
    from qa.api import create_app
    from qa.config import DEFAULT_MODEL, Settings
    from qa.encoders.materialize import materialize
    from qa.service import Service

    model_dir = materialize(REPO / "embeddings" / "models" / DEFAULT_MODEL)
    with tempfile.TemporaryDirectory(prefix="qa-shots-") as data:
        settings = Settings(data_dir=Path(data), models_dir=model_dir.parent, seeds=REPO / "seeds")
        service = Service.load(settings)
        try:
            with serve(create_app(service=service)) as base, chromium(1200, 900) as driver:
                driver.get(base + "/")
                WebDriverWait(driver, 10).until(EC.visibility_of_element_located((By.ID, "empty-state")))
                driver.save_screenshot(str(REPO / "docs" / "screenshot-empty.png"))

                box = driver.find_element(By.ID, "question")
                box.send_keys(QUESTION, Keys.ENTER)
                WebDriverWait(driver, 60).until(  # the reply (the answer sentence) and its sources are in
                    lambda d: (
                        d.find_elements(By.CSS_SELECTOR, ".turn .reply .reply-text")
                        and d.find_elements(By.CSS_SELECTOR, ".turn .card .answer-mark")
                        and d.find_element(By.ID, "ask-form").get_attribute("aria-busy") == "false"
                    )
                )
                driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0);")
                driver.save_screenshot(str(REPO / "docs" / "screenshot-answer.png"))
                if len(sys.argv) > 1:  # a phone-sized look for review, not committed: take_screenshots.py DIR
                    set_viewport(driver, 375, 812, mobile=True)
                    driver.execute_script("document.querySelector('#filters').open = true; window.scrollTo(0, 0);")
                    driver.save_screenshot(str(Path(sys.argv[1]) / "screenshot-375.png"))
                    driver.execute_script("window.scrollTo(0, document.body.scrollHeight);")
                    driver.save_screenshot(str(Path(sys.argv[1]) / "screenshot-375-bottom.png"))
        finally:
            service.close()
    print("wrote docs/screenshot-empty.png and docs/screenshot-answer.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
