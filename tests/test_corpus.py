"""Tests for qa.corpus: seed parsing, debris removal, records and file reading."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import pytest

from qa.corpus import ArticleError, article_from_record, parse_article, read_articles
from qa.domain import Article

SEEDS = Path(__file__).resolve().parent.parent / "seeds"

TITLES = {
    "000_bfda8b1290abb0d5": "Tập trung chỉ đạo tổ chức thành công đại hội đảng bộ các cấp, Đại hội đại biểu lần thứ "
    "XVII Đảng bộ thành phố Hà Nội",
    "001_664a696c625e304a": "Hoàn thành tổ chức đại hội tổ chức cơ sở Đảng bảo đảm chất lượng, cơ bản xong trước "
    "ngày 15/6",
    "002_793d685470df229a": "Chủ tịch HĐND TP Hà Nội kiểm tra việc triển khai nghị quyết của Đảng tại quận Nam Từ Liêm",
    "003_0b6753d6958e9fca": "Đảng bộ quận Đống Đa lãnh đạo hiệu quả toàn diện các mặt công tác",
    "004_883b030afed6ad88": "Hà Nội kiện toàn Ban chỉ đạo về nâng cao năng lực, sức chiến đấu của tổ chức đảng",
}
# The byline each seed page carries: (published at, source, author); the third page has none.
BYLINES = {
    "000_bfda8b1290abb0d5": (datetime(2020, 7, 9, 14, 2), "HNP", "H. Hạnh"),
    "001_664a696c625e304a": (datetime(2020, 6, 14, 19, 43), "HNP", "H. Hạnh"),
    "002_793d685470df229a": (None, None, None),
    "003_0b6753d6958e9fca": (datetime(2021, 1, 15, 11, 53), "LĐTĐ", "X.Sinh"),
    "004_883b030afed6ad88": (datetime(2019, 4, 11, 16, 37), "ANTD.VN", "Duy Tiến"),
}
SEED_IDS = sorted(TITLES)

# Page chrome that must not survive in any body.
DEBRIS = [
    "Các bài mới đăng",
    "Các bài đã đăng",
    "Bài viết Xem",
    "Viết bình luận",
    "Họ tên:(*)",
    "Số điện thoại:",
    "Tiêu đề:(*)",
    "Nội dung:(*)",
    "Mã xác nhận",
    "Lấy lại mã bảo mật",
    "\ufffd",
    "L?y l?i",
    " |",
    "Nguồn :",
    "Tin cùng chuyên mục",
    "bình luận",
    "In bài",
    "ảnh 1",
]

KEY_SENTENCES = {
    "000_bfda8b1290abb0d5": [
        "Ngày 8/7, Thành ủy Hà Nội có Báo cáo số 695-BC/TU về kết quả thực hiện công tác xây dựng Đảng",
        "nhiệm vụ trọng tâm 6 tháng cuối năm 2020.",
    ],
    "001_664a696c625e304a": [
        "phấn đấu tổ chức đại hội xong trước ngày 15/8.",
        "Thực hiện nghiêm túc Kế hoạch số 199-KH/TU ngày 26/5/2020 của Thành ủy",
    ],
    "002_793d685470df229a": [
        "Đảng bộ quận hiện có 38 tổ chức cơ sở Đảng trực thuộc với 10.254 đảng viên.",
        "toàn quận thu được 1.392 tỷ đồng, đạt 21% dự toán.",
        "đồng chí Nguyễn Ngọc Tuấn nhấn mạnh.",
    ],
    "003_0b6753d6958e9fca": [
        "Ước thu ngân sách trên địa bàn quận cả năm 2020 đạt 11.085,046 tỷ đồng, đạt 100,52% dự toán giao.",
        "đại biểu Hội đồng nhân dân các cấp nhiệm kỳ 2021 – 2026;",
        "Quận uỷ Đống Đa đã tặng giấy khen 17 tổ chức cơ sở đảng",
    ],
    "004_883b030afed6ad88": [
        "Ủy viên Bộ Chính trị, Bí thư Thành ủy Hà Nội Hoàng Trung Hải chủ trì cuộc họp.",
        "tổng kết, sơ kết các nhiệm vụ, đề án.",
    ],
}


@pytest.fixture(scope="module")
def seeds() -> dict[str, Article]:
    return {article.id: article for article in read_articles([SEEDS])}


def paragraphs(article: Article) -> list[str]:
    return article.body.split("\n\n")


class TestSeeds:
    def test_all_seeds_read_in_name_order(self, seeds: dict[str, Article]) -> None:
        assert list(seeds) == SEED_IDS

    @pytest.mark.parametrize("article_id", SEED_IDS)
    def test_metadata(self, seeds: dict[str, Article], article_id: str) -> None:
        article = seeds[article_id]
        assert article.title == TITLES[article_id]
        assert (article.published_at, article.source, article.author) == BYLINES[article_id]
        assert article.url is None

    @pytest.mark.parametrize("article_id", SEED_IDS)
    def test_debris_absent(self, seeds: dict[str, Article], article_id: str) -> None:
        body = seeds[article_id].body
        for debris in DEBRIS:
            assert debris not in body, debris

    @pytest.mark.parametrize("article_id", SEED_IDS)
    def test_key_sentences_present(self, seeds: dict[str, Article], article_id: str) -> None:
        for sentence in KEY_SENTENCES[article_id]:
            assert sentence in seeds[article_id].body

    @pytest.mark.parametrize("article_id", SEED_IDS)
    def test_body_shape(self, seeds: dict[str, Article], article_id: str) -> None:
        article = seeds[article_id]
        assert article.body == article.body.strip()
        assert all(p and "\n" not in p for p in paragraphs(article))
        assert article.title not in paragraphs(article)
        assert article.author not in (article.body.splitlines() if article.author else [])

    def test_source_lead_removed_from_body_start(self, seeds: dict[str, Article]) -> None:
        assert seeds["000_bfda8b1290abb0d5"].body.startswith("Ngày 8/7, Thành ủy")
        assert seeds["001_664a696c625e304a"].body.startswith("Ngày 11/6, Thành ủy")
        assert seeds["003_0b6753d6958e9fca"].body.startswith("Sáng nay (15/1/2021), Đảng bộ quận Đống Đa")
        assert seeds["004_883b030afed6ad88"].body.startswith("Bí thư Thành ủy Hà Nội Hoàng Trung Hải cho biết")

    def test_002_captions_dropped_and_subheadings_kept(self, seeds: dict[str, Article]) -> None:
        article = seeds["002_793d685470df229a"]
        for caption in ("Toàn cảnh hội nghị", "Đại biểu phát biểu tại hội nghị", "Nguyễn Ngọc Tuấn phát biểu tại"):
            assert caption not in article.body
        assert paragraphs(article)[0] == (
            "Tập trung chỉ đạo toàn diện các lĩnh vực công tác gắn với các nhiệm vụ trọng tâm"
        )
        assert "Cần chuẩn bị kỹ lưỡng cho công tác bầu cử" in paragraphs(article)

    def test_003_repeated_titles_their_captions_and_link_run_dropped(self, seeds: dict[str, Article]) -> None:
        article = seeds["003_0b6753d6958e9fca"]
        assert article.title not in article.body
        assert "Quận uỷ quận Đống Đa khen thưởng 17" not in article.body
        assert "10 chi bộ trực thuộc đảng uỷ cơ sở đạt Trong sạch vững mạnh tiêu biểu 5 năm liền được" not in (
            article.body
        )
        assert "thông qua 7 Chương trình công tác lớn" not in article.body
        assert not any(p.strip() == "M" for p in paragraphs(article))
        assert "15/01/2021 11:53" not in article.body

    def test_004_header_bullets_and_caption_dropped(self, seeds: dict[str, Article]) -> None:
        article = seeds["004_883b030afed6ad88"]
        assert "•" not in article.body and "11/04/2019" not in article.body
        assert "Duy Tiến" not in article.body
        assert article.title not in article.body
        assert "chủ trì cuộc họp của Ban chỉ đạo" not in article.body

    def test_fingerprint_is_sha256_of_raw_text(self, seeds: dict[str, Article]) -> None:
        raw = (SEEDS / "000_bfda8b1290abb0d5.txt").read_text(encoding="utf-8")
        assert seeds["000_bfda8b1290abb0d5"].fingerprint == hashlib.sha256(raw.encode()).hexdigest()


SYNTHETIC = """Giá điện tăng từ ngày mai (08:30 01/02/2023)

