// The chat page: a question becomes a turn (a bubble, the answer sentence as the reply, then its sources from
// POST /v1/ask grouped into one card per article).
// Every piece of server or user text goes into the DOM as text (textContent / text nodes), never as HTML.
'use strict';

(function () {
  const PAGE_SIZE = 5;
  const MAX_TOP_K = 50; // the API's limit for top_k
  const reduceMotion = window.matchMedia('(prefers-reduced-motion: reduce)').matches;

  const form = document.getElementById('ask-form');
  const input = document.getElementById('question');
  const sendButton = document.getElementById('send');
  const hint = document.getElementById('composer-hint');
  const turns = document.getElementById('turns');
  const emptyState = document.getElementById('empty-state');
  const announcer = document.getElementById('announcer');
  const filters = {
    from: document.getElementById('f-from'),
    to: document.getElementById('f-to'),
    sources: document.getElementById('f-sources'),
    onePerArticle: document.getElementById('f-one'),
    summary: document.getElementById('filters-summary'),
    clear: document.getElementById('f-clear'),
    known: document.getElementById('known-sources'),
  };
  const HINT_TEXT = hint.textContent;
  const knownSources = new Set();
  let busy = false;
  let turnCount = 0;

  // --- small DOM helpers -------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function announce(message) {
    announcer.textContent = '';
    window.setTimeout(function () { announcer.textContent = message; }, 50);
  }

  function scrollToNode(node, block) {
    node.scrollIntoView({ block: block || 'start', behavior: reduceMotion ? 'auto' : 'smooth' });
  }

  // --- formatting ----------------------------------------------------------------------------------

  // "2019-04-11T16:37:00" (naive Vietnam time) -> "11/04/2019 16:37"; parsed by hand so no timezone shifts it.
  function formatDate(iso) {
    const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}))?/.exec(iso || '');
    if (!m) return null;
    const day = m[3] + '/' + m[2] + '/' + m[1];
    return m[4] ? day + ' ' + m[4] + ':' + m[5] : day;
  }

  function formatScore(score) {
    return Number(score).toLocaleString('vi-VN', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  function safeUrl(url) {
    return typeof url === 'string' && /^https?:\/\//i.test(url) ? url : null;
  }

  // The passage as text nodes with the answer spans wrapped in <mark>. Offsets are Python string indices
  // (code points), so the text is split into code points before slicing.
  function passageWithHighlights(text, spans) {
    const chars = Array.from(text || '');
    const ranges = (spans || [])
      .map(function (s) { return [Math.max(0, s.start | 0), Math.min(chars.length, s.end | 0)]; })
      .filter(function (r) { return r[1] > r[0]; })
      .sort(function (a, b) { return a[0] - b[0]; });
    const fragment = document.createDocumentFragment();
    let pos = 0;
    ranges.forEach(function (r) {
      const start = Math.max(r[0], pos);
      if (r[1] <= start) return; // overlaps one already drawn
      if (start > pos) fragment.appendChild(document.createTextNode(chars.slice(pos, start).join('')));
      fragment.appendChild(el('mark', 'answer-mark', chars.slice(start, r[1]).join('')));
      pos = r[1];
    });
    if (pos < chars.length) fragment.appendChild(document.createTextNode(chars.slice(pos).join('')));
    return fragment;
  }

  // --- filters -------------------------------------------------------------------------------------

  function readFilters() {
    const sources = filters.sources.value.split(',').map(function (s) { return s.trim(); }).filter(Boolean);
    const f = {};
    if (filters.from.value) f.published_from = filters.from.value;
    if (filters.to.value) f.published_to = filters.to.value + 'T23:59:59'; // the whole last day (inclusive)
    if (sources.length) f.sources = sources;
    return f;
  }

  function describeFilters(request) {
    const parts = [];
    const f = request.filters || {};
    if (f.published_from) parts.push('từ ' + formatDate(f.published_from.slice(0, 10)));
    if (f.published_to) parts.push('đến ' + formatDate(f.published_to.slice(0, 10)));
    if (f.sources) parts.push('nguồn ' + f.sources.join(', '));
    if (request.one_per_article) parts.push('mỗi bài một đoạn');
    return parts.length ? 'Bộ lọc: ' + parts.join(' · ') : '';
  }

  function updateFilterSummary() {
    const active = Object.keys(readFilters()).length > 0 || filters.onePerArticle.checked;
    filters.summary.textContent = active ? 'Bộ lọc (đang bật)' : 'Bộ lọc';
  }

  function rememberSources(hits) {
    hits.forEach(function (hit) {
      const source = hit.article && hit.article.source;
      if (source && !knownSources.has(source)) {
        knownSources.add(source);
        const option = document.createElement('option');
        option.value = source;
        filters.known.appendChild(option);
      }
    });
  }

  // --- talking to the API --------------------------------------------------------------------------

  function ApiError(status, message, detail) {
    this.status = status;
    this.message = message;
    this.detail = detail;
  }

  async function postAsk(body) {
    let response;
    try {
      response = await fetch('/v1/ask', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, String(err && err.message ? err.message : err));
    }
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(response.status, error.message || response.statusText, error.detail);
    }
    if (!data || !Array.isArray(data.hits)) throw new ApiError(502, 'unexpected response');
    return data;
  }

  // Later pages: `offset` paging; an API without `offset` (422 naming it) gets a larger top_k instead.
  async function fetchPage(state) {
    const request = Object.assign({}, state.request, { top_k: PAGE_SIZE });
    if (state.shown > 0 && !state.noOffset) {
      request.offset = state.shown;
      try {
        return (await postAsk(request)).hits;
      } catch (err) {
        if (!(err.status === 422 && JSON.stringify(err.detail || '').indexOf('offset') >= 0)) throw err;
        state.noOffset = true;
      }
    }
    if (state.shown > 0) {
      delete request.offset;
      request.top_k = Math.min(MAX_TOP_K, state.shown + PAGE_SIZE);
      return (await postAsk(request)).hits.slice(state.shown);
    }
    const data = await postAsk(request);
    state.total = data.total;
    state.tookMs = data.took_ms;
    state.replyData = data.answer; // an object, null (no sentence answers), or undefined (an API without `answer`)
    state.understoodAs = data.understood_as || null; // the question with its tone marks restored, or null
    return data.hits;
  }

  function errorMessage(err) {
    switch (true) {
      case err.status === 0:
        return 'Không kết nối được tới máy chủ. Hãy kiểm tra kết nối mạng rồi thử lại.';
      case err.status === 422:
        return 'Yêu cầu không hợp lệ: câu hỏi cần từ 1 đến 2.000 ký tự và bộ lọc phải đúng định dạng. Hãy sửa lại rồi gửi lại.';
      case err.status === 503:
        return 'Hệ thống đang khởi động (nạp mô hình và chỉ mục). Vui lòng thử lại sau vài giây.';
      case err.status === 429:
        return 'Bạn gửi câu hỏi quá nhanh. Vui lòng chờ một chút rồi thử lại.';
      case err.status === 413:
        return 'Câu hỏi quá dài. Hãy rút gọn rồi thử lại.';
      case err.status >= 500:
        return 'Máy chủ gặp lỗi khi xử lý câu hỏi. Vui lòng thử lại sau.';
      default:
        return 'Đã xảy ra lỗi (mã ' + err.status + '). Vui lòng thử lại.';
    }
  }

  // --- rendering -----------------------------------------------------------------------------------

  // The chunker repeats whole sentences across a passage boundary; a run shorter than this is a coincidence.
  const MIN_OVERLAP = 10;

  function titleOf(article) {
    return article.title || 'Không có tiêu đề';
  }

  // The article's source and date, as in a card: "ANTD.VN 11/04/2019 16:37".
  function appendSourceAndDate(parent, article) {
    if (article.source) parent.appendChild(el('span', 'source', article.source));
    const date = formatDate(article.published_at);
    if (date) {
      const time = el('time', 'date', date);
      time.dateTime = article.published_at;
      parent.appendChild(time);
    } else {
      parent.appendChild(el('span', 'date', 'Không rõ ngày đăng'));
    }
  }

  function scoreNode(hit) {
    const score = el('span', 'score', 'Độ phù hợp ' + formatScore(hit.score));
    const s = hit.scores || {};
    const parts = [];
    if (typeof s.dense === 'number') parts.push('ngữ nghĩa ' + formatScore(s.dense));
    if (typeof s.lexical === 'number') parts.push('từ khoá ' + formatScore(s.lexical));
    if (parts.length) score.title = parts.join(', ');
    return score;
  }

  function articleKey(hit) {
    const id = hit.article && hit.article.id;
    return id || String(hit.passage_id || '').replace(/:[^:]*$/, '');
  }

  // One card per article: title (a link for an http(s) URL), source and date, then its passages in rank order.
  // `titleSpans` marks the title when the title itself is the answer.
  function renderCard(state, hit, titleSpans) {
    const article = hit.article || {};
    state.cardCount += 1;
    const card = el('article', 'card');
    card.id = state.id + '-bai-' + state.cardCount; // our own ids: an article id may hold any character
    card.tabIndex = -1; // the reply's link and "Xem thêm" move focus here
    card.setAttribute('data-article-id', articleKey(hit));
    card.setAttribute('data-source', article.source || '');

    const title = el('h3', 'card-title');
    const url = safeUrl(article.url);
    let holder = title;
    if (url) {
      holder = el('a');
      holder.href = url;
      holder.rel = 'noopener noreferrer';
      holder.target = '_blank';
      title.appendChild(holder);
    }
    holder.appendChild(passageWithHighlights(titleOf(article), article.title ? titleSpans : []));
    card.appendChild(title);

    const meta = el('p', 'meta');
    appendSourceAndDate(meta, article);
    card.appendChild(meta);

    const list = el('ol', 'passages');
    card.appendChild(list);
    return { card: card, list: list, shown: [] };
  }

  function isSpace(c) {
    return c === undefined || /\s/.test(c);
  }

  // The longest k (at least MIN_OVERLAP) such that the first k characters of `after` are the last k of `before`,
  // starting and ending at word boundaries; 0 when there is none. Both are arrays of code points.
  function overlap(before, after) {
    for (let k = Math.min(before.length, after.length); k >= MIN_OVERLAP; k--) {
      const at = before.length - k;
      if (before[at] !== after[0] || !isSpace(before[at - 1]) || !isSpace(after[k])) continue;
      let same = true;
      for (let i = 1; i < k && same; i++) same = before[at + i] === after[i];
      if (same) return k;
    }
    return 0;
  }

  function addSpan(entry, start, end) {
    if (end <= start) return false;
    if (entry.spans.some(function (r) { return r[0] === start && r[1] === end; })) return false;
    entry.spans.push([start, end]);
    return true;
  }

  function drawPassage(entry) {
    const text = entry.chars.slice(entry.from, entry.to).join('');
    const spans = entry.spans.map(function (r) { return { start: r[0] - entry.from, end: r[1] - entry.from }; });
    entry.node.textContent = '';
    entry.node.appendChild(passageWithHighlights(text, spans));
  }

  // Adds a hit's passage to its article's card, without the text it shares with a passage already shown there:
  // a beginning that repeats the end of one, or an end that repeats the beginning of one (passages arrive in rank
  // order, not in the order of the article). A highlight in the dropped text moves to the passage that shows it.
  // Returns the new list item, or null when nothing of the passage is new.
  function addPassage(group, hit, extraSpans) {
    const chars = Array.from(hit.text || '');
    const spans = (hit.highlights || [])
      .map(function (s) { return [s.start | 0, s.end | 0]; })
      .concat(extraSpans || []);
    let head = 0;
    let headOwner = null;
    let tail = 0;
    let tailOwner = null;
    group.shown.forEach(function (other) {
      const h = overlap(other.chars, chars);
      if (h > head) { head = h; headOwner = other; }
      const t = overlap(chars, other.chars);
      if (t > tail) { tail = t; tailOwner = other; }
    });
    const tailStart = chars.length - tail;
    const changed = new Set();
    spans.forEach(function (r) {
      if (headOwner && r[0] < head) {
        const base = headOwner.chars.length - head;
        if (addSpan(headOwner, base + r[0], base + Math.min(r[1], head))) changed.add(headOwner);
      }
      if (tailOwner && r[1] > tailStart) {
        if (addSpan(tailOwner, Math.max(r[0], tailStart) - tailStart, r[1] - tailStart)) changed.add(tailOwner);
      }
    });
    changed.forEach(drawPassage);

    let from = head;
    let to = tailStart;
    while (from < to && isSpace(chars[from])) from++;
    while (to > from && isSpace(chars[to - 1])) to--;
    if (from >= to) return null;

    const entry = {
      chars: chars, from: from, to: to,
      spans: spans.filter(function (r) { return r[1] > from && r[0] < to; }),
      node: el('p', 'passage'),
    };
    entry.node.setAttribute('data-passage-id', hit.passage_id || '');
    drawPassage(entry);
    const item = el('li', 'passage-item');
    item.appendChild(entry.node);
    const meta = el('p', 'passage-meta');
    meta.appendChild(scoreNode(hit));
    item.appendChild(meta);
    group.list.appendChild(item);
    group.shown.push(entry);
    return item;
  }

  // Puts hits into their article's card (a new card, at the end, for an article not yet shown in this turn).
  // Returns the first new card or passage, for focus after "Xem thêm".
  function placeHits(state, hits, answer) {
    let firstNew = null;
    const answerHit = answer ? hits.find(function (h) { return h.passage_id === answer.passage_id; }) : null;
    const titleKey = answerHit && answer.in_title ? articleKey(answerHit) : null;
    hits.forEach(function (hit) {
      const key = articleKey(hit);
      const isAnswer = hit === answerHit;
      let group = state.groups.get(key);
      let created = false;
      if (!group) {
        const titleSpans = key === titleKey ? [{ start: answer.start, end: answer.end }] : [];
        group = renderCard(state, hit, titleSpans);
        state.groups.set(key, group);
        const li = el('li');
        li.appendChild(group.card);
        state.cards.appendChild(li);
        created = true;
      }
      const extra = isAnswer && !answer.in_title ? [[answer.start | 0, answer.end | 0]] : [];
      const item = addPassage(group, hit, extra);
      if (isAnswer) state.answerCard = group.card;
      if (!firstNew && (created || item)) firstNew = created ? group.card : item;
    });
    return firstNew;
  }

  function confidenceText(score) {
    const percent = Math.max(0, Math.min(100, Math.round(Number(score) * 100)));
    return 'Độ tin cậy: ' + percent + '%';
  }

  // The reply on top of a turn: the answer sentence with where it comes from and how sure it is; or, when no
  // single sentence answers, a line saying so above the sources.
  function renderReply(state, answer, hits) {
    const box = state.reply;
    box.textContent = '';
    box.appendChild(el('p', 'reply-label', 'Câu trả lời'));
    if (!hits.length) {
      box.classList.add('reply-none');
      box.appendChild(el('p', 'reply-text', 'Không tìm thấy đoạn văn nào phù hợp. Hãy thử diễn đạt khác hoặc bỏ bớt bộ lọc.'));
      return 'Không tìm thấy đoạn văn nào phù hợp.';
    }
    const hit = answer ? hits.find(function (h) { return h.passage_id === answer.passage_id; }) : null;
    if (!answer || !answer.text) {
      box.classList.add('reply-none');
      box.appendChild(el('p', 'reply-text', 'Không có câu nào trả lời trực tiếp câu hỏi; các nguồn liên quan:'));
      return 'Không có câu nào trả lời trực tiếp câu hỏi. Có ' + state.groups.size + ' bài báo liên quan.';
    }
    box.appendChild(el('p', 'reply-text', answer.text));
    const article = (hit && hit.article) || answer.article || {};
    const card = hit && state.answerCard;
    const from = el('p', 'reply-source', answer.in_title ? 'Là tiêu đề của bài ' : 'Trích từ bài ');
    if (card) {
      const link = el('a', 'reply-link', titleOf(article));
      link.href = '#' + card.id;
      link.addEventListener('click', function (event) {
        event.preventDefault();
        card.focus({ preventScroll: true });
        scrollToNode(card, 'start');
      });
      from.appendChild(link);
    } else {
      from.appendChild(el('span', 'reply-title', titleOf(article)));
    }
    box.appendChild(from);
    const meta = el('p', 'meta reply-meta');
    appendSourceAndDate(meta, article);
    if (typeof answer.score === 'number') {
      const confidence = el('span', 'confidence', confidenceText(answer.score));
      confidence.title = 'Ước lượng khả năng câu này chứa câu trả lời';
      meta.appendChild(confidence);
    }
    box.appendChild(meta);
    return 'Câu trả lời: ' + answer.text;
  }

  // Above the reply when the question was read with its tone marks restored: how, and one click to ask it exactly
  // as typed.
  function renderUnderstood(state) {
    const note = el('p', 'understood');
    note.appendChild(document.createTextNode('Đã hiểu là: '));
    note.appendChild(el('q', 'understood-text', state.understoodAs));
    const asTyped = el('button', 'link-button as-typed', 'Hỏi đúng như đã gõ');
    asTyped.type = 'button';
    asTyped.addEventListener('click', function () {
      if (busy) return;
      addTurn(state.request.question, Object.assign({}, state.request, { restore: false }));
    });
    note.appendChild(document.createTextNode(' · '));
    note.appendChild(asTyped);
    state.answer.insertBefore(note, state.reply);
    return 'Đã hiểu câu hỏi là: ' + state.understoodAs + '. ';
  }

  function renderError(answer, err, retry) {
    const box = el('div', 'error');
    box.setAttribute('role', 'alert');
    box.appendChild(el('p', 'error-text', errorMessage(err)));
    if (err.message && err.status !== 0) {
      box.appendChild(el('p', 'error-detail', 'Chi tiết: ' + err.message));
    }
    const again = el('button', 'secondary', 'Thử lại');
    again.type = 'button';
    again.addEventListener('click', function () {
      box.remove();
      retry();
    });
    box.appendChild(again);
    answer.appendChild(box);
    return again;
  }

  function setBusy(value) {
    busy = value;
    sendButton.disabled = value;
    form.setAttribute('aria-busy', value ? 'true' : 'false');
  }

  // Loads the next page of a turn: the first one brings the reply and the first cards; "Xem thêm" brings more.
  async function loadMore(state) {
    if (busy) return;
    setBusy(true);
    state.more.hidden = true;
    const status = el('p', 'status', 'Đang tìm…');
    status.setAttribute('role', 'status');
    state.answer.appendChild(status);
    announce('Đang tìm…');
    let hits;
    try {
      hits = await fetchPage(state);
    } catch (err) {
      status.remove();
      setBusy(false);
      renderError(state.answer, err, function () { loadMore(state); });
      announce(errorMessage(err));
      return;
    }
    status.remove();
    setBusy(false);

    const fresh = hits.filter(function (h) { return !state.seen.has(h.passage_id); });
    fresh.forEach(function (h) { state.seen.add(h.passage_id); });
    const firstPage = state.shown === 0;
    state.shown += hits.length;
    rememberSources(fresh);

    const firstNew = placeHits(state, fresh, firstPage ? state.replyData : null);
    if (firstPage) {
      const understood = state.understoodAs ? renderUnderstood(state) : '';
      if (state.replyData !== undefined || !fresh.length) {
        state.reply.hidden = false;
        announce(understood + renderReply(state, state.replyData, fresh));
      } else {
        announce('Đã có ' + fresh.length + ' kết quả.'); // an API without `answer`: the cards alone
      }
      if (fresh.length) {
        state.summary.textContent = 'Tìm thấy ' + state.total + ' đoạn liên quan (' + Math.round(state.tookMs) +
          ' ms), gộp theo bài báo; câu trả lời trong mỗi đoạn được tô sáng.';
      }
    } else {
      announce(firstNew ? 'Thêm ' + fresh.length + ' đoạn.' : 'Không còn kết quả nào khác.');
    }

    const exhausted = hits.length < PAGE_SIZE || state.shown >= state.total || (state.noOffset && state.shown >= MAX_TOP_K);
    state.more.hidden = exhausted;
    if (!firstPage && firstNew) {
      firstNew.tabIndex = -1;
      firstNew.focus({ preventScroll: true });
      scrollToNode(firstNew, 'nearest');
    } else if (!firstPage && exhausted) {
      state.answer.appendChild(el('p', 'status', 'Không còn kết quả nào khác.'));
      input.focus();
    }
  }

  // `asked`: the request of an earlier turn to send again as it is (asked exactly as typed), else one is made.
  function addTurn(question, asked) {
    emptyState.hidden = true;
    const request = asked || { question: question, top_k: PAGE_SIZE };
    if (!asked) {
      const f = readFilters();
      if (Object.keys(f).length) request.filters = f;
      if (filters.onePerArticle.checked) request.one_per_article = true;
    }

    turnCount += 1;
    const turn = el('li', 'turn');
    const ask = el('div', 'bubble-row');
    const bubble = el('p', 'bubble question-bubble', question);
    ask.appendChild(el('span', 'visually-hidden', 'Bạn hỏi: '));
    ask.appendChild(bubble);
    turn.appendChild(ask);
    const filterNote = describeFilters(request);
    if (filterNote) turn.appendChild(el('p', 'filter-note', filterNote));
    if (request.restore === false) turn.appendChild(el('p', 'filter-note as-typed-note', 'Hỏi đúng như đã gõ'));

    const answer = el('section', 'answer');
    answer.setAttribute('aria-label', 'Kết quả cho câu hỏi: ' + question);
    const reply = el('div', 'reply');
    reply.hidden = true;
    const summary = el('p', 'summary');
    const cards = el('ol', 'cards');
    const more = el('button', 'secondary more', 'Xem thêm');
    more.type = 'button';
    more.hidden = true;
    answer.appendChild(reply);
    answer.appendChild(summary);
    answer.appendChild(cards);
    answer.appendChild(more);
    turn.appendChild(answer);
    turns.appendChild(turn);

    const state = {
      id: 'luot-' + turnCount, request: request, answer: answer, reply: reply, summary: summary, cards: cards,
      more: more, shown: 0, total: 0, tookMs: 0, seen: new Set(), noOffset: false,
      groups: new Map(), cardCount: 0, replyData: undefined, answerCard: null,
    };
    more.addEventListener('click', function () { loadMore(state); });
    scrollToNode(turn);
    return loadMore(state).then(function () { scrollToNode(turn); });
  }

  // --- the composer --------------------------------------------------------------------------------

  function submit() {
    const question = input.value.trim();
    if (!question) {
      input.setAttribute('aria-invalid', 'true');
      hint.textContent = 'Hãy nhập câu hỏi trước khi gửi.';
      hint.classList.add('hint-error');
      input.focus();
      return;
    }
    if (busy) return;
    input.value = '';
    input.focus();
    addTurn(question);
  }

  form.addEventListener('submit', function (event) {
    event.preventDefault();
    submit();
  });

  input.addEventListener('keydown', function (event) {
    // Vietnamese input methods (Telex, VNI) compose with Enter too: never send mid-composition.
    if (event.key !== 'Enter' || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    submit();
  });

  input.addEventListener('input', function () {
    if (input.getAttribute('aria-invalid')) {
      input.removeAttribute('aria-invalid');
      hint.textContent = HINT_TEXT;
      hint.classList.remove('hint-error');
    }
  });

  [filters.from, filters.to, filters.sources, filters.onePerArticle].forEach(function (node) {
    node.addEventListener('change', updateFilterSummary);
    node.addEventListener('input', updateFilterSummary);
  });
  filters.clear.addEventListener('click', function () {
    filters.from.value = '';
    filters.to.value = '';
    filters.sources.value = '';
    filters.onePerArticle.checked = false;
    updateFilterSummary();
    filters.from.focus();
  });

  document.querySelectorAll('.example').forEach(function (button) {
    button.addEventListener('click', function () {
      if (busy) return;
      input.value = button.textContent.trim();
      submit();
    });
  });

  // The composer sticks to the bottom: keep scrolled-to and focused content out from under it.
  const composer = form.closest('.composer');
  function trackComposer() {
    document.documentElement.style.setProperty('--composer-h', composer.offsetHeight + 'px');
  }
  if (window.ResizeObserver) new ResizeObserver(trackComposer).observe(composer);
  trackComposer();

  updateFilterSummary();
  document.documentElement.classList.add('js-ready');
})();
