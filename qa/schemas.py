"""Request and response models shared by the API and the client; imports nothing of the server."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from qa.dates import PATTERN as DATE_PATTERN
from qa.dates import VIETNAM_TZ, period_end, period_start

MAX_BATCH_QUESTIONS = 32
MAX_ARTICLES_PER_REQUEST = 5000  # and the body size limit (QA_MAX_BODY_BYTES)
# A write of more articles than this (or any sent with `wait=false`) is a job: 202 Accepted, then `GET /v1/jobs/{id}`.
SYNC_ARTICLES = 20
EXAMPLE_QUESTION = "Quận Nam Từ Liêm có bao nhiêu đảng viên?"


def _encodable(value: str) -> str:
    # JSON may carry lone surrogates ("\ud800"); they cannot be encoded, indexed or echoed back.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text contains an invalid character (a lone UTF-16 surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(_encodable)]


def _stripped(value: str) -> str:
    # Trimmed after the length check, so that `maxLength` holds for the question as sent.
    value = value.strip()
    if not value:
        raise ValueError("the question is empty (whitespace only)")
    return value


Question = Annotated[
    str, StringConstraints(min_length=1, max_length=2000), AfterValidator(_encodable), AfterValidator(_stripped)
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=500), AfterValidator(_encodable)]


def _one_to(limit: int, items: str) -> Any:
    """The field of a request that takes a list of 1 to `limit` items; the schema says so."""
    return Field(min_length=1, max_length=limit, description=f"1 to {limit} {items}.")


# --- asking ----------------------------------------------------------------------------------------


def _date_bound(edge: Any) -> BeforeValidator:
    """Validate a filter bound with `qa.dates` (`period_start` or `period_end`): strings (and, from Python,
    date/datetime objects) only; pydantic's own datetime parsing would read a number as a Unix timestamp."""

    def validate(value: Any) -> datetime:
        try:
            return edge(value)
        except ValueError as exc:
            raise PydanticCustomError("date_bound", "{reason}", {"reason": str(exc)}) from None

    return BeforeValidator(validate)


# The schema says exactly which strings are accepted, so generated "invalid" input really is invalid.
_DATE_BOUND_SCHEMA = WithJsonSchema({"type": "string", "pattern": DATE_PATTERN})
_DATE_EXAMPLES = ["2020", "2020-05", "2020-05-03", "2020-05-03T10:00", "2020-05-03T10:00:00+07:00"]
PublishedFrom = Annotated[datetime, _date_bound(period_start), _DATE_BOUND_SCHEMA]
PublishedTo = Annotated[datetime, _date_bound(period_end), _DATE_BOUND_SCHEMA]


class Filters(BaseModel):
    """Which articles may answer; every field given must hold (an article without a date fails a date filter).

    After validation the two dates are timezone-aware instants (or None).
    """

    model_config = ConfigDict(extra="forbid")

    published_from: PublishedFrom | None = Field(
        None,
        description="Earliest publication time (inclusive): a year (`2020` starts on 1 January 2020), a "
        "year-month (`2020-05`), a date (`2020-05-03`) or an ISO 8601 date-time (`2020-05-03T10:00`, "
        "`2020-05-03T10:00:00+07:00`, `2020-05-03T03:00Z`). Without an offset, Vietnam time (UTC+7).",
        examples=_DATE_EXAMPLES,
    )
    published_to: PublishedTo | None = Field(
        None,
        description="Latest publication time (inclusive): a year, year-month or date means its end (`2020` "
        "includes all of 2020, `2020-05-03` all of that day); a date-time is that instant. Without an offset, "
        "Vietnam time (UTC+7).",
        examples=_DATE_EXAMPLES,
    )
    sources: list[Name] | None = Field(
        None, min_length=1, max_length=100, description="Only these sources (exact match, e.g. `ANTD.VN`)."
    )
    article_ids: list[Name] | None = Field(None, min_length=1, max_length=1000, description="Only these articles.")

    @model_validator(mode="after")
    def _check_range(self) -> Filters:
        start, end = self.published_from, self.published_to
        if start is not None and end is not None and start > end:  # aware: compared as instants
            raise PydanticCustomError(
                "date_range",
                "published_from ({start}) is after published_to ({end})",
                {"start": start.isoformat(), "end": end.isoformat()},
            )
        return self


