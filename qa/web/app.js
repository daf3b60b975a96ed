// The chat page: a question becomes a turn (a bubble, then answer cards from POST /v1/ask).
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

  function renderCard(hit) {
    const article = hit.article || {};
    const card = el('article', 'card');
    card.setAttribute('data-source', article.source || '');
    card.setAttribute('data-passage-id', hit.passage_id || '');

    const title = el('h3', 'card-title');
    const url = safeUrl(article.url);
    if (url) {
      const link = el('a', null, article.title || 'Không có tiêu đề');
      link.href = url;
      link.rel = 'noopener noreferrer';
      link.target = '_blank';
      title.appendChild(link);
    } else {
      title.textContent = article.title || 'Không có tiêu đề';
    }
    card.appendChild(title);

    const meta = el('p', 'meta');
    if (article.source) meta.appendChild(el('span', 'source', article.source));
    const date = formatDate(article.published_at);
    if (date) {
      const time = el('time', 'date', date);
      time.dateTime = article.published_at;
      meta.appendChild(time);
    } else {
      meta.appendChild(el('span', 'date', 'Không rõ ngày đăng'));
    }
    const score = el('span', 'score', 'Độ phù hợp ' + formatScore(hit.score));
    const s = hit.scores || {};
    const parts = [];
    if (typeof s.dense === 'number') parts.push('ngữ nghĩa ' + formatScore(s.dense));
    if (typeof s.lexical === 'number') parts.push('từ khoá ' + formatScore(s.lexical));
    if (parts.length) score.title = parts.join(', ');
    meta.appendChild(score);
    card.appendChild(meta);

    const passage = el('p', 'passage');
    passage.appendChild(passageWithHighlights(hit.text, hit.highlights));
    card.appendChild(passage);
    return card;
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

  // Loads the next page of a turn into its card list; used for the first answer and for "Xem thêm".
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

    if (firstPage) {
      const summary = fresh.length
        ? 'Tìm thấy ' + state.total + ' đoạn liên quan (' + Math.round(state.tookMs) + ' ms). Câu trả lời được tô sáng.'
        : 'Không tìm thấy đoạn văn nào phù hợp. Hãy thử diễn đạt khác hoặc bỏ bớt bộ lọc.';
      state.summary.textContent = summary;
      announce(fresh.length ? 'Đã có ' + fresh.length + ' kết quả.' : summary);
    } else {
      announce(fresh.length ? 'Thêm ' + fresh.length + ' kết quả.' : 'Không còn kết quả nào khác.');
    }

    let firstNew = null;
    fresh.forEach(function (hit) {
      const item = el('li');
      const card = renderCard(hit);
      item.appendChild(card);
      state.cards.appendChild(item);
      if (!firstNew) firstNew = card;
    });

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

  function addTurn(question) {
    emptyState.hidden = true;
    const request = { question: question, top_k: PAGE_SIZE };
    const f = readFilters();
    if (Object.keys(f).length) request.filters = f;
    if (filters.onePerArticle.checked) request.one_per_article = true;

    const turn = el('li', 'turn');
    const ask = el('div', 'bubble-row');
    const bubble = el('p', 'bubble question-bubble', question);
    ask.appendChild(el('span', 'visually-hidden', 'Bạn hỏi: '));
    ask.appendChild(bubble);
    turn.appendChild(ask);
    const filterNote = describeFilters(request);
    if (filterNote) turn.appendChild(el('p', 'filter-note', filterNote));

    const answer = el('section', 'answer');
    answer.setAttribute('aria-label', 'Kết quả cho câu hỏi: ' + question);
    const summary = el('p', 'summary');
    const cards = el('ol', 'cards');
    const more = el('button', 'secondary more', 'Xem thêm');
    more.type = 'button';
    more.hidden = true;
    answer.appendChild(summary);
    answer.appendChild(cards);
    answer.appendChild(more);
    turn.appendChild(answer);
    turns.appendChild(turn);

    const state = {
      request: request, answer: answer, summary: summary, cards: cards, more: more,
      shown: 0, total: 0, tookMs: 0, seen: new Set(), noOffset: false,
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
