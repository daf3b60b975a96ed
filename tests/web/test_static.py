"""The page's files as served: strict CSP, no inline code, Vietnamese, labelled inputs (no browser needed)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from qa.api import create_app


@pytest.fixture(scope="module")
def client():
    # No `with`: the lifespan (model + index) is not needed to serve static files.
    return TestClient(create_app())


@pytest.mark.parametrize(
    ("path", "media_type"),
    [("/", "text/html"), ("/static/app.js", "text/javascript"), ("/static/app.css", "text/css")],
)
def test_files_are_served_with_a_strict_csp(client, path, media_type):
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith(media_type)
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "object-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        if self.tags and self.tags[-1][0] == "script" and data.strip():
            self.inline_script = True


def test_page_has_no_inline_code_and_labels_every_input(client):
    page = _Page()
    page.feed(client.get("/").text)
    tags = page.tags
    assert tags[0] == ("html", {"lang": "vi"})
    assert not page.inline_script
    assert not any(tag == "style" for tag, _ in tags)
    assert not any("style" in attrs or any(a.startswith("on") for a in attrs) for _, attrs in tags)
    assert all(attrs.get("src", "").startswith("/static/") for tag, attrs in tags if tag == "script")
    labelled = {attrs.get("for") for tag, attrs in tags if tag == "label"}
    fields = [attrs["id"] for tag, attrs in tags if tag in ("input", "textarea", "select")]
    assert fields and all(f in labelled for f in fields)


def test_script_never_inserts_html():
    from qa.api.routes.web import WEB_DIR

    script = (WEB_DIR / "app.js").read_text(encoding="utf-8")
    assert script.lstrip().startswith("//") and "'use strict';" in script
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function", script)
