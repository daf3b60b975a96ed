"""A question is classified once: with diacritics, without them, or another language."""

from __future__ import annotations

import pytest

from qa.query import Query


@pytest.mark.parametrize(
    ("question", "accented", "foreign"),
    [
        ("Ai chủ trì cuộc họp?", True, False),
        ("Đà Nẵng", True, False),  # đ alone marks it
        ("ai chu tri cuoc hop", False, False),
        ("quan nam tu liem co bao nhieu dang vien", False, False),
        ("who chaired the meeting", False, True),
        ("How many party members does Nam Tu Liem district have?", False, True),
    ],
)
def test_classification(question, accented, foreign):
    query = Query.parse(question)
    assert (query.accented, query.foreign) == (accented, foreign)
    assert query.folded == (not accented)


def test_text_is_normalised_and_stripped():
    assert Query.parse(" Ha\u0300   No\u0323\u0302i\u200b ").text == "Hà Nội"  # NFC, one space, no edges
