"""An engine that dies mid-run, against real parts: a ``vllm serve`` killed with
SIGKILL while an eval streams from it, and the in-process engine's core process
killed the same way. The eval records the failures, loses nothing finished, and a
resume against a live engine completes the run without duplicates. Part of the
fault matrix in docs/reliability.md."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import psutil
import pytest
from conftest import MAX_MODEL_LEN

from evals.records import read_records
from evals.runner import EvalConfig, run_eval

pytestmark = pytest.mark.vllm
N = 12


def _questions(tmp_path: Path) -> Path:
    path = tmp_path / "capitals.jsonl"
    countries = ["France", "Spain", "Italy", "Peru", "Chile", "Japan", "Egypt", "Kenya"]
    path.write_text(
        "".join(
            json.dumps(
                {"id": f"q{i}", "question": f"What is the capital of {c}? ({i})", "answers": [c]}
            )
            + "\n"
            for i, c in enumerate(countries * 2)
            if i < N
        )
    )
    return path


def _kill_tree(pid: int) -> None:
    proc = psutil.Process(pid)
    for p in [*proc.children(recursive=True), proc]:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


async def _kill_after_records(records: Path, count: int, kill) -> None:
    for _ in range(6000):
        if records.exists() and records.read_bytes().count(b"\n") >= count:
            kill()
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no records were written")


async def _run_until_killed(tmp_path: Path, engine, kill) -> tuple[EvalConfig, Path, list]:
    """Run an eval on ``engine``; ``kill`` it once two records are written."""
    cfg = EvalConfig(
        datasets=[str(_questions(tmp_path))], conditions=["closed-book"], concurrency=2
    )
    run = tmp_path / "run"
    first, _ = await asyncio.gather(
        run_eval(cfg, engine, run), _kill_after_records(run / "records.jsonl", 2, kill)
    )
    return cfg, run, first


async def _resume_and_check(cfg: EvalConfig, engine, run: Path, first: list[dict]) -> None:
    records = run / "records.jsonl"
    failed = [r for r in first if r["grade"] == "ERROR"]
    finished = [r for r in read_records(records) if r["grade"] != "ERROR"]
    assert failed, "the engine died after the run had finished: nothing was tested"
    assert all(r["error"] and "\n" not in r["error"] for r in failed)
    before = records.read_bytes()
    again = await run_eval(cfg, engine, run, resume=True)
    ids = [r["id"] for r in again]
    assert sorted(ids) == sorted(f"q{i}" for i in range(N))  # each once
    assert not [r for r in again if r["grade"] == "ERROR"]
    kept = {r["id"]: r for r in finished}
    assert all(kept[r["id"]] == r for r in again if r["id"] in kept)  # finished untouched
    assert records.read_bytes().startswith(before[: before.rfind(b"\n") + 1])


async def test_a_killed_vllm_serve_is_recorded_and_the_run_resumes(
    model_dir: Path, model_server, tmp_path: Path
) -> None:
    from serving.http_engine import HTTPEngine
    from serving.model_server import ModelServer
    from serving.vllm_engine import VLLMConfig

    doomed = ModelServer(VLLMConfig(model=str(model_dir), max_model_len=MAX_MODEL_LEN))
    doomed.start(timeout=600)
    try:
        engine = await HTTPEngine.connect(doomed.url)
        assert doomed.process is not None
        pid = doomed.process.pid
        cfg, run, first = await _run_until_killed(tmp_path, engine, lambda: _kill_tree(pid))
        await engine.aclose()
    finally:
        doomed.stop()
    live = await HTTPEngine.connect(model_server.url)  # same model, another server
    try:
        await _resume_and_check(cfg, live, run, first)
    finally:
        await live.aclose()


async def test_a_killed_engine_core_is_recorded_and_the_run_resumes(
    model_dir: Path, vllm_engine, tmp_path: Path
) -> None:
    from serving.vllm_engine import VLLMConfig, VLLMEngine

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    doomed = VLLMEngine.start(VLLMConfig(model=str(model_dir), max_model_len=MAX_MODEL_LEN))
    core = [p.pid for p in me.children(recursive=True) if p.pid not in before]
    assert core, "the engine core runs in-process: nothing to kill"
    try:
        cfg, run, first = await _run_until_killed(
            tmp_path, doomed, lambda: [_kill_tree(pid) for pid in core]
        )
    finally:
        doomed.shutdown()
    await _resume_and_check(cfg, vllm_engine, run, first)


def test_ctrl_c_stops_an_eval_cleanly_and_the_run_resumes(tmp_path: Path, splice_home: Path):
    """Ctrl-C as a terminal sends it, to the command's whole process group."""
    import os
    import subprocess
    import sys
    import time

    from conftest import ROOT

    # Enough questions, one at a time, that the Ctrl-C lands mid-run even when the
    # model abstains in a fraction of a second.
    many = 60
    questions = tmp_path / "many.jsonl"
    questions.write_text(
        "".join(
            json.dumps(
                {"id": f"q{i}", "question": f"What is {i} plus {i}?", "answers": [str(2 * i)]}
            )
            + "\n"
            for i in range(many)
        )
    )
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "splice", "eval", "run", str(questions), "--out", str(run),
           "--condition", "closed-book", "--concurrency", "1",
           "--max-model-len", str(MAX_MODEL_LEN)]  # fmt: skip
    env = {**os.environ, "SPLICE_HOME": str(splice_home), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        cmd,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # A terminal's foreground command has the default SIGINT action; a suite
        # started in the background (`cmd &`) inherits SIGINT ignored, which a
        # command rightly keeps.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    records = run / "records.jsonl"
    deadline = time.monotonic() + 600
    while not (records.exists() and records.read_bytes().count(b"\n") >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "--resume" in stderr and "Traceback" not in stderr
    kept = read_records(records)
    assert 2 <= len(kept) < many and all(r["grade"] != "ERROR" for r in kept)
    done = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    again = read_records(records)
    assert sorted(r["id"] for r in again) == sorted(f"q{i}" for i in range(many))
    assert all(r in again for r in kept)  # finished records are never rewritten