class SearchOptions(BaseModel):
    """Options shared by a single question and a batch."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(5, ge=1, le=50, strict=True, description="How many passages to return.")
    offset: int = Field(0, ge=0, le=1000, strict=True, description="Skip this many ranked passages (paging).")
    filters: Filters | None = Field(None, description="Restrict which articles may answer.")
    min_score: float | None = Field(
        None, allow_inf_nan=False, strict=True, description="Drop passages scoring below this."
    )
    one_per_article: bool = Field(False, strict=True, description="At most one passage per article.")
    highlight: bool = Field(
        True,
        strict=True,
        description="Mark the sentence of each passage that best answers the question, and choose the `answer`"
        " (false: neither; the top hits are ordered by their answers either way).",
    )
    restore: bool = Field(
        True,
        strict=True,
        description="Read a Vietnamese question typed without its tone marks (or with only a few) with them restored"
        " from the indexed text (`understood_as` says how); false: exactly as typed.",
    )


class AskRequest(SearchOptions):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"question": EXAMPLE_QUESTION, "top_k": 3}]}
    )

    question: Question = Field(description="The question, in Vietnamese (tone marks optional) or English.")


class AskBatchRequest(SearchOptions):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"questions": [EXAMPLE_QUESTION, "Ai chủ trì cuộc họp Ban chỉ đạo Chương trình 01?"]}]
        },
    )

    questions: Annotated[
        list[Question], _one_to(MAX_BATCH_QUESTIONS, "questions, encoded together; the options apply to each")
    ]


class ArticleRef(BaseModel):
    id: str
    title: str
    published_at: datetime | None = Field(None, description="Publication time, with its UTC offset (+07:00).")
    source: str | None = None
    author: str | None = None
    url: str | None = None

    @field_validator("published_at")
    @classmethod
    def _with_offset(cls, value: datetime | None) -> datetime | None:
        # RFC 3339 needs an offset; a stored time without one is Vietnam local time.
        return value.replace(tzinfo=VIETNAM_TZ) if value is not None and value.tzinfo is None else value


class Span(BaseModel):
    start: int = Field(description="Start offset (characters) into the hit's text.")
    end: int = Field(description="End offset (exclusive).")


class Scores(BaseModel):
    dense: float | None = Field(None, description="Cosine similarity of question and passage embeddings.")
    lexical: float | None = Field(None, description="Keyword-match score, when lexical retrieval is on.")


class AskHit(BaseModel):
    passage_id: str = Field(description='Stable id "<article id>:<ordinal>".')
    text: str
    score: float = Field(description="The ranking score (higher is better).")
    scores: Scores
    highlights: list[Span] = Field(default_factory=list, description="The sentence(s) that answer the question.")
    article: ArticleRef


class Answer(BaseModel):
    text: str = Field(description="The sentence that answers the question (or the article title, see `in_title`).")
    passage_id: str = Field(description="The passage it comes from: one of the top 5 hits of the question.")
    start: int = Field(description="Start offset (characters) into that passage's text, or its title when `in_title`.")
    end: int = Field(description="End offset (exclusive).")
    in_title: bool = Field(description="The article's title is the answer (news titles often state it).")
    score: float = Field(
        description="How sure: the calibrated chance (0..1) that it holds the answer. Below a threshold fitted on the"
        " dev sets no answer is given (docs/quality.md)."
    )
    article: ArticleRef


class AskResponse(BaseModel):
    question: str
    answer: Answer | None = Field(
        None,
        description="The one sentence among the top hits that answers the question, or null when none is a credible"
        " answer (or `highlight` is false). Absent from servers older than the field: read as null.",
    )
    understood_as: str | None = Field(
        None,
        description="The question as it was read, with the tone marks it lacked restored (`restore`); null when it"
        " was read as typed. Absent from servers older than the field: read as null.",
    )
    hits: list[AskHit]
    total: int = Field(description="Passages that matched (within the candidate pool), before paging.")
    took_ms: float
    model: str


class AskBatchResponse(BaseModel):
    results: list[AskResponse] = Field(description="One result per question, in the order asked.")
    took_ms: float
    model: str


# --- articles --------------------------------------------------------------------------------------


BODY_OR_HTML = "give exactly one of 'body' (the article text) or 'html' (the article's web page)"


class ArticleIn(BaseModel):
    """One article to add or replace (upsert by `id`): its text (`body`, with a `title`), or its web page (`html`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "hanoi-2020-07-09",
                    "title": "Hà Nội khánh thành cầu mới",
                    "body": "Sáng 9/7, UBND TP Hà Nội khánh thành cầu ...",
                    "published_at": "2020-07-09T14:02:00+07:00",
                    "source": "VnExpress",
                },
                {
                    "id": "hanoi-cau-moi",
                    "html": "<html><head><title>Hà Nội khánh thành cầu mới</title></head><body>...</body></html>",
                    "url": "https://example.vn/hanoi-cau-moi.html",
                },
            ],
            # Exactly one of body (with a title) and html: the validator below, spelt for the schema's readers.
            "oneOf": [
                {
                    "required": ["body", "title"],
                    "properties": {"body": {"type": "string"}, "title": {"type": "string"}},
                },
                {"required": ["html"], "properties": {"html": {"type": "string"}}},
            ],
        },
    )

    id: Text = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[^\s/\\]+$",
        description="Your id for the article: no whitespace, '/' or '\\'. An existing id is replaced.",
    )
    title: Text | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="Headline: required with `body`; with `html`, read from the page when not given.",
    )
    body: Text | None = Field(
        None, min_length=1, description="Article text; paragraphs separated by newlines. Give `body` or `html`."
    )
    html: Text | None = Field(
        None,
        min_length=1,
        description="The article's web page, instead of `body`: its main text, title, date, author and site name "
        "are read from it (fields given here win over the page's).",
    )
    published_at: Text | None = Field(
        None, description="ISO 8601 (`2020-07-09T14:02:00+07:00`) or `dd/mm/yyyy [HH:MM]` (Vietnam time)."
    )
    source: Text | None = Field(None, max_length=500, description="Publisher, e.g. `ANTD.VN`.")
    author: Text | None = Field(None, max_length=500)
    url: Text | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _body_or_html(self) -> ArticleIn:
        if (self.body is None) == (self.html is None):
            got = "neither" if self.body is None else "both"
            raise PydanticCustomError("body_or_html", "{expected}; got {got}", {"expected": BODY_OR_HTML, "got": got})
        if self.body is not None and self.title is None:
            raise PydanticCustomError(
                "title_required", "'title' is required with 'body' (with 'html' it is read from the page)"
            )
        return self


class ArticlesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    articles: Annotated[list[ArticleIn], _one_to(MAX_ARTICLES_PER_REQUEST, "articles with distinct ids")]


class IndexedArticle(BaseModel):
    id: str
    passages: int = Field(description="Passages the article was split into.")
    created: bool = Field(description="False when an article with this id was already stored.")
    status: Literal["created", "updated", "unchanged"] | None = Field(
        None,
        description="`created`: new; `updated`: replaced an article of this id; `unchanged`: the stored article of "
        "this id has the same content, so nothing was encoded or written. Absent from servers older than the field.",
    )


class IndexedArticles(BaseModel):
    data: list[IndexedArticle]
    count: int = Field(description="Articles in the request (unchanged ones included).")
    took_ms: float


class ArticleSummary(ArticleRef):
    passages: int = Field(description="How many passages the article is indexed as.")


class ArticleDetail(ArticleSummary):
    body: str = Field(description="The normalised article text, paragraphs separated by blank lines.")
    passage_ids: list[str]


class ArticleList(BaseModel):
    data: list[ArticleSummary]
    count: int = Field(description="All articles in the index (not just this page).")


class DeletedArticle(BaseModel):
    id: str
    passages: int = Field(description="Passages removed with it.")


class JobArticleError(BaseModel):
    position: int = Field(description="The article's index in the request's `articles`.")
    id: str
    message: str = Field(description="Why it was not indexed.")


class JobStatus(BaseModel):
    """A write running as a job (`POST /v1/articles` answered 202): where it stands."""

    id: str
    state: Literal["queued", "running", "done", "failed", "cancelled"] = Field(
        description="queued → running → done (every article indexed or failed on its own), failed (the job "
        "stopped on an error that is not one article's: see `error`) or cancelled (`DELETE /v1/jobs/{id}`)."
    )
    articles_total: int
    articles_done: int = Field(description="Articles committed to the index (they stay, even if cancelled).")
    articles_failed: int = Field(description="Articles not indexed; each one's reason is in `errors`.")
    passages_total: int = Field(description="Passages the articles make (as chunked when the job was made).")
    passages_done: int
    rate: float | None = Field(description="Passages indexed a second so far (null before the first batch).")
    eta_seconds: float | None = Field(description="Estimated seconds left at that rate (0 once the job ended).")
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    cancel_requested: bool
    error: str | None = Field(description="Why the job failed, when it did.")
    errors: list[JobArticleError] = Field(description="The articles that failed, in request order.")
    message: str = Field(description="The state in one sentence, e.g. what a cancel kept.")


# --- service ---------------------------------------------------------------------------------------


class Health(BaseModel):
    status: str


class Stats(BaseModel):
    articles: int
    passages: int
    model: str
    dim: int = Field(description="Embedding dimension.")
    index_kind: str
    generation: int = Field(description="Bumped by every write.")
    created_at: str = Field(description="When the index was built.")
    updated_at: str = Field(description="When it was last written.")
    load_seconds: float = Field(description="How long loading model and index took at start-up.")
    version: str
    sentence_vectors: bool = Field(
        False,
        description="The index holds sentence vectors (QA_SENTENCE_VECTORS): ranking uses each passage's best "
        "sentence and highlights are not encoded at question time.",
    )


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable: invalid_request, unauthorized, not_found, payload_too_large, …")
    message: str = Field(description="What went wrong and how to fix it.")
    detail: object | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
