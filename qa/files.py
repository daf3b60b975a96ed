"""Files the service writes and reads whole: atomic replacement (write aside, fsync, rename) and JSONL records."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["JSONLError", "atomic_write", "atomic_write_bytes", "read_jsonl"]


class JSONLError(ValueError):
    """A line of a JSONL file is not JSON; the message names the file and the line."""


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """`write(temp_path)`, fsync, rename over `path`, fsync the folder: readers and crashes see the old file or the
    new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        write(str(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    def write(tmp: str) -> None:
        Path(tmp).write_bytes(data)

    atomic_write(path, write)


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, decoded value) for each non-blank line of a UTF-8 JSONL file; a line that is not JSON raises
    `JSONLError`. Undecodable bytes become U+FFFD rather than failing the whole file."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise JSONLError(f"{path}:{number}: invalid JSON ({exc.msg})") from exc
