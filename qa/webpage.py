"""HTML news pages → what trafilatura reads in them: main text, title, date, author and site name.

`qa.corpus` cleans the text with the rules it applies to scraped .txt pages and reads the Vietnamese date lines.
trafilatura belongs to the server install and is imported on first use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = ["Page", "extract_page"]

logger = logging.getLogger(__name__)

# htmldate reads the publication time from the page's markup (meta tags, JSON-LD, <time>, the URL) with its
# offset. Its free-text search is off: it takes dates printed anywhere on the page and keeps no time of day from
# them. Even so, on a page without metadata it may take the header's "today" for the publication date, so
# qa.corpus prefers the Vietnamese date line beside the headline (`Page.headline_lines`).
_DATE_PARAMS = {"original_date": True, "extensive_search": False, "outputformat": "%Y-%m-%dT%H:%M:%S%z"}
# A date line is a short block of its own ("Thứ Ba, ngày 12/04/2019 08:15"); longer blocks are prose.
_LINE_MAX_CHARS = 80
# Elements either side of the headline looked at: a date line sits within a few dozen of it, and a long page's
# thousands of blocks further away need not be read.
_WINDOW = 200
_NOT_TEXT = frozenset({"head", "title", "script", "style", "noscript", "template"})


@dataclass(frozen=True, slots=True)
class Page:
    """What trafilatura found in one page; any field but `text` may be missing."""

    text: str  # the main text, one paragraph per line
    title: str | None
    date: str | None  # ISO 8601, from the page's markup
    author: str | None
    site_name: str | None
    url: str | None
    headline_lines: tuple[str, ...]  # the page's short text blocks, the nearest to the headline first


def _trafilatura() -> ModuleType:
    try:
        import trafilatura
    except ModuleNotFoundError as exc:
        message = "reading HTML pages needs trafilatura: pip install 'viqa[server]'"
        raise ModuleNotFoundError(message, name="trafilatura") from exc
    return trafilatura


def _text(element: Any) -> str:
    return " ".join(" ".join(element.itertext()).split())


def _short_text(element: Any) -> str | None:
    """The element's text if it is a short block; stops reading as soon as it cannot be (a page's <body>)."""
    pieces, size = [], 0
    for piece in element.itertext():
        size += len(piece.strip())
        if size > _LINE_MAX_CHARS:
            return None
        pieces.append(piece)
    return " ".join(" ".join(pieces).split()) or None


def _headline_lines(tree: Any, title: str | None) -> tuple[str, ...]:
    """Short text blocks ordered by their distance (in document order) from the headline: a news page prints
    its date line beside the headline, while dates elsewhere (today's date in the header, comment times,
    related links) are further away. Empty when the page has no <h1> or heading holding the title."""
    elements = [e for e in tree.iter() if isinstance(e.tag, str)]  # comments and processing instructions: no tag
    headings = [i for i, e in enumerate(elements) if e.tag in ("h1", "h2", "h3")]
    wanted = " ".join(title.split()).casefold() if title else None
    anchor = next((i for i in headings if _text(elements[i]).casefold() == wanted), None)
    if anchor is None:
        anchor = next((i for i in headings if elements[i].tag == "h1"), None)
    if anchor is None:
        return ()
    hidden = {id(d) for e in elements if e.tag in _NOT_TEXT for d in e.iter()}
    window = range(max(0, anchor - _WINDOW), min(len(elements), anchor + _WINDOW + 1))
    # At equal distance, the block below the headline first.
    near = sorted((i for i in window if i != anchor), key=lambda i: (abs(i - anchor), i < anchor))
    texts = (_short_text(elements[i]) for i in near if id(elements[i]) not in hidden)
    return tuple(dict.fromkeys(text for text in texts if text))


def extract_page(html: str | bytes, url: str | None = None) -> Page | None:
    """Read one HTML page (bytes: its declared or detected encoding); None when it holds no main text."""
    trafilatura = _trafilatura()
    from trafilatura.utils import load_html

    tree = load_html(html)
    if tree is None:
        return None
    document = trafilatura.bare_extraction(
        tree,
        url=url,
        with_metadata=True,
        include_comments=False,
        include_images=False,
        date_extraction_params={**_DATE_PARAMS},
    )
    if document is None or not document.text or not document.text.strip():
        logger.debug("no main text found in the page (url %s)", url)
        return None
    return Page(
        text=document.text,
        title=document.title or None,
        date=document.date or None,
        author=document.author or None,
        site_name=document.sitename or None,
        url=url or document.url,  # the address the page was fetched from, else its canonical one
        headline_lines=_headline_lines(tree, document.title),
    )
