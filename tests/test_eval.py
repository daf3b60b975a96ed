"""`qa eval`: the metrics on a tiny generated set, and the command's JSON shape with the real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qa.eval import WHOLE_CONTEXTS, build_index, evaluate, read_questions
from qa.retriever import Retriever
from tests.fakes import HashingEncoder

CHUNKING = {"target_words": 20, "max_words": 30, "min_words": 5, "overlap_sentences": 0}
CONTEXTS = [
    {"context_id": "c1", "title": "Hà Nội", "text": "Quận Đống Đa thu ngân sách 11.085,046 tỷ đồng năm 2020."},
    {"context_id": "c2", "title": "Nam Từ Liêm", "text": "Đảng bộ quận Nam Từ Liêm có 10.254 đảng viên."},
    {"context_id": "c3", "title": "Điện", "text": "Giá điện sinh hoạt tăng từ ngày 15/6/2020 theo quyết định mới."},
]
QUESTIONS = [
    {"id": "q1", "question": "Đống Đa thu ngân sách bao nhiêu?", "answers": ["11.085,046 tỷ"], "context_id": "c1"},
    {"id": "q2", "question": "Nam Từ Liêm có bao nhiêu đảng viên?", "answers": ["10.254"], "context_id": "c2"},
    {"id": "q3", "question": "Giá điện tăng từ ngày nào?", "answers": ["15/6/2020"], "context_id": "c3"},
    # Gold is c3 but nothing in it matches: a miss at every k, and no answer string anywhere.
    {"id": "q4", "question": "Đảng viên quận Nam Từ Liêm", "answers": ["không có"], "context_id": "c3"},
]


def write_set(folder: Path) -> tuple[Path, Path]:
    contexts, questions = folder / "contexts.jsonl", folder / "questions.jsonl"
    contexts.write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in CONTEXTS) + "\n", encoding="utf-8")
    questions.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in QUESTIONS) + "\n", encoding="utf-8")
    return contexts, questions


def test_metrics_on_a_tiny_set(tmp_path):
    contexts, questions = write_set(tmp_path)
    encoder = HashingEncoder()
    store = build_index(contexts, encoder, chunking=CHUNKING, cache_dir=tmp_path / "cache", progress=False)
    try:
        for mode in ("hybrid", "lexical"):
            report = evaluate(Retriever(store, encoder, mode=mode), read_questions(questions), progress=False)
            assert report.questions == 4
            # q4's gold c3 ranks third at best (c2 matches it, c1 shares "quận"): counted at 5 and 10, not 1.
            assert report.recall[1] == pytest.approx(3 / 4)
            assert report.answer_hit[1] == pytest.approx(3 / 4)
            assert report.mrr_at_10 < 1.0
    finally:
        store.close()
    # A second build reuses the cache (same contexts, model, chunking).
    again = build_index(contexts, encoder, chunking=CHUNKING, cache_dir=tmp_path / "cache", progress=False)
    assert again.manifest().passages == 3
    assert len(list((tmp_path / "cache").iterdir())) == 1
    again.close()


def test_accent_free_runs_measure_how_well_the_marks_were_restored(tmp_path):
    contexts, questions = write_set(tmp_path)
    encoder = HashingEncoder()
    store = build_index(contexts, encoder, chunking=CHUNKING, cache_dir=tmp_path / "cache", progress=False)
    try:
        asked = read_questions(questions)
        restored = evaluate(Retriever(store, encoder), asked, accent_free=True, progress=False)
        as_typed = evaluate(Retriever(store, encoder), asked, accent_free=True, restore=False, progress=False)
        marked = evaluate(Retriever(store, encoder), asked, progress=False)
    finally:
        store.close()
    # Read as typed, only the words that carry no marks anyway are right: "Nam", "bao", "ngan", ...
    assert 0.0 < as_typed.extra["restored_syllables"] < restored.extra["restored_syllables"] <= 1.0
    assert as_typed.extra["restored_questions"] == 0.0
    assert restored.extra["restored_questions"] > 0.0
    assert "restored_syllables" not in marked.extra


def test_whole_contexts_index_one_passage_per_context(tmp_path):
    contexts, _ = write_set(tmp_path)
    long_text = " ".join(f"Câu thứ {i} nói về ngân sách quận Đống Đa." for i in range(300))  # ~2,700 words
    with open(contexts, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"context_id": "long", "title": "Dài", "text": long_text}, ensure_ascii=False) + "\n")
    store = build_index(contexts, HashingEncoder(), chunking=WHOLE_CONTEXTS, cache_dir=tmp_path / "c", progress=False)
    try:
        assert store.manifest().passages == len(CONTEXTS) + 1
        (passage,) = store.passages_of("long")
        assert passage.text == long_text and len(passage.sentences) == 300
    finally:
        store.close()


@pytest.mark.slow
def test_cli_json_shape(tmp_path, default_model_dir, monkeypatch, capsys):
    from qa.cli import main

    contexts, questions = write_set(tmp_path)
    monkeypatch.setenv("QA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("QA_MODELS_DIR", str(default_model_dir.parent))
    args = ["eval", "--contexts", str(contexts), "--questions", str(questions), "--k", "1,2", "--json", "--limit", "3"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["questions"] == 3
    assert set(out["recall"]) == {"1", "2"} and set(out["answer_hit"]) == {"1", "5"}
    assert out["recall"]["1"] == 1.0 and out["mrr@10"] == 1.0 and out["answer_hit"]["1"] == 1.0
    assert 0.0 <= out["answer@1"] <= 1.0 and 0.0 <= out["answer_null"] <= 1.0
    assert out["answer@1"] + out["answer_null"] <= 1.0


def test_qa_eval_keeps_to_its_own_cache_whatever_the_environment(tmp_path, monkeypatch, capsys):
    """The service's Milvus settings in the environment must not reach the eval index: it would drop and recreate
    the service's collection. The eval index is FAISS in data_dir/eval-cache, and nothing else is touched."""
    from qa.cli import main

    contexts, questions = write_set(tmp_path)
    service_db = tmp_path / "service-milvus.db"
    service_db.write_bytes(b"the service's vectors")
    data = tmp_path / "data"
    monkeypatch.setenv("QA_DATA_DIR", str(data))
    monkeypatch.setenv("QA_VECTOR_BACKEND", "milvus")
    monkeypatch.setenv("QA_MILVUS_URI", str(service_db))
    monkeypatch.setenv("QA_MILVUS_COLLECTION", "viqa_passages")
    monkeypatch.setattr("qa.encoders.load_encoder", lambda settings: HashingEncoder())
    args = ["eval", "--contexts", str(contexts), "--questions", str(questions), "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["questions"] == len(QUESTIONS)
    assert service_db.read_bytes() == b"the service's vectors"
    assert sorted(p.name for p in data.iterdir()) == ["eval-cache"]
    (cached,) = (data / "eval-cache").iterdir()
    assert json.loads((cached / "vectors.json").read_text())["backend"] == "faiss"
