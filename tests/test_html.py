"""HTML news pages → `Article`: trafilatura's extraction (qa.webpage) cleaned by qa.corpus's rules.

The pages under tests/fixtures/html are written for these tests in the shapes of Vietnamese news sites; each test
asserts exactly what is kept (title, date in Vietnam time, source, author, body) and that the page debris is not.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import pytest

from qa.corpus import ArticleError, article_from_record, parse_html, read_articles
from qa.domain import Article

PAGES = Path(__file__).resolve().parent / "fixtures" / "html"


def _page(name: str) -> Article:
    return next(read_articles([PAGES / f"{name}.html"]))


class Expected(NamedTuple):
    title: str
    published_at: datetime  # Vietnam time
    source: str | None
    author: str | None
    url: str | None
    debris: str  # "|"-separated page text that must survive in neither title nor body


# One page per shape of Vietnamese news page; the body it must give, exactly, is in bodies/<name>.txt (a folder of
# its own, so that `qa index tests/fixtures/html` reads the pages only).
SHAPES = {
    # JSON-LD and OpenGraph metadata (JSON-LD's time in UTC); a menu with today's date, breadcrumb, share bars,
    # a lead without a final period under the headline (trafilatura keeps the <h1> in the text), a figure
    # caption, related links, comments with their form, and a footer with the outlet's address.
    "jsonld_opengraph": Expected(
        "Hà Nội mở thêm ba tuyến buýt điện nối các huyện ngoại thành",
        datetime(2019, 4, 11, 16, 37),
        "Tin Thủ Đô",
        "Lan Hương",
        "https://tinthudo.example.vn/giao-thong/ha-noi-mo-them-ba-tuyen-buyt-dien-4721.html",
        "Trang chủ|Văn hóa|Thứ Năm, 03/12/2026|Chia sẻ|Zalo|In bài|Xe buýt điện chạy thử|Ảnh: Minh Đức|Tin liên quan|"
        "Khởi công nhà ga|Ý kiến bạn đọc|Mong sớm có tuyến|Họ tên|Lan Hương|Hàng Ngang|©",
    ),
    # No metadata at all: the date line under the headline is the only date (htmldate keeps no time of it); the
    # "(LBO) -" lead and "Nguồn:" credit give the source, the signature the author; a "|" caption, tool bar,
    # related list, comment form and footer.
    "date_line_only": Expected(
        "Quận Long Biên trồng mới 5.000 cây xanh ven sông Đuống",
        datetime(2019, 4, 12, 8, 15),
        "LBO",
        "Minh Khang",
        None,
        "(LBO)|Thứ Ba|Lãnh đạo quận trồng cây|Minh Khang|Nguồn|In bài|bình luận|Tin cùng chuyên mục|"
        "Long Biên ra quân|Họ tên|Mã xác nhận|Vạn Hạnh|Trang chủ",
    ),
    # OpenGraph with title and site name only; the header prints today's date (htmldate takes it for the
    # publication date), the date line stands above the headline (04/11: 4 November); a caption in a table.
    "opengraph_date_above_headline": Expected(
        "Đà Nẵng rút ngắn thời gian cấp sổ đỏ còn 10 ngày",
        datetime(2019, 11, 4, 9, 30),
        "Thời báo Miền Trung",
        "Thu Trang",
        None,
        "3/12/2026|Đăng nhập|Bất động sản|Ảnh: Nguyễn Đông|một cửa quận Hải Châu|Thu Trang|Facebook|Xem thêm|"
        "bảng giá đất|Hoàng Minh|Bạch Đằng",
    ),
}


@pytest.mark.parametrize("name", SHAPES)
def test_page_shape(name: str) -> None:
    article, expected = _page(name), SHAPES[name]
    assert article.id == name
    assert (article.title, article.published_at) == (expected.title, expected.published_at)
    assert (article.source, article.author, article.url) == (expected.source, expected.author, expected.url)
    assert article.body == (PAGES / "bodies" / f"{name}.txt").read_text(encoding="utf-8").strip()
    for debris in expected.debris.split("|"):
        assert debris not in article.body and debris not in article.title, debris


class TestFilesAndRecords:
    def test_directory_reads_html_and_htm_by_stem_with_a_fingerprint_of_the_bytes(self, tmp_path: Path) -> None:
        shutil.copy(PAGES / "jsonld_opengraph.html", tmp_path / "b.html")
        shutil.copy(PAGES / "date_line_only.html", tmp_path / "a.htm")
        (tmp_path / "c.txt").write_text("Tiêu đề C\n\nNội dung C.", encoding="utf-8")
        articles = list(read_articles([tmp_path]))
        assert [a.id for a in articles] == ["a", "b", "c"]
        raw = (PAGES / "jsonld_opengraph.html").read_bytes()
        assert articles[1].fingerprint == hashlib.sha256(raw).hexdigest()
        assert articles[1] == replace(_page("jsonld_opengraph"), id="b")

    def test_text_and_bytes_read_alike(self) -> None:
        raw = (PAGES / "opengraph_date_above_headline.html").read_bytes()
        assert (
            parse_html(raw.decode("utf-8"), "x")
            == parse_html(raw, "x")
            == replace(_page("opengraph_date_above_headline"), id="x")
        )

    @pytest.mark.parametrize(
        ("html", "message"),
        [
            ("<html><body><script>var x = 1;</script></body></html>", "no article text found in the HTML"),
            ("<html><body><nav><a href='/'>Trang chủ</a></nav></body></html>", "no body text left"),
        ],
    )
    def test_page_without_text_is_an_error_naming_the_file(self, tmp_path: Path, html: str, message: str) -> None:
        path = tmp_path / "empty.html"
        path.write_text(html, encoding="utf-8")
        with pytest.raises(ArticleError, match=rf"empty\.html: article 'empty': {message}"):
            list(read_articles([path]))

    def test_record_with_html_takes_the_page_and_its_own_fields_win(self) -> None:
        html = (PAGES / "jsonld_opengraph.html").read_text(encoding="utf-8")
        page = _page("jsonld_opengraph")
        article = article_from_record({"id": "r", "html": html})
        assert article == replace(page, id="r", fingerprint=article.fingerprint)
        own = {"url": "https://mirror.example.vn/buyt-dien", "source": "TTĐ", "author": "Nhóm PV", "title": "Buýt điện"}
        mine = article_from_record({"id": "r", "html": html, **own, "published_at": "2019-04-13T07:00+07:00"})
        assert (mine.url, mine.source, mine.author, mine.title) == tuple(own.values())
        assert (mine.published_at, mine.body) == (datetime(2019, 4, 13, 7, 0), page.body)
        assert mine.fingerprint != article.fingerprint

    @pytest.mark.parametrize(
        ("record", "got"),
        [
            ({"id": "r", "title": "T", "body": "Nội dung.", "html": "<p>Nội dung.</p>"}, "both"),
            ({"id": "r", "title": "T"}, "neither"),
        ],
    )
    def test_record_needs_exactly_one_of_body_and_html(self, record: dict[str, str], got: str) -> None:
        with pytest.raises(ArticleError, match=rf"exactly one of 'body' .* or 'html' .*; got {got}"):
            article_from_record(record)


def test_without_trafilatura_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "trafilatura", None)  # what `import trafilatura` finds when it is not installed
    with pytest.raises(ModuleNotFoundError, match=r"needs trafilatura: pip install 'viqa\[server\]'") as caught:
        parse_html("<html><body><p>Nội dung.</p></body></html>", "x")
    assert caught.value.name == "trafilatura"  # `qa` prints its one line for a missing server package
