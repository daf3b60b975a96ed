"""Vietnamese-aware sentence splitting and packing of sentences into overlapping passages.

Every span is a [start, end) character range into the article body, so hits can be highlighted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from qa.domain import Article, Passage, Span

__all__ = ["ABBREVIATIONS", "CHUNKING", "chunk_article", "chunk_text", "split_sentences"]

# Passage size in words (whitespace tokens): about 120 and at most 160 stays inside the encoder's 512-token window
# even for number-heavy text, and holds a news paragraph with its context; smaller passages ranked worse on both
# dev sets (benchmarks/quality.md). One sentence repeats across each boundary, so an answer near it is whole in one
# passage. The index records these: changing them means `qa index --rebuild`.
CHUNKING = {"target_words": 120, "max_words": 160, "min_words": 60, "overlap_sentences": 1}


# Words that end in "." without ending a sentence ("TP. Hà Nội", "ThS. Nguyễn", "tr. 15").
# Case-sensitive: "TP." is an abbreviation; a single capital ("H. Hạnh") is handled as an initial.
ABBREVIATIONS = frozenset(
    {
        # titles and degrees
        "ThS", "Ths", "TS", "PGS", "GS", "BS", "BSCKI", "BSCKII", "KS", "CN", "NSND", "NSƯT", "Lm",
        "Mr", "Mrs", "Ms", "Dr", "Prof", "Jr", "Sr", "St",
        # places and administrative units
        "TP", "Tp", "tp", "TX", "Q", "P", "H", "X", "TT", "Tx",
        # references and misc
        "tr", "Tr", "No", "Nxb", "NXB", "Co", "Ltd", "Inc", "vs", "v.v", "etc",
    }
)  # fmt: skip

# A candidate break: terminators and closing quotes/brackets, then whitespace; `_starts_sentence`
# checks the next character. A number like "11.085,046" has no whitespace after its dot.
_CANDIDATE = re.compile(r"[.!?…]+[\"”’'»)\]]*(?=\s+(\S))")
_CLOSERS = "\"”’'»)]"
_OPENING_QUOTES = "\"“‘'«"
_LIST_MARKER = re.compile(r"(?:\d{1,3}|[IVXLC]{1,5}|[A-Za-z])\.")
_QUOTE_PAIRS = {"“": "”", "«": "»", '"': '"'}
_PARAGRAPH = re.compile(r"[^\n]+")
_NON_SPACE = re.compile(r"\S+")


def _is_abbreviation(word: str) -> bool:
    """`word` is the text before a single final "."; True if that dot does not end a sentence."""
    word = word.lstrip("\"“‘'«([")
    if not word:
        return False
    if word in ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isalpha() and word.isupper():
        return True  # an initial: "H. Hạnh", "Nguyễn V. A"
    pieces = word.split(".")
    # Dotted compounds: "v.v", "PGS.TS", "GS.TSKH" only when every piece is an abbreviation/letter.
    return len(pieces) > 1 and all(
        piece in ABBREVIATIONS or (len(piece) == 1 and piece.isalpha()) for piece in pieces if piece
    )


def _quoted_regions(text: str, start: int, end: int) -> list[Span]:
    """Inside-quote ranges of text[start:end]; an opening quote never closed is ignored."""
    regions: list[Span] = []
    index = start
    while index < end:
        char = text[index]
        closer = _QUOTE_PAIRS.get(char)
        if closer is not None:
            close_at = text.find(closer, index + 1, end)
            if close_at != -1:
                regions.append((index + 1, close_at))
                index = close_at + 1
                continue
        index += 1
    return regions


def _starts_sentence(char: str) -> bool:
    return char.isupper() or char.isdigit() or char in _OPENING_QUOTES


def _sentence_breaks(text: str, start: int, end: int) -> list[int]:
    """Offsets (ends of terminators) where a sentence ends inside the line text[start:end]."""
    quotes = _quoted_regions(text, start, end)
    breaks: list[int] = []
    sentence_start = start
    for match in _CANDIDATE.finditer(text, start, end):
        if not _starts_sentence(match.group(1)):
            continue  # "… và", "! nhưng": lowercase goes on with the same sentence
        if any(q_start <= match.start() and match.end() <= q_end for q_start, q_end in quotes):
            continue  # the closing quote has not come yet
        if match.group().rstrip(_CLOSERS) == ".":
            word_start = match.start()
            while word_start > start and not text[word_start - 1].isspace():
                word_start -= 1
            if _is_abbreviation(text[word_start : match.start()]):
                continue
            if _LIST_MARKER.fullmatch(text[sentence_start : match.end()].strip()):
                continue  # "1. Nội dung…": the number belongs to its item
        breaks.append(match.end())
        sentence_start = match.end()
    return breaks


def split_sentences(text: str) -> list[Span]:
    """Sentence spans [start, end) into `text`, whitespace-trimmed, in order, covering all non-space text.

    Breaks at line breaks and after . ! ? … (plus closing quotes/brackets) when whitespace and a
    sentence start follow; never inside numbers/dates, after ABBREVIATIONS or initials, or inside quotes.
    """
    spans: list[Span] = []
    for line in _PARAGRAPH.finditer(text):
        cuts = [line.start(), *_sentence_breaks(text, line.start(), line.end()), line.end()]
        for piece_start, piece_end in zip(cuts, cuts[1:], strict=False):
            words = list(_NON_SPACE.finditer(text, piece_start, piece_end))
            if words:
                spans.append((words[0].start(), words[-1].end()))
    return spans


@dataclass(frozen=True, slots=True)
class _Unit:
    """A sentence, or a word-boundary piece of a sentence longer than max_words."""

    start: int
    end: int
    words: int
    opens_paragraph: bool


def _word_pieces(text: str, start: int, end: int, max_words: int) -> list[tuple[int, int, int]]:
    """Split text[start:end] into near-equal runs of ≤ max_words words: (start, end, words)."""
    words = list(_NON_SPACE.finditer(text, start, end))
    count = len(words)
    if count <= max_words:
        return [(start, end, count)]
    size = math.ceil(count / math.ceil(count / max_words))
    return [
        (group[0].start(), group[-1].end(), len(group))
        for group in (words[i : i + size] for i in range(0, count, size))
    ]


def _units(body: str, max_words: int) -> list[_Unit]:
    units: list[_Unit] = []
    previous_end = 0
    for start, end in split_sentences(body):
        opens_paragraph = not units or "\n" in body[previous_end:start]
        for index, (piece_start, piece_end, words) in enumerate(_word_pieces(body, start, end, max_words)):
            units.append(_Unit(piece_start, piece_end, words, opens_paragraph and index == 0))
        previous_end = end
    return units


def _pack(units: list[_Unit], target: int, maximum: int, minimum: int, overlap: int) -> list[Span]:
    """Group unit indexes into [first, last) runs: about `target` words, ≤ `maximum`, overlapping."""
    groups: list[Span] = []
    first = 0
    next_new = 0  # first unit not yet in any passage
    while next_new < len(units):
        words = sum(unit.words for unit in units[first:next_new])
        last = next_new
        while last < len(units):
            unit = units[last]
            if last > next_new:  # the first new unit always goes in; later ones must earn their place
                total = words + unit.words
                if total > maximum:
                    break
                if unit.opens_paragraph and words >= minimum:
                    break  # a paragraph boundary is the natural place to cut
                if total > target and total - target >= target - words:
                    break  # adding it would land further from the target than stopping here
            words += unit.words
            last += 1
        groups.append((first, last))
        next_new = last
        first = _overlap_start(units, last, overlap, maximum, target // 2)
    if len(groups) > 1:
        (prev_first, _), (_, last_end) = groups[-2], groups[-1]
        tail = units[groups[-1][0] : last_end]
        merged_words = sum(unit.words for unit in units[prev_first:last_end])
        if sum(unit.words for unit in tail) < minimum and merged_words <= maximum:
            groups[-2:] = [(prev_first, last_end)]
    return groups


def _overlap_start(units: list[_Unit], end: int, overlap: int, maximum: int, budget: int) -> int:
    """Where the next passage starts: up to `overlap` units before `end`.

    Overlap units must leave room for the next new unit under `maximum` and together stay within
    `budget` words (half the target): one long repeated sentence would make a passage mostly a copy.
    """
    if end >= len(units):
        return end
    first = end
    room = min(maximum - units[end].words, budget)
    while first > end - overlap and first > 0 and units[first - 1].words <= room:
        first -= 1
        room -= units[first].words
    return first


def _validate(target_words: int, max_words: int, min_words: int, overlap_sentences: int) -> None:
    if not 0 <= min_words <= target_words <= max_words or max_words < 1:
        raise ValueError(
            "need 0 ≤ min_words ≤ target_words ≤ max_words and max_words ≥ 1, got "
            f"min_words={min_words}, target_words={target_words}, max_words={max_words}"
        )
    if overlap_sentences < 0:
        raise ValueError(f"overlap_sentences must be ≥ 0, got {overlap_sentences}")


def chunk_text(
    article_id: str,
    body: str,
    *,
    target_words: int = CHUNKING["target_words"],
    max_words: int = CHUNKING["max_words"],
    min_words: int = CHUNKING["min_words"],
    overlap_sentences: int = CHUNKING["overlap_sentences"],
) -> list[Passage]:
    """Pack whole sentences of `body` into passages (words = whitespace-separated tokens).

    About `target_words` per passage, never more than `max_words` unless one sentence is longer (that
    sentence is then split at word boundaries); consecutive passages share `overlap_sentences`
    sentences; a short last passage merges into the previous one when the result fits.
    """
    _validate(target_words, max_words, min_words, overlap_sentences)
    units = _units(body, max_words)
    passages: list[Passage] = []
    for ordinal, (first, last) in enumerate(_pack(units, target_words, max_words, min_words, overlap_sentences)):
        start, end = units[first].start, units[last - 1].end
        passages.append(
            Passage(
                id=f"{article_id}:{ordinal}",
                article_id=article_id,
                ordinal=ordinal,
                text=body[start:end],
                start=start,
                end=end,
                sentences=tuple((unit.start - start, unit.end - start) for unit in units[first:last]),
            )
        )
    return passages


def chunk_article(article: Article, **kwargs: int) -> list[Passage]:
    """Passages of `article.body`; keyword arguments as for `chunk_text`."""
    return chunk_text(article.id, article.body, **kwargs)