(Dân trí) - Sáng nay, Bộ Công Thương công bố mức giá mới.

Giá bán lẻ bình quân tăng 3%. Người dân cần tiết kiệm điện.

Tin liên quan
Một bài khác
"""


class TestParseArticle:
    def test_rules_are_general(self) -> None:
        article = parse_article(SYNTHETIC, "x1")
        assert article.title == "Giá điện tăng từ ngày mai"
        assert article.published_at == datetime(2023, 2, 1, 8, 30)
        assert article.source == "Dân trí"
        assert article.body == (
            "Sáng nay, Bộ Công Thương công bố mức giá mới.\n\n"
            "Giá bán lẻ bình quân tăng 3%. Người dân cần tiết kiệm điện."
        )

    def test_credit_line_gives_source_when_no_lead(self) -> None:
        article = parse_article("Tiêu đề bài báo\n\nNội dung chính của bài.\n\nNguồn: TTXVN", "x2")
        assert article.source == "TTXVN"
        assert article.body == "Nội dung chính của bài."

    def test_one_glitch_in_a_paragraph_is_kept(self) -> None:
        body = "Đây là một đoạn văn dài có một ký tự l\ufffdi nhưng vẫn là nội dung thật của bài báo."
        assert parse_article(f"Tiêu đề\n\n{body}", "x3").body == body

    def test_long_paragraph_without_final_period_but_with_sentences_kept(self) -> None:
        paragraph = " ".join(["Câu thứ nhất có nhiều chữ.", "Câu", *["chữ"] * 40])
        assert parse_article(f"Tiêu đề\n\n{paragraph}", "x4").body == paragraph

    def test_fingerprint_changes_with_text(self) -> None:
        first = parse_article(SYNTHETIC, "x")
        second = parse_article(SYNTHETIC.replace("3%", "4%"), "x")
        assert first.fingerprint != second.fingerprint
        assert parse_article(SYNTHETIC, "x").fingerprint == first.fingerprint

    @pytest.mark.parametrize("raw", ["", "   \n\n", "M\n15/01/2021 11:53\n"])
    def test_no_title_is_an_error(self, raw: str) -> None:
        with pytest.raises(ArticleError, match="no title"):
            parse_article(raw, "empty")

    def test_no_body_is_an_error(self) -> None:
        with pytest.raises(ArticleError, match="no body"):
            parse_article("Chỉ có tiêu đề\n\nCác bài mới đăng\nViết bình luận", "t")

    @pytest.mark.parametrize("bad_id", ["", "a b", "a/b", "a\\b"])
    def test_bad_id_rejected(self, bad_id: str) -> None:
        with pytest.raises(ArticleError, match="id"):
            parse_article(SYNTHETIC, bad_id)


RECORD = {
    "id": "r1",
    "title": "  Tiêu đề\u00a0bản ghi ",
    "body": "Đoạn một.\nĐoạn hai.\r\n\r\nĐoạn ba.",
    "published_at": "2020-07-09T07:02:30Z",
    "source": "HNP",
    "url": "https://example.vn/r1",
}


class TestRecords:
    def test_valid_record(self) -> None:
        article = article_from_record(RECORD)
        assert article.title == "Tiêu đề bản ghi"
        assert article.body == "Đoạn một.\n\nĐoạn hai.\n\nĐoạn ba."
        assert article.published_at == datetime(2020, 7, 9, 14, 2)  # UTC → Vietnam time, minute precision
        assert (article.source, article.author, article.url) == ("HNP", None, "https://example.vn/r1")
        canonical = json.dumps(RECORD, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        assert article.fingerprint == hashlib.sha256(canonical.encode()).hexdigest()

    @pytest.mark.parametrize(
        ("stamp", "expected"),
        [
            ("2020-07-09T14:02", datetime(2020, 7, 9, 14, 2)),
            ("2020-07-09 14:02:59+07:00", datetime(2020, 7, 9, 14, 2)),
            ("09/07/2020 14:02", datetime(2020, 7, 9, 14, 2)),
            ("14:02 09/07/2020", datetime(2020, 7, 9, 14, 2)),
            ("9/7/2020", datetime(2020, 7, 9)),
            # Date lines as Vietnamese news sites print them: day before month.
            ("Thứ hai, 11/4/2019, 16:37 (GMT+7)", datetime(2019, 4, 11, 16, 37)),
            ("11-04-2019 - 16:37", datetime(2019, 4, 11, 16, 37)),
            ("Thứ Ba, ngày 12/04/2019 08:15", datetime(2019, 4, 12, 8, 15)),
            ("Cập nhật lúc 08:15 ngày 12/04/2019", datetime(2019, 4, 12, 8, 15)),
            ("12/04/2019 lúc 08:15 (UTC+7)", datetime(2019, 4, 12, 8, 15)),
            ("2019-04-11T16:37:00+0700", datetime(2019, 4, 11, 16, 37)),
            ("", None),
            (None, None),
        ],
    )
    def test_published_at_formats(self, stamp: str | None, expected: datetime | None) -> None:
        assert article_from_record({**RECORD, "published_at": stamp}).published_at == expected

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"id": ""}, "id"),
            ({"id": 7}, "id"),
            ({"title": "  "}, "title"),
            ({"body": None}, "body"),
            ({"published_at": "hôm qua"}, "published_at"),
            ({"published_at": "31/02/2020"}, "published_at"),
            ({"source": 3}, "source"),
        ],
    )
    def test_bad_field_named(self, change: dict[str, object], field: str) -> None:
        with pytest.raises(ArticleError, match=field):
            article_from_record({**RECORD, **change})

    def test_fingerprint_changes_with_record(self) -> None:
        assert article_from_record(RECORD).fingerprint != article_from_record({**RECORD, "body": "Khác."}).fingerprint


class TestReadArticles:
    def test_jsonl(self, tmp_path: Path) -> None:
        path = tmp_path / "a.jsonl"
        second = {**RECORD, "id": "r2"}
        path.write_text(f"{json.dumps(RECORD)}\n\n{json.dumps(second)}\n", encoding="utf-8")
        assert [article.id for article in read_articles([path])] == ["r1", "r2"]

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            ("{not json", r"a\.jsonl:2: invalid JSON"),
            ('["a list"]', r"a\.jsonl:2: expected an object"),
            ('{"id": "r2", "title": "T"}', r"a\.jsonl:2: give exactly one of 'body'"),
        ],
    )
    def test_bad_jsonl_line_named(self, tmp_path: Path, line: str, message: str) -> None:
        path = tmp_path / "a.jsonl"
        path.write_text(f"{json.dumps(RECORD)}\n{line}\n", encoding="utf-8")
        with pytest.raises(ArticleError, match=message):
            list(read_articles([path]))

    def test_directory_sorted_and_flat(self, tmp_path: Path) -> None:
        (tmp_path / "b.txt").write_text("Tiêu đề B\n\nNội dung B.", encoding="utf-8")
        (tmp_path / "a.txt").write_text("Tiêu đề A\n\nNội dung A.", encoding="utf-8")
        (tmp_path / "c.jsonl").write_text(json.dumps(RECORD), encoding="utf-8")
        (tmp_path / "notes.md").write_text("ignored", encoding="utf-8")
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "0.txt").write_text("Không đọc\n\nThư mục con.", encoding="utf-8")
        assert [article.id for article in read_articles([tmp_path])] == ["a", "b", "r1"]

    def test_missing_path(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match="nope"):
            list(read_articles([tmp_path / "nope.txt"]))

    def test_unknown_extension(self, tmp_path: Path) -> None:
        path = tmp_path / "a.csv"
        path.write_text("x", encoding="utf-8")
        with pytest.raises(ArticleError, match=r"\.csv"):
            list(read_articles([path]))

    def test_txt_error_names_file(self, tmp_path: Path) -> None:
        path = tmp_path / "empty.txt"
        path.write_text("", encoding="utf-8")
        with pytest.raises(ArticleError, match="empty.txt"):
            list(read_articles([str(path)]))
