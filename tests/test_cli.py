"""The `qa` command as a user runs it: index files, ask, and clear errors for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qa.cli import build_parser, main
from qa.dates import EXPECTED
from qa.schemas import Filters

HTML_PAGES = Path(__file__).resolve().parent / "fixtures" / "html"


@pytest.fixture
def env(monkeypatch, service):
    """Point the CLI at the session service's data folder and the materialised model."""
    s = service.settings
    monkeypatch.setenv("QA_DATA_DIR", str(s.data_dir))
    monkeypatch.setenv("QA_MODELS_DIR", str(s.models_path))
    monkeypatch.setenv("QA_SEEDS", str(s.seeds))


def test_ask_prints_the_answer_then_ranked_hits_with_highlight(env, capsys):
    assert main(["ask", "Quận Nam Từ Liêm có bao nhiêu đảng viên?", "-k", "2"]) == 0
    out = capsys.readouterr().out
    answer, sources = out.split("\nSources:\n", 1)
    assert answer.startswith("Answer: ") and "10.254 đảng viên" in answer
    assert "from passage 002_793d685470df229a:" in answer and "Chủ tịch HĐND TP Hà Nội" in answer and "sure: " in answer
    assert sources.lstrip("\n").startswith("1. [")
    assert "Chủ tịch HĐND TP Hà Nội kiểm tra" in out
    assert "«" in out and "10.254 đảng viên" in out  # the answering sentence is marked when not a terminal
    assert "(2 hits in" in out


def test_ask_says_how_it_understood_a_question_without_tone_marks(env, capsys):
    assert main(["ask", "quan Nam Tu Liem co bao nhieu dang vien?", "-k", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Understood as: quận Nam Từ Liêm có bao nhiêu đảng viên?")
    assert main(["ask", "quan Nam Tu Liem co bao nhieu dang vien?", "-k", "1", "--as-typed"]) == 0
    assert "Understood as" not in capsys.readouterr().out
    assert main(["ask", "quan Nam Tu Liem co bao nhieu dang vien?", "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["understood_as"] == "quận Nam Từ Liêm có bao nhiêu đảng viên?"


def test_ask_json_matches_api_shape(env, capsys):
    assert main(["ask", "Ai chủ trì cuộc họp Ban chỉ đạo Chương trình 01?", "--json", "-k", "1"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["hits"][0]["article"]["source"] == "ANTD.VN"
    assert {"passage_id", "text", "score", "highlights", "article"} <= set(body["hits"][0])
    answer = body["answer"]  # chosen among the top 5 hits even with -k 1
    assert answer["passage_id"].startswith("004_883b030afed6ad88:") and answer["article"]["source"] == "ANTD.VN"
    assert answer["text"] and answer["end"] > answer["start"] and 0.0 < answer["score"] <= 1.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ask", "   "], "the question is empty"),
        (["ask", "câu hỏi", "-k", "0"], "--top-k must be between 1 and 50"),
    ],
)
def test_bad_input_is_a_clear_error(env, capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_index_missing_path_is_a_clear_error(env, capsys, tmp_path):
    assert main(["index", str(tmp_path / "nope.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("qa: ") and "nope.jsonl" in err


def test_index_folder_of_jsonl_and_html_then_ask(monkeypatch, capsys, tmp_path, default_model_dir):
    """A fresh index with no seeds, a folder of one JSONL article and one HTML page, then a question about each."""
    monkeypatch.setenv("QA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("QA_MODELS_DIR", str(default_model_dir.parent))
    (tmp_path / "no-seeds").mkdir()
    monkeypatch.setenv("QA_SEEDS", str(tmp_path / "no-seeds"))
    folder = tmp_path / "articles"
    folder.mkdir()
    record = {
        "id": "cli-test-1",
        "title": "Hồ Gươm đón khách du lịch",
        "body": "Hồ Hoàn Kiếm đón hơn 20.000 lượt khách du lịch trong dịp nghỉ lễ. Phố đi bộ mở cửa đến nửa đêm.",
        "published_at": "2024-05-01T08:00:00",
        "source": "Test",
    }
    (folder / "extra.jsonl").write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    shutil.copy(HTML_PAGES / "date_line_only.html", folder / "long-bien.html")
    assert main(["index", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "indexed 2 articles (3 passages)" in out and "2 articles, 3 passages" in out  # the page: 2
    assert main(["ask", "Hồ Hoàn Kiếm đón bao nhiêu lượt khách?", "-k", "1"]) == 0
    out = capsys.readouterr().out
    assert "20.000 lượt khách" in out and "01/05/2024 08:00 · Test" in out
    assert main(["ask", "Quận Long Biên trồng mới bao nhiêu cây bóng mát?", "-k", "1"]) == 0
    out = capsys.readouterr().out
    assert "5.000 cây bóng mát" in out and "12/04/2019 08:15 · LBO" in out


# --- filters: --from, --to, --source ---------------------------------------------------------------


def test_filter_options_become_the_api_filters():
    args = build_parser().parse_args(
        ["ask", "q", "--from", "2020", "--to", "2020-06", "--source", "HNP", "--source", "LĐTĐ"]
    )
    assert args.filters == Filters(published_from="2020", published_to="2020-06", sources=["HNP", "LĐTĐ"])
    assert build_parser().parse_args(["ask", "q"]).filters is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--from", "0"], f"argument --from: expected {EXPECTED}; got '0'"),
        (["--to", "2020-02-30"], f"argument --to: expected {EXPECTED}; got '2020-02-30'"),
        (["--from", "yesterday"], f"argument --from: expected {EXPECTED}; got 'yesterday'"),
        (["--to", ""], f"argument --to: expected {EXPECTED}; got ''"),
        (
            ["--from", "2021", "--to", "2020"],
            "argument --to: published_from (2021-01-01T00:00:00+07:00) is after published_to "
            "(2020-12-31T23:59:59.999999+07:00)",
        ),
        (["--source", ""], "argument --source: String should have at least 1 character"),
    ],
)
def test_a_bad_filter_exits_2_with_the_message(capsys, options, message):
    with pytest.raises(SystemExit) as caught:
        main(["ask", "câu hỏi", *options])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_date_fails_before_anything_is_loaded():
    code = (
        "import sys\n"
        "from qa.cli import main\n"
        "try:\n"
        "    main(['ask', 'câu hỏi', '--from', '2020-13'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 2, exc.code\n"
        "heavy = {'torch', 'sentence_transformers', 'faiss', 'qa.service', 'qa.store'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "argument --from: expected an ISO 8601 date" in done.stderr


def test_ask_with_filters(env, capsys):
    question = "Ai chủ trì cuộc họp Ban chỉ đạo Chương trình 01?"
    assert main(["ask", question, "--json", "--source", "ANTD.VN", "--from", "2019", "--to", "2019-04-11"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits and {h["article"]["id"] for h in hits} == {"004_883b030afed6ad88"}
    assert main(["ask", question, "--json", "--to", "2019-04-10"]) == 0
    assert json.loads(capsys.readouterr().out)["hits"] == []
