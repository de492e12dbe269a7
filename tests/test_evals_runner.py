"""The eval runner over a scripted engine: records, resume after kill -9, the
retrieval-failure condition, reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.errors import ConfigError
from evals.records import read_records
from evals.report import compare_runs, write_report
from evals.runner import EvalConfig, run_eval
from retrieval import Document, LocalIndex
from serving.scripted import ScriptedEngine

ROOT = Path(__file__).resolve().parent.parent

# The "model": searches first when tools are on, then answers with the first
# passage's title, or "I don't know" when nothing came back; closed-book it answers
# "Paris" to everything.
RUNNER_SCRIPT = """
import asyncio, sys
from pathlib import Path
from transformers import AutoTokenizer
from evals.runner import EvalConfig, run_eval
from serving.scripted import ScriptedEngine

tok = AutoTokenizer.from_pretrained(sys.argv[1])
def handler(prompt, params):
    return tok.encode("<answer> Paris </answer>", add_special_tokens=False)
engine = ScriptedEngine(handler, tok, delay_s=float(sys.argv[4]))
cfg = EvalConfig(datasets=[sys.argv[2]], conditions=["closed-book"], concurrency=3)
asyncio.run(run_eval(cfg, engine, Path(sys.argv[3]), resume=True))
"""


def _dataset(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "qs.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"q{i}",
                    "question": f"Capital number {i}?",
                    "answers": ["Paris" if i % 2 else "Lyon"],
                }
            )
            + "\n"
            for i in range(n)
        )
    )
    return path


def _searching_engine(tokenizer) -> ScriptedEngine:
    def handler(prompt: list[int], params) -> list[int]:
        full = tokenizer.decode(prompt)
        question = full.rsplit("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]
        text = full.rsplit("<|im_start|>assistant", 1)[1]
        if "</information>" not in text:
            return tokenizer.encode(f"<search> {question} </search>", add_special_tokens=False)
        info = text.rsplit("<information>", 1)[1]
        if "No results found." in info:
            return tokenizer.encode("<answer> I don't know </answer>", add_special_tokens=False)
        title = info.split("] ", 1)[1].split(":", 1)[0]
        return tokenizer.encode(f"<answer> {title} </answer>", add_special_tokens=False)

    return ScriptedEngine(handler, tokenizer)


def test_kill_9_loses_nothing_finished_and_resume_never_duplicates(
    tmp_path: Path, model_dir: Path, tokenizer
) -> None:
    data = _dataset(tmp_path, 30)
    run = tmp_path / "run"
    script = tmp_path / "runner.py"
    script.write_text(RUNNER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(model_dir), str(data), str(run), "0.05"],
        env=env,
        cwd=ROOT,
    )
    records = run / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if records.exists() and records.read_text().count("\n") >= 6:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = records.read_bytes()
    finished = read_records(records)
    assert 6 <= len(finished) < 30, "the kill came too late to test anything"

    engine = ScriptedEngine(
        lambda p, s: tokenizer.encode("<answer> Paris </answer>", add_special_tokens=False),
        tokenizer,
    )
    cfg = EvalConfig(datasets=[str(data)], conditions=["closed-book"], concurrency=3)
    import asyncio

    all_records = asyncio.run(run_eval(cfg, engine, run, resume=True))
    lines = records.read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == len(set(ids)) == 30 == len(all_records)
    complete = before[: before.rfind(b"\n") + 1]
    assert records.read_bytes().startswith(complete)  # finished records untouched
    # Only the questions the resumed run had not finished were asked again.
    assert len(engine.requests) == 30 - len(finished)
    summary = json.loads((run / "summary.json").read_text())
    assert summary[0]["n"] == 30 and summary[0]["correct"]["value"] == pytest.approx(0.5)


async def test_retrieval_failure_withholds_passages(tmp_path: Path, tokenizer, embedder) -> None:
    docs = [
        Document(id=f"d{i}", title=f"Topic {i}", text=f"Fact {i}: the river {i} is long.")
        for i in range(30)
    ] + [Document(id="gold", title="Paris", text="Paris is the capital of France.")]
    index, _ = LocalIndex.build(docs, tmp_path / "idx", embedder=embedder)
    from retrieval import IndexRetriever

    data = tmp_path / "q.jsonl"
    data.write_text(
        json.dumps({"id": "fr", "question": "What is the capital of France?", "answers": ["Paris"]})
        + "\n"
    )
    results = {}
    for mode in ("empty", "distractor"):
        cfg = EvalConfig(
            datasets=[str(data)], conditions=["tools", "retrieval-failure"], failure_mode=mode
        )
        recs = await run_eval(
            cfg,
            _searching_engine(tokenizer),
            tmp_path / mode,
            retriever=IndexRetriever(index),
            index=index,
        )
        results[mode] = {r["condition"]: r for r in recs}
    tools = results["empty"]["tools"]
    assert "gold" in tools["sources"] and tools["grade"] == "CORRECT"
    empty = results["empty"]["retrieval-failure:empty"]
    assert empty["sources"] == [] and empty["grade"] == "NOT_ATTEMPTED" and empty["searches"] == 1
    distractor = results["distractor"]["retrieval-failure:distractor"]
    assert distractor["sources"] and "gold" not in distractor["sources"]
    assert distractor["grade"] == "INCORRECT"  # the scripted model trusts the distractor

    report = write_report(tmp_path / "empty")
    text = report.read_text()
    assert "| q | tools |" in text and (tmp_path / "empty" / "grades.png").stat().st_size > 1000
    assert "retrieval-failure:empty" in compare_runs(tmp_path / "empty", tmp_path / "empty")


async def test_existing_run_needs_resume_and_bad_config_is_refused(
    tmp_path: Path, tokenizer
) -> None:
    data = _dataset(tmp_path, 2)
    engine = ScriptedEngine(
        lambda p, s: tokenizer.encode("<answer> Lyon </answer>", add_special_tokens=False),
        tokenizer,
    )
    cfg = EvalConfig(datasets=[str(data)], conditions=["closed-book"])
    await run_eval(cfg, engine, tmp_path / "r")
    with pytest.raises(ConfigError, match="--resume"):
        await run_eval(cfg, engine, tmp_path / "r")
    with pytest.raises(ConfigError, match="unknown condition"):
        await run_eval(EvalConfig(datasets=[str(data)], conditions=["web"]), engine, tmp_path / "x")
    with pytest.raises(ConfigError, match="needs an index"):
        await run_eval(
            EvalConfig(datasets=[str(data)], conditions=["tools"]), engine, tmp_path / "y"
        )


async def test_resume_refuses_other_settings_and_names_them(tmp_path: Path, tokenizer) -> None:
    data = _dataset(tmp_path, 2)
    engine = ScriptedEngine(
        lambda p, s: tokenizer.encode("<answer> Lyon </answer>", add_special_tokens=False),
        tokenizer,
    )
    cfg = EvalConfig(datasets=[str(data)], conditions=["closed-book"])
    await run_eval(cfg, engine, tmp_path / "r")
    other = cfg.model_copy(update={"protocol": "hermes"})
    with pytest.raises(ConfigError, match="protocol 'splice' → 'hermes'"):
        await run_eval(other, engine, tmp_path / "r", resume=True)
    data.write_text(data.read_text().replace("number 0", "number zero"))
    with pytest.raises(ConfigError, match="dataset .* changed"):
        await run_eval(cfg, engine, tmp_path / "r", resume=True)
    data.write_text(data.read_text().replace("number zero", "number 0"))
    # More questions in flight changes no record: accepted, nothing re-asked.
    asked = len(engine.requests)
    recs = await run_eval(
        cfg.model_copy(update={"concurrency": 3}), engine, tmp_path / "r", resume=True
    )
    assert len(recs) == 2 and len(engine.requests) == asked


async def test_resume_retries_failed_questions_only(tmp_path: Path, tokenizer) -> None:
    from agent.errors import EngineError

    data = _dataset(tmp_path, 3)
    broken = {"on": True}

    def handler(prompt, params):
        if broken["on"] and "number 1?" in tokenizer.decode(prompt):
            raise EngineError("the engine died")
        return tokenizer.encode("<answer> Lyon </answer>", add_special_tokens=False)

    engine = ScriptedEngine(handler, tokenizer)
    cfg = EvalConfig(datasets=[str(data)], conditions=["closed-book"])
    first = await run_eval(cfg, engine, tmp_path / "r")
    assert [r["grade"] for r in first if r["id"] == "q1"] == ["ERROR"]
    broken["on"] = False
    asked = len(engine.requests)
    again = await run_eval(cfg, engine, tmp_path / "r", resume=True)
    assert len(engine.requests) == asked + 1  # only the failed question
    assert [r["grade"] for r in again if r["id"] == "q1"] == ["INCORRECT"]
    assert len(again) == 3


async def test_datasets_with_one_file_name_in_two_folders_are_both_run(
    tmp_path: Path, tokenizer
) -> None:
    a = _dataset(tmp_path / "a", 2)
    b = _dataset(tmp_path / "b", 3)  # same stem "qs", same ids q0, q1
    assert a.name == b.name
    engine = ScriptedEngine(
        lambda p, s: tokenizer.encode("<answer> Lyon </answer>", add_special_tokens=False),
        tokenizer,
    )
    cfg = EvalConfig(datasets=[str(a), str(b)], conditions=["closed-book"])
    recs = await run_eval(cfg, engine, tmp_path / "r")
    assert len(recs) == 5 and {r["dataset"] for r in recs} == {str(a), str(b)}
    with pytest.raises(ConfigError, match="given twice"):
        await run_eval(
            EvalConfig(datasets=[str(a), str(a)], conditions=["closed-book"]),
            engine,
            tmp_path / "x",
        )
