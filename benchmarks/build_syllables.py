"""Build `qa/syllables.tsv`, the general table tone-mark restoration falls back on (`qa.restore`) for words the
corpus lacks: per syllable or syllable pair, roughly the share of passages of general text that hold it.

Syllables: the unigram vocabulary of the model the service ships with, intfloat/multilingual-e5-small (MIT licence;
its SentencePiece vocabulary is XLM-RoBERTa's, MIT, learned on CommonCrawl text): each word-initial piece that is a
marked Vietnamese syllable, its probability scaled so that "có" (the commonest that is no word of another language)
holds `TOP_SHARE`, and none more. Bare syllables are left
out (the same letters are words of other languages, whose frequency the vocabulary mixes in). Pairs, and their
syllables: the phrases questions are asked with (`QUESTION_PHRASES`, written for this project), which the passages
searched, being statements, seldom hold. The eval sets' questions are never read. Run after materialising the model
(`make run` or `qa index`):

    .venv/bin/python -m benchmarks.build_syllables [--model embeddings/models/multilingual-e5-small]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from qa.lexical.analysis import bigrams_of
from qa.restore import TABLE
from qa.text import canonical_tones, has_tone_marks, spellings, strip_accents, tokenize

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "embeddings" / "models" / "multilingual-e5-small"
WORD_START = "\u2581"  # SentencePiece's word-initial marker
TOP_SHARE = 0.5  # the share of passages given to "có" (in Vietnamese text, "có" and "và" are in about half)
PHRASE_SHARE = 0.01  # the share given to each question phrase, and at least to each of its syllables
# How Vietnamese asks: question words, and the verbs and particles around them.
QUESTION_PHRASES = """
bao nhiêu|bao lâu|bao xa|bao giờ|bao nhiêu năm|bao nhiêu người|có bao nhiêu|là bao nhiêu|mấy người|mấy năm
khi nào|lúc nào|hồi nào|năm nào|ngày nào|tháng nào|thời gian nào|thời điểm nào|vào năm|vào lúc|vào thời điểm
ở đâu|từ đâu|đến đâu|đi đâu|nơi nào|nước nào|quốc gia nào|thành phố nào|tỉnh nào|khu vực nào|nằm ở|ở nước
là gì|cái gì|điều gì|những gì|việc gì|gì đã|làm gì|tên là gì|tên gì|gọi là gì|có nghĩa là gì|được gọi là
là ai|ai là|ai đã|người nào|những ai|của ai|với ai|cho ai|vị nào|nhân vật nào
tại sao|vì sao|do đâu|lý do|làm sao|như thế nào|thế nào|ra sao|bằng cách nào|cách nào|như nào
loại nào|cái nào|điều nào|phần nào|đội nào|công ty nào|tổ chức nào|nhóm nào|trường nào|ngôn ngữ nào
có phải|phải không|hay không|có không|được không|là gì|là một|một trong|trong số|những người|các loại
đã có|đã được|đã từng|đã làm|đã đưa|đã xảy ra|xảy ra|được sinh ra|sinh ra|sinh năm|được thành lập|thành lập
được xây dựng|được tạo ra|được đặt tên|đặt tên|được biết đến|nổi tiếng|thuộc về|bao gồm|chịu trách nhiệm
đầu tiên|cuối cùng|lớn nhất|nhỏ nhất|nhiều nhất|ít nhất|cao nhất|quan trọng nhất|hiện nay|hiện tại|trước khi|sau khi
"""


def question_terms() -> dict[str, float]:
    """The syllables and adjacent pairs of `QUESTION_PHRASES`, as the lexical engine spells them ("bao_nhiêu")."""
    terms: dict[str, float] = {}
    for phrase in QUESTION_PHRASES.replace("\n", "|").split("|"):
        syllables = tokenize(phrase)
        terms.update(dict.fromkeys(syllables + bigrams_of(syllables), PHRASE_SHARE))
    return terms


def marked_syllables(vocab: list[tuple[str, float]]) -> dict[str, float]:
    """Marked Vietnamese syllables (lowercase, canonical tones) of a SentencePiece vocabulary, with their best score."""
    out: dict[str, float] = {}
    for piece, score in vocab:
        if not piece.startswith(WORD_START):
            continue
        word = canonical_tones(piece[len(WORD_START) :]).lower()
        if not has_tone_marks(word) or word not in spellings(strip_accents(word)):
            continue
        out[word] = max(score, out.get(word, score))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=MODEL, help="a materialised model folder with tokenizer.json")
    parser.add_argument("--out", type=Path, default=TABLE)
    args = parser.parse_args()
    tokenizer = json.loads((args.model / "tokenizer.json").read_text(encoding="utf-8"))
    scores = marked_syllables([(p, float(s)) for p, s in tokenizer["model"]["vocab"]])
    shares = {word: min(TOP_SHARE, TOP_SHARE * math.exp(score - scores["có"])) for word, score in scores.items()}
    for term, share in question_terms().items():
        shares[term] = max(share, shares.get(term, 0.0))
    rows = sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))
    lines = [f"{term}\t{share:.3g}" for term, share in rows if share >= 1e-6]
    header = (
        "# Share of passages holding each marked Vietnamese syllable (from multilingual-e5-small's vocabulary, MIT\n"
        "# licence) or question phrase (written for this project); built by benchmarks/build_syllables.py.\n"
    )
    args.out.write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} terms -> {args.out}")


if __name__ == "__main__":
    main()
