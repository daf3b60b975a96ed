"""A corrupt or truncated index at start: a clear message and a rebuild path, never a traceback.

`qa ask` / `qa index` print one line "qa: …" naming the index and how to rebuild it, and exit 1; the server
stays up and answers /readyz with 503 and the reason. Damage to the derived files (FAISS file, manifest) is
repaired silently from the database.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from qa.api import create_app
from qa.cli import main
from qa.config import Settings
from qa.service import Service
from tests.conftest import REPO_ROOT
from tests.servers import live_server, wait_for

SEED = "004_883b030afed6ad88.txt"  # the shortest seed: a real index in a few seconds
QUESTION = "Hà Nội"


@pytest.fixture(scope="module")
def good_index(encoder, default_model_dir, tmp_path_factory) -> tuple[Path, Path]:
    """(seeds folder, index folder) of a real, healthy index built once for this module."""
    seeds = tmp_path_factory.mktemp("seeds")
    shutil.copy(REPO_ROOT / "seeds" / SEED, seeds)
    data = tmp_path_factory.mktemp("good-data")
    Service.load(Settings(data_dir=data, models_dir=default_model_dir.parent, seeds=seeds), encoder=encoder).close()
    return seeds, data / "default"


@pytest.fixture
def index_dir(good_index, tmp_path, monkeypatch, encoder, default_model_dir) -> Path:
    """A private copy of the healthy index; the `qa` command pointed at it, reusing the session's model."""
    seeds, good = good_index
    target = tmp_path / "data" / "default"
    shutil.copytree(good, target)
    monkeypatch.setenv("QA_DATA_DIR", str(target.parent))
    monkeypatch.setenv("QA_MODELS_DIR", str(default_model_dir.parent))
    monkeypatch.setenv("QA_SEEDS", str(seeds))
    monkeypatch.setattr("qa.service.load_encoder", lambda settings: encoder)
    monkeypatch.setattr("qa.encoders.load_encoder", lambda settings: encoder)
    return target


def _overwrite(path: Path, offset: int, size: int) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(random.Random(offset).randbytes(size))


def garbage_header(index: Path) -> None:
    _overwrite(index / "store.sqlite", 0, 4096)


def truncated(index: Path) -> None:
    with (index / "store.sqlite").open("r+b") as fh:
        fh.truncate(8192)


def emptied(index: Path) -> None:
    (index / "store.sqlite").write_bytes(b"")


def garbage_inside(index: Path) -> None:
    db = index / "store.sqlite"
    _overwrite(db, db.stat().st_size // 4, db.stat().st_size // 2)


def database_missing(index: Path) -> None:
    (index / "store.sqlite").unlink()


def other_format(index: Path) -> None:
    with sqlite3.connect(index / "store.sqlite") as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'format_version'")
    conn.close()


def _name(value: object) -> str:
    return getattr(value, "__name__", str(value))


DAMAGE: list[Callable[[Path], None]] = [garbage_header, truncated, emptied, database_missing, other_format]


def _one_clear_line(err: str, index: Path) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("qa: ")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err
    assert str(index) in lines[0] and "qa index" in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("damage", [*DAMAGE, garbage_inside], ids=_name)
@pytest.mark.parametrize("command", [["ask", QUESTION], ["index"]], ids=["ask", "index"])
def test_cli_says_what_is_wrong_in_one_line(index_dir, capsys, damage, command):
    damage(index_dir)
    assert main(command) == 1
    _one_clear_line(capsys.readouterr().err, index_dir)


@pytest.mark.parametrize("damage", DAMAGE, ids=_name)
def test_the_rebuild_path_it_names_works(index_dir, capsys, damage):
    """Following the message's advice (`qa index --rebuild`) gives a working index again."""
    damage(index_dir)
    main(["ask", QUESTION])
    advice = capsys.readouterr().err
    assert "qa index --rebuild" in advice or "qa index" in advice
    assert main(["index", "--rebuild"]) == 0, capsys.readouterr().err
    assert main(["ask", QUESTION, "-k", "1"]) == 0
    assert "(1 hits in" in capsys.readouterr().out


def _faiss_truncated(index: Path) -> None:
    data = (index / "vectors.faiss").read_bytes()
    (index / "vectors.faiss").write_bytes(data[: len(data) // 2])


def _faiss_missing(index: Path) -> None:
    (index / "vectors.faiss").unlink()


def _manifest_garbage(index: Path) -> None:
    (index / "manifest.json").write_bytes(b"\x00{not json")


def _manifest_wrong_generation(index: Path) -> None:
    manifest = json.loads((index / "manifest.json").read_text())
    (index / "manifest.json").write_text(json.dumps({**manifest, "generation": -1}))


@pytest.mark.parametrize(
    "damage", [_faiss_truncated, _faiss_missing, _manifest_garbage, _manifest_wrong_generation], ids=_name
)
def test_damaged_derived_files_are_rebuilt_from_the_database(index_dir, capsys, damage):
    damage(index_dir)
    assert main(["ask", QUESTION, "-k", "1"]) == 0, capsys.readouterr().err
    assert "(1 hits in" in capsys.readouterr().out
    assert (index_dir / "vectors.faiss").stat().st_size > 0


# --- the server -----------------------------------------------------------------------------------


def _load_ended(url: str) -> bool:
    r = httpx.get(f"{url}/readyz")
    return r.status_code == 200 or "failed" in r.text


@pytest.mark.parametrize(
    "damage",
    [garbage_header, truncated, database_missing, garbage_inside],
    ids=_name,
)
def test_server_stays_up_and_says_why_it_is_not_ready(index_dir, monkeypatch, encoder, damage):
    damage(index_dir)
    load = Service.load
    monkeypatch.setattr(Service, "load", staticmethod(lambda settings, **kw: load(settings, encoder=encoder, **kw)))
    with live_server(create_app(Settings()), wait_ready=False) as url:
        # The load runs in the background: wait until it has ended, in failure (the state under test) or not.
        wait_for(lambda: _load_ended(url), what="the background load ending")
        r = httpx.get(f"{url}/readyz")
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        message = r.json()["error"]["message"]
        assert str(index_dir) in message and "qa index" in message, message
        assert httpx.get(f"{url}/healthz").status_code == 200  # the process stays up
        r = httpx.post(f"{url}/v1/ask", json={"question": QUESTION})
        assert r.status_code == 503 and r.json()["error"]["message"] == message


# --- as a user sees it ----------------------------------------------------------------------------


@pytest.mark.slow
def test_real_qa_ask_on_a_corrupt_index_prints_no_traceback(good_index, tmp_path, default_model_dir):
    seeds, good = good_index
    index = tmp_path / "data" / "default"
    shutil.copytree(good, index)
    garbage_header(index)
    env = {
        **os.environ,
        "QA_DATA_DIR": str(index.parent),
        "QA_MODELS_DIR": str(default_model_dir.parent),
        "QA_SEEDS": str(seeds),
    }
    done = subprocess.run(
        [sys.executable, "-m", "qa.cli", "ask", QUESTION], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1 and done.stdout == ""
    line = _one_clear_line(done.stderr, index)
    assert "corrupt" in line and "qa index --rebuild" in line
