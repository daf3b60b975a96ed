"""Vietnamese text normalisation shared by indexing and querying.

Pure functions: Unicode/whitespace clean-up, one tone-mark convention, accent stripping, lexical tokens.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = [
    "canonical_tones",
    "has_tone_marks",
    "is_syllable",
    "normalize",
    "spellings",
    "strip_accents",
    "token_matches",
    "tokenize",
    "vietnamese_share",
]

# --- normalize --------------------------------------------------------------------------------------

# Characters str.splitlines() treats as line breaks; all become "\n" so paragraphs survive.
_LINE_BREAKS = re.compile(r"\r\n|[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# Invisible separators that scrapers leave between words: a space keeps the words apart.
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
_SURROGATES = re.compile("[\ud800-\udfff]")
_SPACE_RUN = re.compile(r" {2,}")
_LINE_EDGE_SPACES = re.compile(r"^ +| +$", re.MULTILINE)


def _clean_char(char: str) -> str:
    """Map one character to what survives normalisation ("" drops it)."""
    if char == "\n":
        return char
    if char in _ZERO_WIDTH or char.isspace():
        return " "
    # Control (Cc) and format (Cf) characters carry no text: NUL, soft hyphen, direction marks.
    if unicodedata.category(char) in ("Cc", "Cf"):
        return ""
    return char


def normalize(text: str) -> str:
    """NFC, plain spaces, "\\n" line breaks, no control characters; newlines (paragraphs) are kept.

    Idempotent. Character removal happens before NFC so a removed character can never leave a
    base letter and a combining mark newly adjacent after composition.
    """
    text = _SURROGATES.sub("", text)
    text = _LINE_BREAKS.sub("\n", text)
    # Printable means no control, format or whitespace character other than " ": nothing to map (the
    # common case, checked at C speed; the per-character pass is by far the slowest step here).
    if not text.replace("\n", "").isprintable():
        text = "".join(_clean_char(char) for char in text)
    text = _SPACE_RUN.sub(" ", text)
    text = _LINE_EDGE_SPACES.sub("", text)
    return unicodedata.normalize("NFC", text)


# --- tone marks -------------------------------------------------------------------------------------

# Combining marks as NFD spells them: five tones, three vowel modifiers.
_TONE_MARKS = frozenset("\u0300\u0301\u0303\u0309\u0323")  # huyền, sắc, ngã, hỏi, nặng
_VOWEL_MARKS = frozenset("\u0302\u0306\u031b")  # circumflex (â ê ô), breve (ă), horn (ơ ư)
_VIETNAMESE_MARKS = _TONE_MARKS | _VOWEL_MARKS

_VOWELS = frozenset("aăâeêioôơuưy")
_MODIFIED_VOWELS = frozenset("ăâêôơư")
# Longest first, so "ngh" wins over "ng" and "ng" over "n".
_ONSETS = (
    "ngh", "ng", "gh", "gi", "qu", "ch", "kh", "nh", "ph", "th", "tr",
    "b", "c", "d", "đ", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "x",
)  # fmt: skip
_CODAS = frozenset({"", "c", "ch", "m", "n", "ng", "nh", "p", "t"})
_WORD = re.compile(r"[^\W\d_]+")


def _split_letter(char: str) -> tuple[str, str]:
    """Split a precomposed letter into (letter without tone, its tone marks, usually "" or one)."""
    decomposed = unicodedata.normalize("NFD", char)
    tones = "".join(mark for mark in decomposed if mark in _TONE_MARKS)
    if not tones:
        return char, ""
    rest = "".join(mark for mark in decomposed if mark not in _TONE_MARKS)
    return unicodedata.normalize("NFC", rest), tones


def _syllable_parts(letters: str) -> tuple[int, str, str] | None:
    """(where the nucleus starts, the nucleus, the coda) of `letters` (lowercase, toneless), or None when it is not
    a well-formed Vietnamese syllable."""
    onset = next((o for o in _ONSETS if letters.startswith(o)), "")
    # "gi"/"qu" are onsets only before another vowel: "gì" is g + i, "quý" is qu + y.
    if onset in ("gi", "qu") and (len(letters) == 2 or letters[2] not in _VOWELS):
        onset = "g" if onset == "gi" else ""
    start = len(onset)
    end = start
    while end < len(letters) and letters[end] in _VOWELS:
        end += 1
    nucleus, coda = letters[start:end], letters[end:]
    if not nucleus or len(nucleus) > 3 or coda not in _CODAS:
        return None
    return start, nucleus, coda


def _tone_position(letters: str) -> int | None:
    """Index (into `letters`, lowercase, toneless) where the old-style convention puts the tone.

    None when `letters` is not a well-formed Vietnamese syllable, so foreign words stay untouched.
    """
    parts = _syllable_parts(letters)
    if parts is None:
        return None
    start, nucleus, coda = parts
    modified = [i for i, vowel in enumerate(nucleus) if vowel in _MODIFIED_VOWELS]
    if modified:
        # ươ → ơ, uô → ô, iê → ê, ưa → ư: the last modified vowel carries the tone.
        return start + modified[-1]
    if coda:
        return start + len(nucleus) - 1  # hoàn, toét, huýt
    # Open syllable: hòa, khỏe, thủy, mía (first of two); ngoài, khuỷu (middle of three).
    return start + (0 if len(nucleus) <= 2 else 1)


def _canonical_syllable(match: re.Match[str]) -> str:
    return _canonical_word(match.group())


# Vietnamese has a few thousand distinct syllables: caching makes tokenising a corpus much faster
# (benchmarks/quality.md, "Lexical index cost").
@lru_cache(maxsize=65_536)
def _canonical_word(word: str) -> str:
    parts = [_split_letter(char) for char in word]
    tones = [(i, tone) for i, (_, tone) in enumerate(parts) if tone]
    # Zero or several tones (a typo, or not Vietnamese): nothing sensible to move.
    if len(tones) != 1 or len(tones[0][1]) != 1:
        return word
    letters = "".join(letter for letter, _ in parts)
    lowered = letters.lower()
    # Positions must line up one-to-one with the word's characters ("İ".lower() has two).
    if len(letters) != len(word) or len(lowered) != len(word):
        return word
    target = _tone_position(lowered)
    if target is None or target == tones[0][0]:
        return word
    tone = tones[0][1]
    rebuilt = [letter + (tone if i == target else "") for i, (letter, _) in enumerate(parts)]
    return unicodedata.normalize("NFC", "".join(rebuilt))


def canonical_tones(text: str) -> str:
    """Put every syllable's tone mark where the old-style convention does ("hoà" → "hòa", "uỷ" → "ủy").

    Old style: tone on the first vowel of an open oa/oe/uy syllable (hòa, khỏe, thủy, úy), on the
    second when a final consonant follows (hoàn, huýt), on a modified vowel when there is one.
    Case is kept; words that are not Vietnamese syllables are left as they are. Output is NFC.
    """
    text = unicodedata.normalize("NFC", _SURROGATES.sub("", text))
    if text.isascii():
        return text
    # Again NFC: a moved tone can leave a letter bare beside a stray combining mark that now composes with it.
    return unicodedata.normalize("NFC", _WORD.sub(_canonical_syllable, text))


# A bare letter and the letters that fold to it (vowel marks; đ only leads a syllable): `spellings`.
_MARKED_LETTERS = {"a": "aăâ", "e": "eê", "o": "oôơ", "u": "uư"}
_TONES_NFD = ("", "\u0300", "\u0301", "\u0303", "\u0309", "\u0323")
_STOP_TONES = ("\u0301", "\u0323")
_STOPS = frozenset({"c", "ch", "p", "t"})


@lru_cache(maxsize=16_384)
def spellings(bare: str) -> tuple[str, ...]:
    """Every well-formed Vietnamese syllable that folds to `bare` (lowercase, no diacritics), with its tone where the
    old-style convention puts it: "ban" → ban, bàn, bán, bãn, bản, bạn, băn, ..., bận. Empty when `bare` cannot be a
    Vietnamese syllable; `bare` itself comes first when it is one."""
    letters: list[str] = [_MARKED_LETTERS.get(c, c) for c in bare]
    if bare.startswith("d"):
        letters[0] = "dđ"
    out: list[str] = []
    for combination in _products(letters):
        target = _tone_position(combination)
        parts = _syllable_parts(combination)
        if target is None or parts is None or not _spoken(parts[1], parts[2]):
            continue
        # A syllable closed by a stop (c, ch, p, t) takes only the rising or the heavy tone.
        tones = _STOP_TONES if parts[2] in _STOPS else _TONES_NFD
        for tone in tones:
            marked = combination[: target + 1] + tone + combination[target + 1 :]
            out.append(unicodedata.normalize("NFC", marked))
    return tuple(out)


# Which vowels a marked vowel may follow, and come before, within one nucleus: uơ/ươ, uô, iê/yê/uê, uâ, oă/uă;
# ưa/ươ/ưi/ưu, ơi/ơu, ôi, êu, âu/ây (ă comes before none).
_MARKED_AFTER = {"ư": "", "ơ": "uư", "ô": "u", "ê": "iyu", "â": "u", "ă": "ou"}
_MARKED_BEFORE = {"ư": "aơiu", "ơ": "iu", "ô": "i", "ê": "u", "â": "uy", "ă": ""}


def _spoken(nucleus: str, coda: str) -> bool:
    """Whether a nucleus with its vowel marks can be spoken before `coda`: a marked vowel beside another vowel only
    as `_MARKED_AFTER` and `_MARKED_BEFORE` allow; i or u before e is iê or uê, u before o is uô, ươ or an open uơ
    (thuở); ua and ưa have no coda (after "qu", the u is the onset's), uô, ươ, iê and yê always one; ă and â never
    end a syllable."""
    if any(pair in nucleus for pair in ("ie", "ye", "ue", "uo")):
        return False
    if (coda and ("ua" in nucleus or "ưa" in nucleus)) or ("uơ" in nucleus and (coda or nucleus != "uơ")):
        return False
    if not coda and nucleus.endswith(("uô", "ươ", "iê", "yê")):  # closed by a consonant or a glide: muôn, mười
        return False
    if not coda and nucleus[-1] in "ăâ":
        return False
    for i, vowel in enumerate(nucleus):
        if vowel not in _MARKED_AFTER:
            continue
        if (i and nucleus[i - 1] not in _MARKED_AFTER[vowel]) or nucleus[i + 1 : i + 2] not in _MARKED_BEFORE[vowel]:
            return False
    return True


def _products(choices: list[str]) -> list[str]:
    words = [""]
    for options in choices:
        words = [w + c for w in words for c in options]
    return words


def is_syllable(word: str) -> bool:
    """Whether `word` (any case, marked or not) is spelt as a Vietnamese syllable can be."""
    lowered = strip_accents(word).lower()
    return bool(lowered.isascii() and lowered.isalpha() and spellings(lowered))


def strip_accents(text: str) -> str:
    """Remove every diacritic (tones and vowel marks) and map đ/Đ to d/D: "Đường" → "Duong"."""
    decomposed = unicodedata.normalize("NFD", _SURROGATES.sub("", text))
    bare = "".join(char for char in decomposed if unicodedata.category(char) != "Mn")
    return unicodedata.normalize("NFC", bare.replace("đ", "d").replace("Đ", "D"))


def has_tone_marks(text: str) -> bool:
    """True if `text` has any Vietnamese diacritic (tone or vowel mark) or đ/Đ."""
    if text.isascii():
        return False
    decomposed = unicodedata.normalize("NFD", _SURROGATES.sub("", text))
    return any(char in _VIETNAMESE_MARKS or char in "đĐ" for char in decomposed)


# --- tokens -----------------------------------------------------------------------------------------

# Numbers as Vietnamese writes them stay whole: "11.085,046", "10.254", "92%", "100,52%",
# "15/6/2020", "8.225/8.941". A hyphen splits ("2020-2025" → "2020", "2025"; "01-CTr/TU" →
# "01", "ctr", "tu") because the same range is also written "2020 - 2025" and "2020 -2025", and a
# question should meet every spelling. Letter-led tokens may contain digits ("covid19", "f0").
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*(?:/\d+(?:[.,]\d+)*)*%?|[^\W\d_][^\W_]*")


def token_matches(text: str) -> list[re.Match[str]]:
    """Where `tokenize`'s tokens lie in `text` (normalised), one match each, in order."""
    return list(_TOKEN.finditer(text))


def tokenize(text: str) -> list[str]:
    """Lexical tokens: normalised, canonical tones, lowercase; one-letter syllables ("ở", "ý") kept."""
    return _TOKEN.findall(canonical_tones(normalize(text)).lower())


def vietnamese_share(text: str) -> float:
    """Share of the words of `text` that could be Vietnamese syllables once accents are gone (0.0 if no words).

    Tells a question typed without tone marks ("quan nam tu liem", ~1.0) from English ("how many points", ~0.2).
    """
    words = _WORD.findall(strip_accents(text).lower())
    if not words:
        return 0.0
    return sum(_tone_position(w.replace("d", "đ", 1) if w.startswith("d") else w) is not None for w in words) / len(
        words
    )
