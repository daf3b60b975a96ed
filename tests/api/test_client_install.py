"""The base install (no extras) is the HTTP client: this repository installed into a fresh virtualenv has none of
the server's packages, its client answers from a real server, and its `qa` command says what to install."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qa.client import Client
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

QUESTION = "Quận Nam Từ Liêm có bao nhiêu đảng viên?"
SERVER_DISTRIBUTIONS = {
    "torch", "faiss-cpu", "fastapi", "uvicorn", "sentence-transformers", "transformers", "numpy", "pydantic-settings"
}  # fmt: skip

# Run inside the light virtualenv: both clients, one question, the top hit's title from each.
ASK_SCRIPT = """
import asyncio, sys
import qa
from qa.client import AsyncClient, Client

url, question = sys.argv[1:]
print(qa.__file__)
with Client(url) as client:
    print(client.ask(question, top_k=1).hits[0].article.title)

async def ask():
    async with AsyncClient(url) as client:
        return await client.ask(question, top_k=1)

print(asyncio.run(ask()).hits[0].article.title)
"""


def _run(args: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run in the light virtualenv's world: nothing of this checkout or of the test venv on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONIOENCODING"] = "utf-8"
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, encoding="utf-8", timeout=300
    )


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with `pip install <this repository>`, no extras, not editable; returns its bin folder."""
    root = tmp_path_factory.mktemp("client-install")
    # setuptools writes build/ and viqa.egg-info beside the sources it builds: a copy keeps the checkout untouched.
    source = root / "viqa"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "qa", source / "qa", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = root / "venv"
    for args in ([sys.executable, "-m", "venv", venv], [venv / "bin" / "python", "-m", "pip", "install", source]):
        done = _run(args, cwd=root)
        assert done.returncode == 0, done.stdout + done.stderr
    return venv / "bin"


def test_the_client_install_has_none_of_the_server(light_venv: Path):
    done = _run([light_venv / "python", "-m", "pip", "list", "--format=json"], cwd=light_venv)
    assert done.returncode == 0, done.stderr
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(done.stdout)}
    assert {"viqa", "httpx", "pydantic"} <= installed
    assert not installed & SERVER_DISTRIBUTIONS


def test_the_installed_client_asks_a_real_server(light_venv: Path, base_url: str, client: Client):
    done = _run([light_venv / "python", "-c", ASK_SCRIPT, base_url, QUESTION], cwd=light_venv)
    assert done.returncode == 0, done.stderr
    module_file, title, async_title = done.stdout.splitlines()
    # The installed distribution, not this checkout's sources.
    assert Path(module_file).is_relative_to(light_venv.parent / "lib")
    assert title == async_title == client.ask(QUESTION, top_k=1).hits[0].article.title
    assert title.startswith("Chủ tịch HĐND TP Hà Nội kiểm tra")


@pytest.mark.parametrize("args", [["--help"], ["ask", "x"], ["serve"]])
def test_qa_without_the_server_says_what_to_install(light_venv: Path, args: list[str]):
    done = _run([light_venv / "qa", *args], cwd=light_venv)
    assert done.returncode != 0
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("qa: ") and "pip install 'viqa[server]'" in line
