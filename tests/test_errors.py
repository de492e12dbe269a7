"""User mistakes get one line naming the problem and the fix, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.errors import DependencyMissingError, ServerUnreachableError, SpliceError
from serving.http_engine import HTTPEngine
from serving.model_server import free_port

SPLICE = [sys.executable, "-m", "splice.cli"]


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPLICE_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([*SPLICE, *args], capture_output=True, text=True, env=env, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_ask_without_prepared_model(tmp_path: Path) -> None:
    proc = run_cli("ask", "What is the capital of France?", home=tmp_path / "empty")
    assert_one_line_error(proc, "no prepared model", "run `splice prepare`")


def test_an_empty_question_is_refused_before_anything_starts(tmp_path: Path) -> None:
    # An empty home: had the model been looked for first, the error would name it.
    proc = run_cli("ask", "  ", home=tmp_path / "empty")
    assert_one_line_error(proc, "the question is empty")


def test_an_oversized_question_is_refused_before_the_engine_starts(splice_home: Path) -> None:
    proc = run_cli("ask", "word " * 3000, "--max-model-len", "1024", home=splice_home)
    assert_one_line_error(proc, "tokens, too long for a 1,024-token context", "--max-model-len")
    assert "Loading" not in proc.stderr and "engine" not in proc.stderr.lower()


def test_serve_model_without_prepared_model(tmp_path: Path) -> None:
    proc = run_cli("serve-model", home=tmp_path / "empty")
    assert_one_line_error(proc, "splice prepare")


def test_ask_against_unreachable_server(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = run_cli("ask", "hi", "--url", url, home=tmp_path)
    assert_one_line_error(proc, "cannot reach the model server", url)


async def test_http_engine_unreachable_names_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnreachableError, match=url.replace(".", r"\.")):
        await HTTPEngine.connect(url)


def test_missing_vllm_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.vllm_engine import require_vllm

    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail
    with pytest.raises(DependencyMissingError, match=r"pip install 'splice\[cpu\]'"):
        require_vllm()


def test_missing_local_model_path(tmp_path: Path) -> None:
    proc = run_cli("ask", "hi", "--model", str(tmp_path / "nope"), home=tmp_path)
    assert_one_line_error(proc, "does not exist")


def test_every_error_is_a_splice_error() -> None:
    import agent.errors as errors

    classes = [getattr(errors, n) for n in errors.__all__ if isinstance(getattr(errors, n), type)]
    assert len(classes) >= 12
    for cls in classes:
        assert issubclass(cls, SpliceError)


def test_translate_error_picks_the_branch_by_library() -> None:
    import sqlite3

    from agent.errors import (
        ConfigError,
        DatasetError,
        EngineError,
        RetrievalError,
        translate_error,
    )

    err = translate_error(sqlite3.DatabaseError("file is not a database\nmore"), "reading x")
    assert isinstance(err, RetrievalError) and str(err) == "reading x: file is not a database"
    # Unknown origin: the root; explicit kind wins; a SpliceError passes through unchanged.
    assert type(translate_error(KeyError("k"), "w")) is SpliceError
    assert isinstance(translate_error(ValueError(""), "w", kind=EngineError), EngineError)
    assert str(translate_error(ValueError(""), "w", fix="do y")) == "w: ValueError; do y"
    same = ConfigError("mine")
    assert translate_error(same, "w") is same
    ds = translate_error(OSError("gone"), "hf:x", kind=DatasetError, fix="check it")
    assert isinstance(ds, DatasetError) and str(ds) == "hf:x: gone; check it"


def test_help_lists_subcommands(tmp_path: Path) -> None:
    proc = run_cli("--help", home=tmp_path)
    assert proc.returncode == 0
    for cmd in ("prepare", "serve-model", "ask", "bench"):
        assert cmd in proc.stdout


def test_eval_run_refuses_reading_and_other_sets_in_one_run(tmp_path: Path) -> None:
    proc = run_cli(
        "eval",
        "run",
        "reading-answerable-dev",
        "kb-answerable",
        "--out",
        str(tmp_path / "r"),
        home=tmp_path,
    )
    assert_one_line_error(proc, "reading-* sets search their own index")


def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    from agent.errors import ConfigError
    from agent.settings import WebSettings, load

    env = {**os.environ, "SPLICE_HOME": str(tmp_path), "SPLICE_LOG_LEVEL": "loud", "COLUMNS": "200"}
    proc = subprocess.run(
        [*SPLICE, "ask", "--no-tools", "hi"], capture_output=True, text=True, env=env, timeout=300
    )
    assert_one_line_error(proc, "SPLICE_LOG_LEVEL", "'loud'")
    os.environ["SPLICE_WEB_RESULTS"] = "many"
    try:
        with pytest.raises(ConfigError, match="SPLICE_WEB_RESULTS"):
            load(WebSettings)
    finally:
        del os.environ["SPLICE_WEB_RESULTS"]


def test_an_empty_corpus_is_named_by_its_path(tmp_path: Path) -> None:
    empty = tmp_path / "notes.jsonl"
    empty.write_text("")
    proc = run_cli("index", "build", str(empty), "--out", str(tmp_path / "idx"), home=tmp_path)
    assert_one_line_error(proc, f"{empty}: no passages found")
