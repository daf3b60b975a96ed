"""Raw news articles (scraped .txt pages, HTML pages, JSONL/API records) → clean `Article`s.

Site debris (comment forms, related-article links, image captions, broken-encoding lines) is dropped;
title, date, source and author are lifted out of the page layout by general rules, not per-file ones. An HTML
page's main text and metadata come from trafilatura (`qa.webpage`); its text is then cleaned by the same rules.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from qa.dates import VIETNAM_TZ
from qa.domain import Article
from qa.files import JSONLError, read_jsonl
from qa.schemas import BODY_OR_HTML
from qa.text import canonical_tones, normalize
from qa.webpage import Page, extract_page

__all__ = [
    "ArticleError",
    "article_from_record",
    "parse_article",
    "parse_html",
    "parse_published_at",
    "read_articles",
]

logger = logging.getLogger(__name__)


class ArticleError(ValueError):
    """Bad article input; the message says which article/field and what to fix."""


# --- dates ------------------------------------------------------------------------------------------

_DATE = r"(?P<day>\d{1,2})[/.-](?P<month>\d{1,2})[/.-](?P<year>\d{4})"
_TIME = r"(?P<hour>\d{1,2})(?::|h|\s*giờ\s*)(?P<minute>\d{2})(?:\s*phút)?"
# Decorations seen around timestamps: "Thứ Năm, ", "Cập nhật lúc ", "ngày ", "lúc ", "(GMT+7)", brackets and
# bullets: "Thứ hai, 11/4/2019, 16:37 (GMT+7)", "Thứ Ba, ngày 12/04/2019 08:15", "08:15 ngày 12/04/2019".
_STAMP_PREFIX = (
    r"(?:(?:cập nhật|ngày đăng|đăng lúc|đăng ngày|xuất bản)(?:\s+lúc)?\s*:?\s*)?"
    r"(?:(?:thứ\s+(?:hai|ba|tư|năm|sáu|bảy|[2-7])|chủ\s+nhật|t[2-7]|cn)\s*[,-]?\s*)?"
)
_STAMP_SUFFIX = r"(?:\s*\(?\s*(?:GMT|UTC)\s*\+\s*0?7(?::?00)?\s*\)?)?"
_SEP = r"[\s,|\-–]*(?:lúc\s+)?"
_ON_DAY = r"(?:ngày\s+)?"
_STAMP_PATTERNS = tuple(
    re.compile(rf"{_STAMP_PREFIX}{body}{_STAMP_SUFFIX}", re.IGNORECASE)
    for body in (rf"{_ON_DAY}{_DATE}(?:{_SEP}{_TIME})?", rf"{_TIME}[\s,|\-–]*{_ON_DAY}{_DATE}")
)
_STAMP_TRIM = "()[]|•·*-–— "


def _parse_vietnamese_stamp(text: str) -> datetime | None:
    """ "14:02 09/07/2020", "11/04/2019 16:37", "15/01/2021" (with decorations) → datetime, else None."""
    stamp = text.strip(_STAMP_TRIM)
    for pattern in _STAMP_PATTERNS:
        match = pattern.fullmatch(stamp)
        if match is None:
            continue
        parts = match.groupdict()
        try:
            return datetime(
                int(parts["year"]),
                int(parts["month"]),
                int(parts["day"]),
                int(parts["hour"] or 0),
                int(parts["minute"] or 0),
            )
        except ValueError:
            return None  # looks like a stamp but is no real date (31/02/2020): not a date line
    return None


def _to_local_minute(value: datetime) -> datetime:
    if value.tzinfo is not None:
        value = value.astimezone(VIETNAM_TZ).replace(tzinfo=None)
    return value.replace(second=0, microsecond=0)


def parse_published_at(value: str | datetime) -> datetime | None:
    """ISO 8601 or a Vietnamese stamp → naive Vietnam local time at minute precision; None if unrecognised.

    Aware ISO times are converted to UTC+7; naive ones are taken as already local.
    """
    if isinstance(value, datetime):
        return _to_local_minute(value)
    text = value.strip()
    try:
        return _to_local_minute(datetime.fromisoformat(text))
    except ValueError:
        pass
    stamp = _parse_vietnamese_stamp(text)
    return None if stamp is None else _to_local_minute(stamp)


# --- line classifiers (each looks at one normalised line) ------------------------------------------

_BULLET = re.compile(r"^[•·▪►*]\s*")
# Page chrome that follows the article: everything from the first such line on is dropped.
_FOOTER_MARKERS = frozenset(
    {
        "tin cùng chuyên mục",
        "các bài mới đăng",
        "các bài đã đăng",
        "bài viết xem",
        "viết bình luận",
        "gửi bình luận",
        "ý kiến bạn đọc",
        "bình luận của bạn",
        "tin liên quan",
        "bài liên quan",
        "tin khác",
        "tin mới nhất",
        "xem thêm",
    }
)
# Share/print/comment widgets, anywhere they appear as a line of their own.
_UI_LINE = re.compile(
    r"^(?:\d+\s+bình luận|bình luận\s*\(\d+\)|in bài|bản in|chia sẻ|gửi bài|lưu bài|"
    r"gửi email|phản hồi|facebook|twitter|zalo|email|print)$",
    re.IGNORECASE,
)
# Comment-form fields: "Họ tên:(*)", "Số điện thoại:", "Mã xác nhận: … Lấy lại mã bảo mật".
_FORM_FIELD = re.compile(
    r"^(?:[^\W\d_][^:]{0,30}:\s*\(\*\)|(?:họ tên|họ và tên|số điện thoại|email|địa chỉ|tiêu đề|nội dung)"
    r"\s*:\s*(?:\(\*\))?|mã xác nhận\s*:.*|lấy lại mã bảo mật)$",
    re.IGNORECASE,
)
_CREDIT = re.compile(r"^nguồn\s*:\s*(?P<source>.{0,60})$", re.IGNORECASE)
_CAPTION_BAR = re.compile(r"\s\|$|^\|$")  # "Toàn cảnh hội nghị |": the site's caption style
_PHOTO_CREDIT = re.compile(r"^\(?\s*ảnh(?:\s+minh\s+họa)?\s*:[^.]{0,80}\)?$", re.IGNORECASE)
_PHOTO_INDEX = re.compile(r"^\s*(?:ảnh|hình|photo)\s*\d+", re.IGNORECASE)
# Marks that end a real prose paragraph; headlines, captions and link lists end without one.
_TERMINAL = ".!?…;:\"”'’»"
_INTERNAL_SENTENCE_END = re.compile(r"[.!?…][\"”’»)]*\s+[\"“(]?[0-9A-ZÀ-ỸĐ]")
_BROKEN_IN_WORD = re.compile(r"(?<=\w)\?(?=\w)")

_SUBHEADING_MAX_WORDS = 30  # longer unpunctuated lines are runs of related-article headlines
_CAPTION_MAX_WORDS = 40
_LEADING_NOISE_MAX_CHARS = 2  # stray letters before the title ("M" from a logo)


def _casefold_key(text: str) -> str:
    """Comparison key: tone placement and case do not make lines different."""
    return canonical_tones(text).casefold().strip()


def _is_footer_marker(line: str) -> bool:
    return line.rstrip(" :").casefold() in _FOOTER_MARKERS


def _is_terminated(line: str) -> bool:
    return line.endswith(tuple(_TERMINAL))


def _is_broken_encoding(line: str) -> bool:
    """Mostly U+FFFD or "?" inside words ("L?y l?i m� b?o m?t"); one glitch in a paragraph is kept."""
    damage = line.count("\ufffd") + len(_BROKEN_IN_WORD.findall(line))
    return damage > 0 and damage >= 0.25 * len(line.split())


def _is_ui_debris(line: str) -> bool:
    return bool(_UI_LINE.match(line) or _FORM_FIELD.match(line) or not any(c.isalnum() for c in line))


def _looks_like_name(line: str) -> bool:
    """A signature: ≤ 4 capitalised words ("H. Hạnh", "X.Sinh", "Duy Tiến", "Nhóm PV")."""
    words = line.split()
    if not 1 <= len(words) <= 4 or len(line) > 40:
        return False
    pieces = [piece for word in words for piece in word.split(".") if piece]
    if not pieces or not line.replace(".", "").replace(" ", "").isalpha():
        return False
    return all(
        piece[0].isupper() and (piece[1:].islower() or piece[1:] == "" or (piece.isupper() and len(piece) <= 4))
        for piece in pieces
    )


def _is_uppercase_token(token: str) -> bool:
    """A press-agency tag: "HNP", "LĐTĐ", "ANTD.VN", "VOV.VN", "TTXVN"."""
    letters = [c for c in token if c.isalpha()]
    return (
        2 <= len(token) <= 12
        and len(letters) >= 2
        and all(c.isupper() for c in letters)
        and all(c.isalnum() or c == "." for c in token)
    )


def _looks_like_outlet(text: str) -> bool:
    """A mixed-case outlet name in brackets: "Dân trí", "VnExpress", "Thanh Niên" (≤ 3 words)."""
    words = text.split()
    return 1 <= len(words) <= 3 and text[0].isupper() and all(w.replace(".", "").isalpha() for w in words)


_SOURCE_BARE = re.compile(r"^(?P<source>\S{2,12})\s*[-–—]\s+(?=\S)")
_SOURCE_PAREN = re.compile(r"^\((?P<source>[^()\n]{2,20})\)\s*(?P<dash>[-–—]\s*)?(?=\S)")


def _split_source_lead(paragraph: str) -> tuple[str | None, str]:
    """ "HNP - Ngày 8/7…", "(LĐTĐ) Sáng nay…", "(Dân trí) - …" → (source, paragraph without it)."""
    match = _SOURCE_BARE.match(paragraph)
    if match and _is_uppercase_token(match["source"]):
        return match["source"], paragraph[match.end() :]
    match = _SOURCE_PAREN.match(paragraph)
    if match:
        source = match["source"].strip()
        # A dash after the brackets marks a source even when it is spelled in mixed case.
        if _is_uppercase_token(source) or (match["dash"] and _looks_like_outlet(source)):
            return source, paragraph[match.end() :]
    return None, paragraph


# --- parse_article ----------------------------------------------------------------------------------

_TITLE_STAMP = re.compile(r"^(?P<title>.*\S)\s*\((?P<stamp>[^()]*\d[^()]*)\)$")


@dataclass(slots=True)
class _Header:
    title: str
    published_at: datetime | None
    author: str | None
    body_start: int  # index of the first body line


def _parse_header(lines: list[str], article_id: str) -> _Header:
    """Title, then any date / bullet metadata lines before the body."""
    published_at: datetime | None = None
    author: str | None = None
    index = 0
    title: str | None = None
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line or len(line) <= _LEADING_NOISE_MAX_CHARS:
            continue
        stamp = _parse_vietnamese_stamp(line)
        if stamp is not None:
            published_at = published_at or stamp
            continue
        title = line
        break
    if title is None:
        raise ArticleError(f"article {article_id!r}: no title line found (the text is empty or only dates)")

    match = _TITLE_STAMP.match(title)
    if match and (stamp := _parse_vietnamese_stamp(match["stamp"])) is not None:
        title, published_at = match["title"], published_at or stamp

    # Metadata block: blank lines, timestamps, "• 0 bình luận", "• In bài", "• Duy Tiến".
    while index < len(lines):
        line = lines[index]
        bare = _BULLET.sub("", line)
        if not line:
            pass
        elif (stamp := _parse_vietnamese_stamp(bare)) is not None:
            published_at = published_at or stamp
        elif _is_ui_debris(bare):
            pass
        elif line != bare and _looks_like_name(bare):
            author = author or bare
        else:
            break
        index += 1
    return _Header(title=title, published_at=published_at, author=author, body_start=index)


def _drop_footer(lines: list[str]) -> list[str]:
    for index, line in enumerate(lines):
        if _is_footer_marker(line):
            logger.debug("footer from line %r: %d lines dropped", line, len(lines) - index)
            return lines[:index]
    return lines


def _split_trailer(lines: list[str]) -> tuple[list[str], str | None, str | None]:
    """Peel signature and credit lines off the end: (body lines, author, source credit)."""
    lines = list(lines)
    author: str | None = None
    credit: str | None = None

    def drop_tail_debris() -> None:
        nonlocal credit
        while lines:
            last = lines[-1]
            if not last or _is_ui_debris(last) or _is_broken_encoding(last):
                lines.pop()
            elif match := _CREDIT.match(last):
                credit = credit or (match["source"].strip() or None)
                lines.pop()
            else:
                break

    drop_tail_debris()
    if lines and _looks_like_name(lines[-1]):
        author = lines.pop()
        drop_tail_debris()
    return lines, author, credit


def _body_paragraphs(lines: list[str], title: str) -> list[str]:
    """Drop captions, repeated titles, link runs and widget lines; one paragraph per remaining line."""
    title_key = _casefold_key(title)
    long_title = len(title.split()) >= 4
    paragraphs: list[str] = []
    caption_follows = False  # the line attached under a repeated title is that image's caption
    for line in lines:
        if not line:
            caption_follows = False
            continue
        attached_caption = caption_follows
        caption_follows = False
        key = _casefold_key(line)
        if attached_caption and not _is_terminated(line) and len(line.split()) <= _CAPTION_MAX_WORDS:
            reason = "caption under a repeated title"
        elif key == title_key:
            caption_follows = True
            reason = "repeated title"
        elif long_title and key.startswith(title_key) and _PHOTO_INDEX.match(key[len(title_key) :]):
            reason = "photo caption led by the title"
        elif _CAPTION_BAR.search(line) or _PHOTO_CREDIT.match(line):
            reason = "image caption"
        elif _is_ui_debris(line) or _is_broken_encoding(line):
            reason = "page widget or broken encoding"
        elif (
            not _is_terminated(line)
            and len(line.split()) > _SUBHEADING_MAX_WORDS
            and not _INTERNAL_SENTENCE_END.search(line)
        ):
            reason = "run of related-article headlines"
        else:
            paragraphs.append(line)
            continue
        logger.debug("dropped (%s): %.80s", reason, line)
    return paragraphs


def _fingerprint(raw: str | bytes) -> str:
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def parse_article(raw: str, article_id: str) -> Article:
    """Parse one scraped article page (title line first) into a clean `Article`.

    Raises ArticleError when no title or no body text can be found.
    """
    _check_id(article_id)
    lines = normalize(raw).split("\n")
    header = _parse_header(lines, article_id)
    body_lines = _drop_footer(lines[header.body_start :])
    body_lines, author, credit = _split_trailer(body_lines)
    paragraphs = _body_paragraphs(body_lines, header.title)
    if not paragraphs:
        raise ArticleError(f"article {article_id!r}: no body text left after removing page debris")
    source, paragraphs[0] = _split_source_lead(paragraphs[0])
    return Article(
        id=article_id,
        title=header.title,
        body="\n\n".join(paragraphs),
        published_at=header.published_at,
        source=source or credit,
        author=header.author or author,
        fingerprint=_fingerprint(raw),
    )


# --- HTML pages -------------------------------------------------------------------------------------


def _headline_stamp(page: Page) -> datetime | None:
    """The Vietnamese date line printed nearest the headline, if any."""
    for line in page.headline_lines:
        if (stamp := _parse_vietnamese_stamp(line)) is not None:
            return _to_local_minute(stamp)
    return None


def parse_html(html: str | bytes, article_id: str, url: str | None = None) -> Article:
    """Parse one news page given as HTML (bytes: in its declared or detected encoding) into a clean `Article`.

    trafilatura finds the main text, title, date, author and site name; the text, headed by the title, is then
    cleaned as a scraped page is (`parse_article`). The date is the Vietnamese date line beside the headline,
    else one in the text's header, else the markup's (JSON-LD, OpenGraph, <time>); the source is the text's own
    lead or credit ("(TTXVN) -", "Nguồn: TTXVN"), else the site name; the author is the page's metadata, else the
    text's signature. The fingerprint is the SHA-256 of `html`. Raises ArticleError.
    """
    _check_id(article_id)
    page = extract_page(html, url)
    if page is None:
        raise ArticleError(f"article {article_id!r}: no article text found in the HTML")
    first_line = normalize(page.text).lstrip().split("\n", 1)[0]
    # A page whose text keeps its <h1> already starts with the title; heading it again would make the title a
    # "repeated title" in the body, and the line under it (an unpunctuated lead) its caption.
    starts_with_title = page.title is None or _casefold_key(first_line) == _casefold_key(normalize(page.title))
    article = parse_article(page.text if starts_with_title else f"{page.title}\n\n{page.text}", article_id)
    markup_date = parse_published_at(page.date) if page.date else None
    return replace(
        article,
        published_at=_headline_stamp(page) or article.published_at or markup_date,
        source=article.source or page.site_name,
        author=page.author or article.author,
        url=page.url,
        fingerprint=_fingerprint(html),
    )


# --- records ----------------------------------------------------------------------------------------

_ID_FORBIDDEN = re.compile(r"[\s/\\]")
_RECORD_TEXT_FIELDS = ("source", "author", "url")


def _check_id(article_id: object) -> str:
    # Ids end up in passage ids, URLs and file names: no whitespace or path separators.
    if not isinstance(article_id, str) or not article_id.strip():
        raise ArticleError(f"field 'id': expected a non-empty string, got {article_id!r}")
    if _ID_FORBIDDEN.search(article_id) or len(article_id) > 200:
        raise ArticleError(f"field 'id': {article_id!r} must be ≤ 200 characters without whitespace, '/' or '\\'")
    return article_id


def _required_text(record: Mapping[str, object], field: str) -> str:
    value = record.get(field)
    if not isinstance(value, str):
        raise ArticleError(f"field {field!r}: expected a string, got {type(value).__name__}")
    text = normalize(value).strip()
    if not text:
        raise ArticleError(f"field {field!r}: must not be empty")
    return text


def _optional_text(record: Mapping[str, object], field: str) -> str | None:
    value = record.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ArticleError(f"field {field!r}: expected a string or null, got {type(value).__name__}")
    return " ".join(normalize(value).split()) or None


def _record_published_at(record: Mapping[str, object]) -> datetime | None:
    value = record.get("published_at")
    if value is None or value == "":
        return None
    if not isinstance(value, str | datetime):
        raise ArticleError(f"field 'published_at': expected a string, got {type(value).__name__}")
    parsed = parse_published_at(value)
    if parsed is None:
        raise ArticleError(
            f"field 'published_at': {value!r} is not a date; use ISO 8601 (2020-07-09T14:02:00+07:00) "
            "or dd/mm/yyyy [HH:MM]"
        )
    return parsed


def _record_fingerprint(record: Mapping[str, object]) -> str:
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return _fingerprint(canonical)


def _record_text(record: Mapping[str, object]) -> tuple[str, str]:
    """Which of 'body' and 'html' the record gives, and its value: exactly one of them."""
    given = [field for field in ("body", "html") if record.get(field) is not None]
    if len(given) != 1:
        raise ArticleError(f"{BODY_OR_HTML}; got {'both' if given else 'neither'}")
    return given[0], _required_text(record, given[0])


def _article_from_html(record: Mapping[str, object], article_id: str, html: str) -> Article:
    # The page says what the record does not: a field the record gives wins over the page's.
    page = parse_html(html, article_id, url=_optional_text(record, "url"))
    title = _optional_text(record, "title")
    published_at = _record_published_at(record)
    source, author = _optional_text(record, "source"), _optional_text(record, "author")
    return replace(
        page,
        title=title or page.title,
        published_at=published_at or page.published_at,
        source=source or page.source,
        author=author or page.author,
    )


def article_from_record(record: Mapping[str, object]) -> Article:
    """A structured record {id, title, body, published_at?, source?, url?, author?} → `Article`; or one with the
    page's `html` instead of `body` (the title optional), read by `parse_html`.

    Records with a body are trusted to hold article text only (no page debris): the body is normalised and its
    paragraphs re-joined with blank lines. Unknown fields are ignored. Raises ArticleError.
    """
    if not isinstance(record, Mapping):
        raise ArticleError(f"expected an object with id, title and body (or html), got {type(record).__name__}")
    article_id = _check_id(record.get("id"))
    field, text = _record_text(record)
    if field == "html":
        article = _article_from_html(record, article_id, text)
    else:
        title = " ".join(_required_text(record, "title").split())
        source, author, url = (_optional_text(record, name) for name in _RECORD_TEXT_FIELDS)
        article = Article(
            id=article_id,
            title=title,
            body="\n\n".join(line for line in text.split("\n") if line),
            published_at=_record_published_at(record),
            source=source,
            author=author,
            url=url,
        )
    return replace(article, fingerprint=_record_fingerprint(record))


# --- files ------------------------------------------------------------------------------------------

_PAGE_SUFFIXES = (".txt", ".html", ".htm")  # one article per file, its id the file's stem
_SUFFIXES = (*_PAGE_SUFFIXES, ".jsonl")


def _read_text(path: Path) -> str:
    # Undecodable bytes become U+FFFD, which the broken-encoding rule then recognises.
    return path.read_text(encoding="utf-8", errors="replace")


def _read_jsonl(path: Path) -> Iterator[Article]:
    try:
        for line_number, record in read_jsonl(path):
            try:
                yield article_from_record(record)
            except ArticleError as error:
                raise ArticleError(f"{path}:{line_number}: {error}") from error
    except JSONLError as error:
        raise ArticleError(str(error)) from error


def _read_page(path: Path) -> Article:
    if path.suffix == ".txt":
        return parse_article(_read_text(path), path.stem)
    # Bytes: the page's own charset declaration (or detection) decides how it is decoded.
    return parse_html(path.read_bytes(), path.stem)


def _read_file(path: Path) -> Iterator[Article]:
    if path.suffix == ".jsonl":
        yield from _read_jsonl(path)
    elif path.suffix in _PAGE_SUFFIXES:
        try:
            yield _read_page(path)
        except ArticleError as error:
            raise ArticleError(f"{path}: {error}") from error
    else:
        raise ArticleError(f"{path}: unsupported file type {path.suffix!r}; expected .txt, .html, .htm or .jsonl")


def read_articles(paths: Iterable[str | Path]) -> Iterator[Article]:
    """Articles from .txt and .html/.htm pages (id = file stem), .jsonl files, and directories of them (sorted,
    flat)."""
    for item in paths:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _SUFFIXES)
            if not files:
                logger.warning("%s: no .txt, .html, .htm or .jsonl files", path)
            for file in files:
                yield from _read_file(file)
        elif path.is_file():
            yield from _read_file(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
