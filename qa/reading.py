"""What answer selection reads of a text (its tokens, accent-free tokens, numbers, times, names, people, place
words): computed once per sentence and title when a passage is indexed, stored beside it, and only decoded when a
question reaches it (`qa.answer`)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from qa.domain import Passage
from qa.text import strip_accents, tokenize, vietnamese_share

__all__ = ["Reading", "dumps", "loads", "passage_readings", "read"]

_NUMBER_WORDS = frozenset("hai ba bốn năm sáu bảy tám chín mười mươi trăm nghìn ngàn triệu tỷ tỉ chục rưỡi".split())
_TIME = re.compile(
    r"(?<!\w)(?:1\d{3}|20\d{2})(?!\w)|\d{1,2}/\d{1,2}|\d+\s*(?:giờ|h)(?!\w)"
    r"|(?<!\w)(?:năm|ngày|tháng|thế kỷ|thế kỉ|thập niên|thập kỷ|quý|tuần|mùa)\s+(?:\d+|[ivxlc]+(?!\w)|thứ|này|trước|sau"
    r"|xuân|hạ|hè|thu|đông|một|hai|ba|tư|bốn|năm|sáu|bảy|tám|chín|mười)"
    r"|(?<!\w)(?:sáng|chiều|trưa|tối|đêm|hôm nay|hôm qua|chủ nhật|thứ hai|thứ ba|thứ tư|thứ năm|thứ sáu|thứ bảy)(?!\w)"
)
_WORD = re.compile(r"[^\W\d_][^\W_]*")
# Vietnamese family names: a run of capitalised words led by one is most likely a person ("Hoàng Trung Hải"),
# where a run led by another word is an organisation or a place ("Ban Chỉ đạo", "Thành ủy").
_SURNAMES = frozenset(
    """
    nguyễn trần lê phạm hoàng huỳnh phan vũ võ đặng bùi đỗ hồ ngô dương lý đinh trương lâm mai đào cao lương
    tạ trịnh đoàn hà tô quách kiều triệu thái chu văn la lưu tăng vương mạc đàm khúc từ giang thân lại
    """.split()
)
_PERSON_TITLES = frozenset("ông bà anh chị cô chú bác ngài vua".split())  # and "đồng chí" (comrade), two words
_PLACE_WORDS = frozenset(
    "tại ở từ đến thành phố tỉnh huyện quận xã nước vùng miền đảo sông núi thủ đô bang châu làng phố".split()
)


@dataclass(frozen=True, slots=True)
class Reading:
    """What the answer features read of one text."""

    tokens: tuple[str, ...]  # lowercase, canonical tones
    folded: tuple[str, ...]  # the same without diacritics
    numbers: frozenset[str]
    times: frozenset[str]
    names: frozenset[str]  # runs of capitalised words (not the sentence's first word alone), lowercase
    people: frozenset[str]  # those that look like a person's name
    placed: bool  # a place word ("tại", "tỉnh", ...) right before a capitalised word


@lru_cache(maxsize=16384)
def read(text: str) -> Reading:
    """The reading of `text` (a question, or a sentence or title indexed before readings were stored)."""
    tokens = tuple(tokenize(text))
    words = _WORD.findall(text)
    names, people = _names(text)
    placed = any(a.lower() in _PLACE_WORDS and b[0].isupper() for a, b in zip(words, words[1:], strict=False))
    return Reading(
        tokens=tokens,
        folded=_folded(tokens),
        numbers=frozenset(t for t in tokens if t[0].isdigit() or t in _NUMBER_WORDS),
        times=frozenset(m.group(0).lower() for m in _TIME.finditer(text)),
        names=names,
        people=people,
        placed=placed,
    )


def _folded(tokens: tuple[str, ...]) -> tuple[str, ...]:
    """Each token without diacritics: folded in one pass (a token holds no space, and folding never joins two)."""
    folded = tuple(strip_accents(" ".join(tokens)).split(" ")) if tokens else ()
    return folded if len(folded) == len(tokens) else tuple(strip_accents(t) for t in tokens)


def _names(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """Runs of capitalised words (joined by single spaces) and which of them look like a person's name: led by a
    family name or a title ("ông", "đồng chí"), or spelled with a word no Vietnamese syllable spells ("Kawann
    Short")."""
    runs: list[list[re.Match[str]]] = []
    for m in _WORD.finditer(text):
        if not m.group(0)[0].isupper():
            continue
        if runs and text[runs[-1][-1].end() : m.start()] == " ":
            runs[-1].append(m)
        else:
            runs.append([m])
    names, people = set(), set()
    for run in runs:
        if len(run) == 1 and run[0].start() == 0:
            continue  # a sentence's first word is capitalised anyway
        name = " ".join(m.group(0).lower() for m in run)
        names.add(name)
        before = text[: run[0].start()].split()[-2:]
        titled = bool(before) and (before[-1].lower() in _PERSON_TITLES or " ".join(before).lower() == "đồng chí")
        led = run[0].group(0).lower() in _SURNAMES and len(run) >= 2
        if titled or led or (len(run) >= 2 and vietnamese_share(name) < 1.0):
            people.add(name)
    return frozenset(names), frozenset(people)


def passage_readings(title: str, passage: Passage) -> list[Reading]:
    """The readings of a passage's sentences, in order, then of its article's title (what `dumps` stores)."""
    return [read.__wrapped__(passage.text[a:b]) for a, b in passage.sentences] + [read.__wrapped__(title)]


def dumps(readings: Sequence[Reading]) -> str:
    """Readings as compact JSON (tokens hold no space: they are joined by one)."""
    return json.dumps(
        [
            [
                " ".join(r.tokens),
                " ".join(r.folded),
                sorted(r.numbers),
                sorted(r.times),
                sorted(r.names),
                sorted(r.people),
                int(r.placed),
            ]
            for r in readings
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def loads(data: str) -> list[Reading]:
    """The readings `dumps` wrote."""
    return [
        Reading(
            tuple(tokens.split()),
            tuple(folded.split()),
            frozenset(numbers),
            frozenset(times),
            frozenset(names),
            frozenset(people),
            bool(placed),
        )
        for tokens, folded, numbers, times, names, people, placed in json.loads(data)
    ]
