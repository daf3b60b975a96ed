"""Several `qa serve` replicas over one PostgreSQL and one Milvus, as issue 14 deploys them: each a subprocess on its
own loopback port with its own data folder (`QA_DATA_DIR`: only what is derived or cached), sharing the database
of record (`QA_DATABASE_URL`), the vectors and the lexical index (`QA_VECTOR_BACKEND=milvus`,
`QA_LEXICAL_BACKEND=milvus`, `QA_MILVUS_URI`), the model folder and the seeds.

The first replica starts alone (it creates the index and indexes the seeds), then the others. `running_replicas`
stops them all afterwards, even when a start or the test failed; `kill9` is a crash.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import REPO_ROOT, start_qa_serve

_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*:")
STOP_GUARD = 30.0  # seconds for a replica to exit after SIGTERM before it is killed


def replica_env(*, database_url: str, milvus_uri: str, models_dir: Path, **extra: str) -> dict[str, str]:
    """What every replica shares; `extra` adds or overrides `QA_*` variables (e.g. `QA_MILVUS_COLLECTION`)."""
    return {
        "QA_DATABASE_URL": database_url,
        "QA_VECTOR_BACKEND": "milvus",
        "QA_LEXICAL_BACKEND": "milvus",
        "QA_MILVUS_URI": milvus_uri,
        "QA_MODELS_DIR": str(models_dir),
        "QA_SEEDS": str(REPO_ROOT / "seeds"),
        **extra,
    }


class Replica:
    """One `qa serve`: its process and base URL while it runs; `start()` again after a stop or a crash runs it over
    the same data folder (on a new port: read `url` again)."""

    def __init__(self, name: str, env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.data = folder / name
        self.log = folder / f"{name}.log"
        self.env = {**env, "QA_DATA_DIR": str(self.data)}
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __iter__(self) -> Iterator[object]:  # `for process, url in replicas`
        return iter((self.process, self.url))

    def __repr__(self) -> str:
        state = "not running" if not self.running else f"pid {self.process.pid}"  # type: ignore[union-attr]
        return f"<replica {self.name} {self.url} {state}>"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start `qa serve` and return once its /readyz is 200 (start_qa_serve fails with the log's tail)."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        self.process, self.url = start_qa_serve(self.env, self.log)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within STOP_GUARD."""
        if self.process is not None:
            stop_process(self.process)

    def kill9(self) -> None:
        if self.process is not None:
            kill9(self.process)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.is_file() else ""

    def last_errors(self, n: int = 3) -> list[str]:
        """The last `n` distinct exception lines of its log (`package.SomeError: message`), newest last."""
        found: list[str] = []
        lines = self.log.read_text(errors="replace").splitlines() if self.log.is_file() else []
        for line in reversed(lines):
            if _EXCEPTION.match(line) and line[:300] not in found:
                found.insert(0, line[:300])
                if len(found) == n:
                    break
        return found


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_GUARD)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_GUARD)


def kill9(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL, and reap it: the process is gone when this returns."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=STOP_GUARD)


def start_replicas(n: int, env: dict[str, str], folder: Path) -> list[Replica]:
    """`n` replicas named a, b, c, … with data folders `folder/<name>`, the first started alone; each has its
    `process` and `url` (and unpacks as `process, url`). On a failed start the ones already running are stopped."""
    replicas = [Replica(chr(ord("a") + i), env, folder) for i in range(n)]
    try:
        for replica in replicas:  # one at a time: the first builds the index, the others find it
            replica.start()
    except BaseException:
        stop_replicas(replicas)
        raise
    return replicas


def stop_replicas(replicas: list[Replica]) -> None:
    """SIGTERM to all at once, then wait for each (SIGKILL after STOP_GUARD)."""
    for replica in replicas:
        if replica.running:
            replica.process.terminate()  # type: ignore[union-attr]
    for replica in replicas:
        replica.stop()


@contextmanager
def running_replicas(n: int, env: dict[str, str], folder: Path) -> Iterator[list[Replica]]:
    """`start_replicas` for the length of the block; all are stopped afterwards, whatever happened (a replica a
    test restarted is the same object, so it is stopped too)."""
    replicas = start_replicas(n, env, folder)
    try:
        yield replicas
    finally:
        stop_replicas(replicas)
        left = [r for r in replicas if r.running]
        assert not left, f"replicas still running after the stop: {left}"
