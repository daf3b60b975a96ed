"""The chat page end to end: a real uvicorn server over the seeded service, driven in headless Chromium.

Skips (with the reason) only outside CI when Chromium, chromedriver or selenium is missing; in CI (CI=true) a
missing browser fails the run: `make test` installs it first (`make browser`).
"""

from __future__ import annotations

import os
import re
from datetime import datetime

import pytest

from qa.api import create_app
from tests.web.browser import chromium, missing_browser, serve, set_viewport

QUESTION = "Ai chủ trì cuộc họp Ban chỉ đạo Chương trình 01?"
PAYLOAD = '<script>window.__xss=1</script><img src=x onerror="window.__xss=1">'
TIMEOUT = 60


@pytest.fixture(scope="module")
def base_url(service):
    with serve(create_app(service=service)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    reason = missing_browser()
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the browser tests must run in CI, but {reason}")
        pytest.skip(f"headless Chromium is not available: {reason}")
    with chromium(1200, 900) as driver:
        yield driver


@pytest.fixture
def page(browser, base_url):
    """The page freshly loaded at desktop size, its script ready."""
    set_viewport(browser, 1200, 900)
    browser.get(base_url + "/")
    wait(browser, lambda d: d.execute_script("return document.documentElement.classList.contains('js-ready')"))
    return browser


# --- helpers -----------------------------------------------------------------------------------------


def wait(driver, condition, timeout: float = TIMEOUT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def textarea(driver):
    return css(driver, "#question")[0]


def settled(driver, turns: int):
    """Waits until `turns` turns exist and none is still searching; returns the last turn."""
    wait(
        driver,
        lambda d: (
            len(css(d, ".turn")) == turns
            and not css(d, ".turn .status[role=status]")
            and d.execute_script("return document.getElementById('ask-form').getAttribute('aria-busy')") == "false"
        ),
    )
    return css(driver, ".turn")[-1]


def ask(driver, question: str, turns: int = 1):
    from selenium.webdriver.common.keys import Keys

    box = textarea(driver)
    box.send_keys(question)
    box.send_keys(Keys.ENTER)
    return settled(driver, turns)


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def click(driver, element) -> None:
    """Clicks as a person would: first scrolled clear of the sticky composer, to the middle of the screen."""
    js(driver, "arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", element)
    element.click()


# --- the API, asked directly -------------------------------------------------------------------------------


def api_ask(base_url: str, question: str, **options) -> dict:
    """POST /v1/ask to the page's own server, as the page asks it (5 hits a page)."""
    import httpx

    r = httpx.post(f"{base_url}/v1/ask", json={"question": question, "top_k": 5, **options}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()


def highlight_texts(hits) -> set[str]:
    return {"".join(list(h["text"])[s["start"] : s["end"]]) for h in hits for s in h["highlights"]}


def article_of(passage_id: str) -> str:
    return passage_id.rsplit(":", 1)[0]


def repeated(before: str, after: str, least: int = 10) -> int:
    """The longest run (at least `least` characters, from a word boundary) that ends `before` and begins `after`."""
    for k in range(min(len(before), len(after)), least - 1, -1):
        if before.endswith(after[:k]) and (k == len(before) or before[-k - 1].isspace()):
            return k
    return 0


def cards_of(driver, turn) -> list[dict]:
    """Each card of a turn as its article id, its DOM id and its passages (id, textContent, marked texts)."""
    return js(
        driver,
        """
        return [...arguments[0].querySelectorAll('.card')].map(card => ({
          id: card.id,
          article: card.dataset.articleId,
          passages: [...card.querySelectorAll('.passage')].map(p => ({
            id: p.dataset.passageId,
            text: p.textContent,
            marks: [...p.querySelectorAll('mark')].map(m => m.textContent),
          })),
        }));
        """,
        turn,
    )


def assert_grouped_without_repeats(cards: list[dict], hits: list[dict]) -> None:
    """One card per article, its passages in rank order, no text shown twice in a card, highlights intact."""
    articles = [c["article"] for c in cards]
    assert len(articles) == len(set(articles)), f"two cards for one article: {articles}"
    rank = {h["passage_id"]: i for i, h in enumerate(hits)}
    shown = [p["id"] for c in cards for p in c["passages"]]
    assert sorted(shown) == sorted(rank), "every hit is shown once, in its article's card"
    # Cards come in the rank of their best passage; passages within a card in rank order.
    assert [rank[c["passages"][0]["id"]] for c in cards] == sorted(rank[c["passages"][0]["id"]] for c in cards)
    for card in cards:
        ids = [p["id"] for p in card["passages"]]
        assert all(article_of(i) == card["article"] for i in ids), (card["article"], ids)
        assert [rank[i] for i in ids] == sorted(rank[i] for i in ids)
        texts = [p["text"] for p in card["passages"]]
        for a in texts:
            for b in texts:
                if a is not b:
                    assert not repeated(a, b), f"text repeated between passages of {card['article']}: {a!r} / {b!r}"
    # Every mark is a sentence the API highlighted, and every highlight of a shown hit is still marked in its card
    # (trimming moves a highlight in the dropped text to the passage that shows it).
    highlights = highlight_texts(hits)
    for card in cards:
        marks = {m for p in card["passages"] for m in p["marks"]}
        assert marks <= highlights, marks - highlights
        own = highlight_texts([h for h in hits if article_of(h["passage_id"]) == card["article"]])
        assert own <= marks, own - marks


# --- the reply and its sources -----------------------------------------------------------------------------


def test_a_question_without_tone_marks_shows_how_it_was_understood_and_asks_as_typed_in_one_click(page, base_url):
    typed = "quan Nam Tu Liem co bao nhieu dang vien?"
    understood = api_ask(base_url, typed)["understood_as"]
    assert understood == "quận Nam Từ Liêm có bao nhiêu đảng viên?"
    turn = ask(page, typed)
    assert css(turn, ".question-bubble")[0].text == typed
    note = css(turn, ".understood")[0]
    assert note.text.startswith("Đã hiểu là: ") and css(note, ".understood-text")[0].text == understood
    # Above the reply, which follows as for any question.
    assert js(page, "return arguments[0].querySelector('.answer').firstElementChild", turn) == note
    assert css(turn, ".reply")[0].is_displayed()
    click(page, css(note, ".as-typed")[0])
    again = settled(page, 2)
    assert css(again, ".question-bubble")[0].text == typed
    assert css(again, ".as-typed-note")[0].text == "Hỏi đúng như đã gõ"
    assert not css(again, ".understood") and css(again, ".card")
    # A question typed with its marks says nothing of the kind.
    assert not css(ask(page, QUESTION, turns=3), ".understood")


def test_the_answer_comes_first_as_the_reply_with_its_source(page, base_url):
    expected = api_ask(base_url, QUESTION)
    answer = expected["answer"]
    assert answer is not None, "the service no longer answers the test question with a sentence"
    turn = ask(page, QUESTION)
    assert css(turn, ".question-bubble")[0].text == QUESTION
    assert textarea(page).get_attribute("value") == ""  # cleared for the next question
    # The reply is the first thing under the question, before the summary and the cards.
    first = js(page, "return arguments[0].querySelector('.answer').firstElementChild", turn)
    reply = css(turn, ".reply")[0]
    assert first == reply and reply.is_displayed()
    assert js(page, "return !!(arguments[0].compareDocumentPosition(arguments[1]) & 4)", reply, css(turn, ".cards")[0])
    assert css(reply, ".reply-label")[0].text == "Câu trả lời"
    assert js(page, "return arguments[0].querySelector('.reply-text').textContent", reply) == answer["text"]
    # Its source line: the article's title (a link to its card), source, date and how sure.
    hit = next(h for h in expected["hits"] if h["passage_id"] == answer["passage_id"])
    article = hit["article"]
    assert css(reply, ".reply-link")[0].text == article["title"]
    assert css(reply, ".source")[0].text == article["source"]
    assert css(reply, "time.date")[0].text == "11/04/2019 16:37"
    assert css(reply, ".confidence")[0].text == f"Độ tin cậy: {int(answer['score'] * 100 + 0.5)}%"
    card = css(turn, "#" + css(reply, ".reply-link")[0].get_attribute("href").split("#", 1)[1])[0]
    assert card.get_attribute("data-article-id") == article["id"]


def test_sources_are_cards_per_article_with_the_answer_highlighted(page, base_url):
    expected = api_ask(base_url, QUESTION)
    turn = ask(page, QUESTION)
    assert_grouped_without_repeats(cards_of(page, turn), expected["hits"])
    antd = [c for c in css(turn, ".card") if c.get_attribute("data-source") == "ANTD.VN"]
    assert len(antd) == 1, "the ANTD.VN article's passages share one card"
    card = antd[0]
    marks = [m.text for m in css(card, "mark.answer-mark")]
    assert any("Hoàng Trung Hải" in m for m in marks), f"'Hoàng Trung Hải' is not highlighted; marks: {marks}"
    assert css(card, ".card-title")[0].text.startswith("Hà Nội kiện toàn Ban chỉ đạo")
    assert css(card, ".meta .source")[0].text == "ANTD.VN"
    date = css(card, ".meta time.date")[0]
    assert date.text == "11/04/2019 16:37" and date.get_attribute("datetime").startswith("2019-04-11T16:37")
    scores = [s.text for s in css(card, ".passage-meta .score")]
    assert len(scores) == len(css(card, ".passage")) > 1
    assert all(re.fullmatch(r"Độ phù hợp \d+,\d\d", s) for s in scores), scores
    # The summary says what came back; the search state is gone.
    assert "Tìm thấy" in css(turn, ".summary")[0].text


def test_the_answer_link_leads_to_its_card(page, base_url):
    answer = api_ask(base_url, QUESTION)["answer"]
    assert answer is not None
    ask(page, "Quận Đống Đa thu ngân sách năm 2020 được bao nhiêu?")
    turn = ask(page, QUESTION, turns=2)
    link = css(turn, ".reply-link")[0]
    target = link.get_attribute("href").split("#", 1)[1]
    card = css(turn, ".card#" + target)[0]
    assert card.get_attribute("data-article-id") == article_of(answer["passage_id"])
    assert answer["passage_id"] in [p.get_attribute("data-passage-id") for p in css(card, ".passage")]
    js(page, "window.scrollTo(0, 0);")  # the card is off screen, below the first turn
    wait(page, lambda d: js(d, "return arguments[0].getBoundingClientRect().top > innerHeight", card))
    click(page, link)
    # Focus moves to the card and the card scrolls to the top of the window (or as far as the page scrolls).
    wait(page, lambda d: js(d, "return document.activeElement") == card)
    wait(
        page,
        lambda d: js(
            d,
            """
            const top = arguments[0].getBoundingClientRect().top;
            const end = scrollY + innerHeight >= document.documentElement.scrollHeight - 1;
            return top >= 0 && (top <= 40 || end) && top < innerHeight / 2;
            """,
            card,
        ),
    )
    outline = js(page, "const s = getComputedStyle(arguments[0]); return [s.outlineStyle, s.outlineWidth];", card)
    assert outline[0] != "none" and outline[1] != "0px", outline


NO_ANSWER_QUESTION = "Thời tiết hôm nay thế nào?"


def test_no_single_sentence_answer_says_so_and_shows_the_sources(page, base_url):
    expected = api_ask(base_url, NO_ANSWER_QUESTION)
    assert expected["answer"] is None and expected["hits"], "the test question now gets an answer: pick another"
    turn = ask(page, NO_ANSWER_QUESTION)
    reply = css(turn, ".reply")[0]
    assert reply.is_displayed() and "reply-none" in reply.get_attribute("class").split()
    assert css(reply, ".reply-text")[0].text.startswith("Không có câu nào trả lời trực tiếp")
    assert not css(reply, "a") and not css(reply, ".confidence")
    assert_grouped_without_repeats(cards_of(page, turn), expected["hits"])


# A question whose first page holds passages of one article that overlap (the chunker repeats a sentence across
# each boundary) in both directions of rank: a later-ranked passage that ends with the start of an earlier one.
OVERLAP_QUESTION = "Quận Nam Từ Liêm có bao nhiêu đảng viên?"


def test_overlapping_passages_of_an_article_show_their_shared_text_once(page, base_url):
    hits = api_ask(base_url, OVERLAP_QUESTION)["hits"]
    pairs = [
        (a["passage_id"], b["passage_id"])
        for i, a in enumerate(hits)
        for b in hits[i + 1 :]
        if article_of(a["passage_id"]) == article_of(b["passage_id"])
        and (repeated(a["text"], b["text"]) or repeated(b["text"], a["text"]))
    ]
    assert pairs, "the test question's hits no longer overlap: pick another"
    turn = ask(page, OVERLAP_QUESTION)
    cards = cards_of(page, turn)
    assert_grouped_without_repeats(cards, hits)
    for first, second in pairs:  # the shared sentence is in the card once
        a, b = (next(h["text"] for h in hits if h["passage_id"] == p) for p in (first, second))
        shared = a[-repeated(a, b) :] if repeated(a, b) else b[-repeated(b, a) :]
        card = next(c for c in cards if c["article"] == article_of(first))
        assert sum(p["text"].count(shared.strip()) for p in card["passages"]) == 1, shared


def test_show_more_merges_hits_into_their_cards_and_previous_turns_stay(page, base_url):
    pages = [api_ask(base_url, QUESTION)["hits"], api_ask(base_url, QUESTION, offset=5)["hits"]]
    first = ask(page, QUESTION)
    before = {c["article"]: len(c["passages"]) for c in cards_of(page, first)}
    more = css(first, "button.more")[0]
    assert more.is_displayed() and more.text == "Xem thêm"
    click(page, more)
    wait(page, lambda d: len(css(first, ".passage")) > 5 and not css(first, ".status[role=status]"))
    cards = cards_of(page, first)
    assert_grouped_without_repeats(cards, pages[0] + pages[1])
    new_articles = {article_of(h["passage_id"]) for h in pages[1]}
    assert [c["article"] for c in cards][: len(before)] == list(before)  # earlier cards stay where they were
    merged = new_articles & set(before)
    assert merged, "the next page has no passage of an article already shown: pick another question"
    for card in cards:
        if card["article"] in merged:
            assert len(card["passages"]) > before[card["article"]]
    # Focus moved to the first new passage (or card) for keyboard and screen-reader users.
    first_new = pages[1][0]["passage_id"]
    assert js(
        page,
        "const a = document.activeElement; return a.matches('.passage-item, .card') "
        "&& !!a.querySelector('.passage[data-passage-id=\"' + arguments[0] + '\"]');",
        first_new,
    )

    second = ask(page, OVERLAP_QUESTION, turns=2)
    assert len(css(page, ".turn")) == 2 and len(css(first, ".passage")) == 10  # the earlier turn is still there
    assert "10.254 đảng viên" in " ".join(m.text for m in css(second, "mark.answer-mark"))
    # The new turn was scrolled into view.
    wait(
        page,
        lambda d: js(
            d, "const r = arguments[0].getBoundingClientRect(); return r.top < innerHeight && r.bottom > 0;", second
        ),
    )


def test_dates_are_formatted_dd_mm_yyyy_hh_mm(page):
    turn = ask(page, "Quận Đống Đa thu ngân sách năm 2020 được bao nhiêu?")
    dates = [t.text for t in css(turn, "time.date")]
    assert dates and all(re.fullmatch(r"\d\d/\d\d/\d{4} \d\d:\d\d", d) for d in dates), dates
    assert "15/01/2021 11:53" in dates


def test_example_questions_are_clickable_and_the_empty_state_goes(page):
    empty = css(page, "#empty-state")[0]
    examples = css(page, "button.example")
    assert empty.is_displayed() and 3 <= len(examples) <= 4
    text = examples[0].text
    examples[0].click()
    turn = settled(page, 1)
    assert css(turn, ".question-bubble")[0].text == text
    assert css(turn, ".reply") and css(turn, ".card") and not empty.is_displayed()


# --- the composer ----------------------------------------------------------------------------------------


def test_shift_enter_breaks_the_line_and_enter_sends(page):
    from selenium.webdriver.common.keys import Keys

    box = textarea(page)
    box.send_keys("Quận Đống Đa")
    box.send_keys(Keys.SHIFT, Keys.ENTER)  # the chord: Shift held while Enter is pressed
    box.send_keys("thu ngân sách bao nhiêu?")
    assert box.get_attribute("value") == "Quận Đống Đa\nthu ngân sách bao nhiêu?"
    assert not css(page, ".turn")
    box.send_keys(Keys.ENTER)
    turn = settled(page, 1)
    bubble = css(turn, ".question-bubble")[0]
    assert js(page, "return arguments[0].textContent", bubble) == "Quận Đống Đa\nthu ngân sách bao nhiêu?"


def test_an_empty_question_is_not_sent(page):
    from selenium.webdriver.common.keys import Keys

    js(
        page,
        """
        window.__asked = 0;
        const real = window.fetch;
        window.fetch = function () { window.__asked++; return real.apply(this, arguments); };
        """,
    )
    box = textarea(page)
    box.send_keys("   ")
    box.send_keys(Keys.ENTER)
    css(page, "#send")[0].click()
    assert js(page, "return window.__asked") == 0 and not css(page, ".turn")
    assert box.get_attribute("aria-invalid") == "true"
    assert "Hãy nhập câu hỏi" in css(page, "#composer-hint")[0].text


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (422, "Yêu cầu không hợp lệ"),
        (503, "Hệ thống đang khởi động"),
        (500, "Máy chủ gặp lỗi"),
        (0, "Không kết nối được tới máy chủ"),
    ],
)
def test_errors_show_in_the_conversation_in_vietnamese(page, status, expected):
    # The server is healthy, so its failures are staged in the page: fetch answers with the API's error shape
    # (or fails like a dropped connection) once, then the real one comes back for "Thử lại".
    js(
        page,
        """
        const real = window.fetch, status = arguments[0];
        window.fetch = function () {
          window.fetch = real;
          if (status === 0) return Promise.reject(new TypeError('Failed to fetch'));
          const body = {error: {code: 'x', message: 'question: String should have at least 1 character', detail: null}};
          const headers = {'Content-Type': 'application/json'};
          return Promise.resolve(new Response(JSON.stringify(body), {status: status, headers: headers}));
        };
        """,
        status,
    )
    turn = ask(page, QUESTION)
    error = css(turn, ".error[role=alert]")
    assert error and expected in error[0].text
    assert not css(turn, ".card")
    click(page, css(turn, ".error button")[0])  # "Thử lại" asks again, for real this time
    wait(page, lambda d: css(turn, ".card") and not css(turn, ".error"))


def test_a_real_422_from_the_server_is_shown_in_vietnamese(page):
    # A question the API refuses (over 2,000 characters); the textarea's maxlength stops typing, not scripts.
    js(page, "document.getElementById('question').removeAttribute('maxlength');")
    js(page, "document.getElementById('question').value = 'x'.repeat(2001);")
    css(page, "#send")[0].click()
    turn = settled(page, 1)
    assert "Yêu cầu không hợp lệ" in css(turn, ".error[role=alert]")[0].text


def test_filters_by_source_and_by_date_range(page):
    css(page, "#filters summary")[0].click()
    css(page, "#f-sources")[0].send_keys("HNP")
    assert css(page, "#filters-summary")[0].text == "Bộ lọc (đang bật)"
    turn = ask(page, QUESTION)
    assert "nguồn HNP" in css(turn, ".filter-note")[0].text
    sources = {c.get_attribute("data-source") for c in css(turn, ".card")}
    assert sources == {"HNP"}

    click(page, css(page, "#f-clear")[0])
    # The only article of 01/04–11/04/2019 was published on the last day at 16:37: the end date is inclusive.
    js(
        page,
        """
        for (const [id, value] of [['f-from', '2019-04-01'], ['f-to', '2019-04-11']]) {
          const input = document.getElementById(id);
          input.value = value;
          input.dispatchEvent(new Event('input', {bubbles: true}));
        }
        """,
    )
    turn = ask(page, "Hạn hoàn thành đại hội tổ chức cơ sở Đảng là ngày nào?", turns=2)
    assert "từ 01/04/2019 · đến 11/04/2019" in css(turn, ".filter-note")[0].text
    dates = {t.text for t in css(turn, "time.date")}
    assert dates == {"11/04/2019 16:37"}


# --- safety ------------------------------------------------------------------------------------------------


def test_a_question_with_markup_shows_literally_and_runs_nothing(page):
    turn = ask(page, PAYLOAD)
    bubble = css(turn, ".question-bubble")[0]
    assert js(page, "return arguments[0].textContent", bubble) == PAYLOAD
    assert not css(page, ".turns img, .turns script")
    assert js(page, "return typeof window.__xss") == "undefined"


def test_an_article_with_markup_shows_literally_and_runs_nothing(page, base_url, service):
    from qa.domain import Article

    article = Article(
        id="web_xss_test",
        title=f"Kỳ lân bảy màu xuất hiện ở Hồ Gươm {PAYLOAD}",
        body=f"Sáng nay kỳ lân bảy màu xuất hiện ở Hồ Gươm. {PAYLOAD} Người dân kéo đến xem kỳ lân bảy màu rất đông.",
        published_at=datetime(2024, 5, 1, 8, 5),
        source="<b>XSS</b>",
        author=None,
        url="javascript:window.__xss=1",
    )
    service.indexer.add([article], origin="api")
    try:
        turn = ask(page, "Kỳ lân bảy màu xuất hiện ở đâu?")
        cards = [c for c in css(turn, ".card") if "Kỳ lân bảy màu" in c.text]
        assert cards, "the test article was not retrieved"
        card = cards[0]
        assert PAYLOAD in js(page, "return arguments[0].querySelector('.card-title').textContent", card)
        assert PAYLOAD in js(page, "return arguments[0].querySelector('.passage').textContent", card)
        assert css(card, ".source")[0].text == "<b>XSS</b>"
        assert not css(card, "a")  # a javascript: URL is never made a link
        answer = api_ask(base_url, "Kỳ lân bảy màu xuất hiện ở đâu?")["answer"]
        if answer is not None:  # the reply shows the answer as text too, whichever article it comes from
            assert js(page, "return arguments[0].querySelector('.reply-text').textContent", turn) == answer["text"]
        assert not css(page, ".turns img, .turns script, .turns b")
        assert js(page, "return typeof window.__xss") == "undefined"
    finally:
        service.indexer.delete([article.id])


def test_csp_header_forbids_inline_code(base_url):
    import urllib.request

    for path in ("/", "/static/app.js", "/static/app.css"):
        with urllib.request.urlopen(base_url + path) as response:
            csp = response.headers["Content-Security-Policy"]
        assert csp and "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp


# --- layout and keyboard -------------------------------------------------------------------------------


def no_horizontal_scroll(driver, width: int) -> bool:
    return js(driver, "return document.documentElement.scrollWidth") <= width


def test_375px_layout_has_no_horizontal_scroll(page):
    set_viewport(page, 375, 812, mobile=True)
    page.refresh()
    wait(page, lambda d: js(d, "return document.documentElement.classList.contains('js-ready')"))
    assert js(page, "return innerWidth") == 375
    assert no_horizontal_scroll(page, 375)
    css(page, "#filters summary")[0].click()
    assert css(page, "#f-from")[0].is_displayed() and no_horizontal_scroll(page, 375)
    ask(page, QUESTION + " " + "Chương_trình_01-CTr/TU_của_Thành_ủy_" * 4)  # an unbreakable long word too
    assert css(page, ".turn .reply") and css(page, ".turn .card") and no_horizontal_scroll(page, 375)
    # The composer stays on screen and the send button stays inside the viewport.
    right = js(page, "return document.getElementById('send').getBoundingClientRect().right")
    assert right <= 375


def test_keyboard_only_use_with_visible_focus(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    def tab_until(predicate, limit=15, back=False):
        for _ in range(limit):
            if back:
                ActionChains(page).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT).perform()
            else:
                ActionChains(page).send_keys(Keys.TAB).perform()
            if js(page, predicate):
                return True
        return False

    assert tab_until("return document.activeElement.classList.contains('example')")
    focused = page.switch_to.active_element
    outline = js(page, "const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth];")
    assert outline[0] != "none" and outline[1] != "0px", outline
    text = focused.text
    ActionChains(page).send_keys(Keys.ENTER).perform()
    turn = settled(page, 1)
    assert css(turn, ".question-bubble")[0].text == text
    # Back from the question box to the reply's link; Enter on it moves focus to the answer's card.
    assert js(page, "return document.activeElement.id") == "question"
    assert tab_until("return document.activeElement.classList.contains('reply-link')", limit=40, back=True)
    ActionChains(page).send_keys(Keys.ENTER).perform()
    card = css(turn, ".card#" + css(turn, ".reply-link")[0].get_attribute("href").split("#", 1)[1])[0]
    wait(page, lambda d: js(d, "return document.activeElement") == card)
    outline = js(page, "const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth];")
    assert outline[0] != "none" and outline[1] != "0px", outline
    # The filters open from the keyboard too, and every input has a label.
    assert tab_until("return document.activeElement.id === 'filters-summary'", limit=40)
    ActionChains(page).send_keys(Keys.ENTER).perform()
    assert css(page, "#f-from")[0].is_displayed()
    unlabeled = js(
        page,
        "return [...document.querySelectorAll('input, textarea, select')]"
        ".filter(e => !(e.labels && e.labels.length)).map(e => e.id);",
    )
    assert unlabeled == []


CONTRAST_JS = """
function rgb(s) { const m = s.match(/[\\d.]+/g).map(Number); return {c: m.slice(0, 3), a: m.length > 3 ? m[3] : 1}; }
function lum(c) {
  const v = c.map(x => { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
  return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
}
function background(el) {
  for (; el; el = el.parentElement) {
    const b = rgb(getComputedStyle(el).backgroundColor);
    if (b.a > 0.5) return b.c;
  }
  return [255, 255, 255];
}
const failures = [];
for (const el of document.querySelectorAll(arguments[0])) {
  if (!el.offsetParent && getComputedStyle(el).position !== 'fixed') continue;
  const s = getComputedStyle(el);
  const fg = lum(rgb(s.color).c), bg = lum(background(el));
  const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
  const large = parseFloat(s.fontSize) >= 24 || (parseFloat(s.fontSize) >= 18.66 && Number(s.fontWeight) >= 700);
  if (ratio < (large ? 3 : 4.5)) failures.push([el.className || el.tagName, s.color, ratio.toFixed(2)]);
}
return failures;
"""
TEXT = (
    "h1, h2, h3, p, a, button, summary, label, mark, time, span.source, span.score, span.date, span.confidence, "
    "textarea, input, .question-bubble, .reply-label, .reply-text"
)


def test_text_contrast_passes_wcag_aa(page):
    assert js(page, CONTRAST_JS, TEXT) == []  # the empty state
    ask(page, QUESTION)
    css(page, "#filters summary")[0].click()
    assert js(page, CONTRAST_JS, TEXT) == []  # the reply, cards, marks, the open filters
    ask(page, NO_ANSWER_QUESTION, turns=2)
    assert css(page, ".reply-none") and js(page, CONTRAST_JS, TEXT) == []  # no single sentence answers
    js(page, "window.fetch = () => Promise.reject(new TypeError('offline'));")
    ask(page, QUESTION, turns=3)
    assert css(page, ".error") and js(page, CONTRAST_JS, TEXT) == []  # an error
