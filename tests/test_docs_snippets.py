"""Every Python example in the README and docs/ runs as written (issue #15, item 7).

Each document's ```python blocks run in order as one script, in a fresh process,
against the prepared model, the built-in knowledge base and a live `splice serve`.
The only rewrite is the server's address and key (the docs say localhost:8080).
The scripts' stdout must hold only what they print: no engine logs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import KEY, ROOT

pytestmark = pytest.mark.vllm

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.M | re.S)
LOG_LINE = re.compile(r"^(INFO|WARNING|DEBUG|\(EngineCore|\[\w+ [\d:]+)", re.M)
# Known library noise that must not reach the terminal without -v.
NOISE = re.compile(r"Triton is installed|NUMA|FutureWarning|Loading safetensors|Traceback")


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text())


WITH_CODE = [p for p in DOCS if python_blocks(p)]


def test_the_docs_have_examples() -> None:
    names = {p.name for p in WITH_CODE}
    assert {"README.md", "python.md", "engines.md", "server.md", "indexes.md"} <= names


@pytest.fixture(scope="module")
def docs_home(splice_home: Path, kb_index: Path, tmp_path_factory) -> Path:
    """The session's prepared model and built knowledge base, in one SPLICE_HOME."""
    home = tmp_path_factory.mktemp("docs-home")
    for entry in splice_home.iterdir():
        if entry.name != "kb-index":
            (home / entry.name).symlink_to(entry)
    (home / "kb-index").symlink_to(kb_index)
    return home


@pytest.mark.parametrize("doc", WITH_CODE, ids=lambda p: p.name)
def test_examples_run_as_written(
    doc: Path, docs_home: Path, splice_server: str, tmp_path: Path
) -> None:
    script = "\n\n".join(python_blocks(doc))
    script = script.replace("http://localhost:8080", splice_server)
    script = script.replace('api_key="unused"', f'api_key="{KEY}"')
    (tmp_path / "example.py").write_text(script)
    # The indexing example reads ./corpus.jsonl.
    rows = [
        {"id": "fr", "title": "France", "text": "Paris is the capital of France."},
        {"id": "de", "title": "Germany", "text": "Berlin is the capital of Germany."},
    ]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {**os.environ, "SPLICE_HOME": str(docs_home), "PYTHONPATH": str(ROOT)}
    for noisy in ("VLLM_LOGGING_LEVEL", "TRANSFORMERS_VERBOSITY"):
        env.pop(noisy, None)  # as a user runs it, not as the test session does
    proc = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not NOISE.search(proc.stderr), proc.stderr[-3000:]
    assert not LOG_LINE.search(proc.stdout), proc.stdout[:3000]
    if "print(" in script:
        assert proc.stdout.strip(), proc.stderr[-3000:]
