"""Request and response models shared by the API and the client; imports nothing of the server."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Question = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: Question = Field(description="The question, in Vietnamese (tone marks optional) or English.")
    top_k: int = Field(5, ge=1, le=50, description="How many passages to return.")
    one_per_article: bool = Field(False, description="At most one passage per article.")


class ArticleRef(BaseModel):
    id: str
    title: str
    published_at: datetime | None = None
    source: str | None = None
    author: str | None = None
    url: str | None = None


class Span(BaseModel):
    start: int = Field(description="Start offset (characters) into the hit's text.")
    end: int = Field(description="End offset (exclusive).")


class Scores(BaseModel):
    dense: float | None = None
    lexical: float | None = None


class AskHit(BaseModel):
    passage_id: str
    text: str
    score: float
    scores: Scores
    highlights: list[Span] = Field(default_factory=list, description="The sentence(s) that answer the question.")
    article: ArticleRef


class AskResponse(BaseModel):
    question: str
    hits: list[AskHit]
    total: int = Field(description="Passages that matched (within the candidate pool), before paging.")
    took_ms: float
    model: str


class Health(BaseModel):
    status: str


class ErrorBody(BaseModel):
    code: str
    message: str
    detail: object | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
