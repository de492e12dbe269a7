"""Answer confidence by self-agreement, abstaining below a threshold, and choosing
that threshold on a dev run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.confidence import agreement, answer_start, normalize_answer
from agent.errors import ConfigError
from agent.sdk import Agent
from agent.tools import InMemoryRetriever, Passage
from agent.trace import AnswerStep, ConfidenceStep
from evals.metrics import (
    at_threshold,
    auroc,
    choose_threshold,
    risk_coverage,
    score_key,
    withhold_below,
)
from serving.scripted import ScriptedEngine

PARIS = Passage(id="fr", title="France", text="The capital of France is Paris.", source="kb")


def test_agreement_and_normalization() -> None:
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert agreement("Paris", ["paris", "Paris, France", "Lyon", ""]) == 0.5
    assert agreement("", ["x"]) == 0.0 and agreement("x", []) == 0.0
    assert answer_start([5, 9, 1, 9, 2], [9]) == 4
    assert answer_start([5, 1, 2], [9]) is None


def _engine(tokenizer, sampled_answers: list[str]) -> ScriptedEngine:
    """Greedy: search, then answer Paris. Sampled (temperature > 0): the given answers
    in turn, continuing after the <answer> tag the loop ends its context with."""
    greedy = [
        tokenizer.encode(s, add_special_tokens=False)
        for s in ("<search> capital of France </search>", "<answer> Paris </answer>")
    ]
    answer_id = tokenizer.convert_tokens_to_ids("<answer>")
    contexts = []

    def handler(prompt, params):
        if params.temperature > 0:
            contexts.append(prompt)
            assert prompt[-1] == answer_id  # resampled from where the answer began
            text = sampled_answers[params.seed % len(sampled_answers)]
            return tokenizer.encode(f" {text} </answer>", add_special_tokens=False)
        return greedy.pop(0) if greedy else []

    engine = ScriptedEngine(handler, tokenizer)
    engine.contexts = contexts  # type: ignore[attr-defined]
    return engine


async def test_confidence_is_recorded_and_low_confidence_abstains(tokenizer) -> None:
    engine = _engine(tokenizer, ["Paris", "Lyon", "Paris", "Marseille"])
    agent = Agent(engine, [InMemoryRetriever([PARIS])], confidence_samples=4)
    answer = await agent.aask("What is the capital of France?")
    assert answer.text == "Paris" and answer.confidence == 0.5
    step = next(s for s in answer.trace if isinstance(s, ConfidenceStep))
    assert sorted(step.samples) == ["Lyon", "Marseille", "Paris", "Paris"]
    # All four samples share the history up to <answer>: the prefix cache serves it.
    assert len({tuple(c) for c in engine.contexts}) == 1

    strict = Agent(
        _engine(tokenizer, ["Paris", "Lyon"]),
        [InMemoryRetriever([PARIS])],
        confidence_samples=4,
        abstain_below=0.75,
    )
    withheld = await strict.aask("What is the capital of France?")
    assert withheld.abstained and withheld.text == "I don't know"
    assert withheld.confidence == 0.5 and withheld.citations == []
    last = withheld.trace[-1]
    assert isinstance(last, AnswerStep) and last.withheld == "Paris"


async def test_an_abstention_is_not_resampled(tokenizer) -> None:
    script = [tokenizer.encode("<answer> I don't know </answer>", add_special_tokens=False)]
    engine = ScriptedEngine(lambda p, s: script.pop(0) if script else [], tokenizer)
    answer = await Agent(engine, [], use_tools=False, abstain_below=0.5).aask("Who?")
    assert answer.abstained and answer.confidence is None and len(engine.requests) == 1


def _rec(grade: str, confidence: float, **kw) -> dict:
    return {
        "dataset": "d",
        "condition": "tools",
        "id": str(confidence),
        "grade": grade,
        "confidence": confidence,
        "answer_logprob": -confidence,
        **kw,
    }


def test_auroc_threshold_and_risk_coverage() -> None:
    records = [
        _rec("CORRECT", 1.0),
        _rec("CORRECT", 0.8),
        _rec("INCORRECT", 0.6),
        _rec("CORRECT", 0.4),
        _rec("INCORRECT", 0.2),
        _rec("NOT_ATTEMPTED", 0.0),
    ]
    assert score_key(records) == "confidence"
    assert auroc(records) == 5 / 6  # of 6 (correct, wrong) pairs, one is misordered
    assert auroc(records, "answer_logprob") == 1 / 6
    # 2 of 6 hallucinated by default; at most 1 of 6 needs a threshold above 0.2,
    # and none needs one above 0.6.
    t = choose_threshold(records, target=0.2)
    assert t is not None and t.threshold == 0.4 and t.hallucinated == 1 / 6
    assert t.correct == 3 / 6 and abs(t.abstained - 2 / 6) < 1e-9
    assert choose_threshold(records, target=0.0).threshold == 0.8
    # A withheld answer is graded as it would have been, for calibration.
    withheld = [_rec("NOT_ATTEMPTED", 0.3, withheld_grade="INCORRECT"), *records]
    assert auroc(withheld) == 8 / 9  # counted as a wrong answer at 0.3, not left out
    pts = risk_coverage(records)
    assert pts[0] == (1 / 6, 0.0) and pts[-1] == (5 / 6, 2 / 5)


async def test_answer_tokens_are_marked_so_a_stream_can_hold_them(tokenizer) -> None:
    from agent.trace import TokenEvent

    agent = Agent(_engine(tokenizer, ["Paris"]), [InMemoryRetriever([PARIS])])
    events = [ev async for ev in agent.stream("What is the capital of France?")]
    answer_text = "".join(ev.text for ev in events if isinstance(ev, TokenEvent) and ev.answer)
    assert answer_text.strip() == "Paris"
    # A plain chat reply has no answer tag: nothing in it may be withheld, so it streams.
    hello = tokenizer.encode("Hello there!", add_special_tokens=False)
    chat = Agent(ScriptedEngine(lambda p, s: hello, tokenizer), [], use_tools=False)
    tokens = [ev async for ev in chat.stream("hi") if isinstance(ev, TokenEvent)]
    assert tokens and not any(ev.answer for ev in tokens)


def test_the_server_sends_a_held_answer_once_scored(tokenizer) -> None:
    """With a threshold, a streamed answer is not sent before its score: the client
    gets "I don't know", never the guess it replaced."""
    from contextlib import asynccontextmanager

    from fastapi.testclient import TestClient

    from splice.server import create_app

    def content(abstain_below: float | None) -> str:
        @asynccontextmanager
        async def open_agent():
            yield Agent(
                _engine(tokenizer, ["Lyon", "Nice"]),
                [InMemoryRetriever([PARIS])],
                confidence_samples=2,
                abstain_below=abstain_below,
            )

        body = {"model": "splice", "stream": True, "messages": [{"role": "user", "content": "?"}]}
        with TestClient(create_app(open_agent)) as client:
            text = client.post("/v1/chat/completions", json=body).text
        chunks = [json.loads(line[6:]) for line in text.splitlines() if line[6:7] == "{"]
        return "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )

    assert content(None).strip() == "Paris"  # no threshold: streamed as it comes
    assert content(0.5).strip() == "I don't know"


def test_at_threshold_matches_what_abstain_below_would_do() -> None:
    records = [_rec("CORRECT", 1.0), _rec("INCORRECT", 0.6), _rec("NOT_ATTEMPTED", 0.0)]
    raw, strict = at_threshold(records, 0.0), at_threshold(records, 0.8)
    assert raw is not None and (raw.correct, raw.hallucinated) == (1 / 3, 1 / 3)
    assert strict is not None and (strict.correct, strict.hallucinated) == (1 / 3, 0.0)
    assert at_threshold([], 0.5) is None
    # The records themselves, as the threshold leaves them (for the quality bar):
    # a lower threshold than the run's gives a withheld answer back.
    withheld = withhold_below(records, 0.8)
    assert [r["grade"] for r in withheld] == ["CORRECT", "NOT_ATTEMPTED", "NOT_ATTEMPTED"]
    assert withheld[1]["withheld_grade"] == "INCORRECT" and "withheld_grade" not in withheld[0]
    back = withhold_below(withheld, 0.5)
    assert [r["grade"] for r in back] == ["CORRECT", "INCORRECT", "NOT_ATTEMPTED"]


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "dev"
    run.mkdir()
    records = [_rec("CORRECT", 1.0), _rec("INCORRECT", 0.6), _rec("CORRECT", 0.8)]
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "manifest.json").write_text(json.dumps({"config": {"confidence_samples": 3}}))
    return run


def test_calibrate_saves_a_threshold_that_prepare_and_the_cli_pick_up(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from agent.confidence import CALIBRATION_FILE
    from serving.prepare import adapter_digest, read_calibration
    from splice.cli import app
    from splice.defaults import calibrated, model_calibration
    from training.sft import ship_adapter

    run, model = _run_dir(tmp_path), tmp_path / "model"
    model.mkdir()
    (model / "adapter_model.safetensors").write_bytes(b"w")
    (model / "adapter_config.json").write_text("{}")
    before = adapter_digest(model)
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "calibrate",
            str(run),
            "--target",
            "0",
            "--score",
            "agreement",
            "--save",
            str(model),
        ],
    )
    assert result.exit_code == 0, result.output
    cal = read_calibration(model)
    assert cal is not None and cal.abstain_below == 0.8 and cal.confidence_samples == 3
    assert cal.dev["hallucinated"] == 0.0 and cal.dev_run == "dev"
    assert adapter_digest(model) != before  # a new threshold re-prepares the model
    # What ask, chat and serve run with: the model's threshold, unless told (0 = off).
    assert calibrated(model_calibration(str(model)), 0, None) == {
        "confidence_samples": 3,
        "abstain_below": 0.8,
        "confidence_score": "agreement",
    }
    assert calibrated(model_calibration(str(model)), 0, 0.0)["abstain_below"] == 0.0
    assert (
        calibrated(model_calibration(str(model)), 0, None, "logprob")["abstain_below"] is None
    )  # not its score
    assert calibrated(model_calibration(str(tmp_path)), 0, None)["abstain_below"] is None
    # --at applies a threshold chosen elsewhere, per dataset.
    shown = CliRunner().invoke(
        app,
        ["eval", "calibrate", str(run), "--at", "0.7", "--score", "agreement"],
        terminal_width=80,
    )
    assert shown.exit_code == 0 and "66.7→66.7" in shown.output and "33.3→0.0" in shown.output
    both = CliRunner().invoke(
        app, ["eval", "calibrate", str(run), "--at", "0.7", "--save", str(model)]
    )
    assert isinstance(both.exception, ConfigError) and "drop --at" in str(both.exception)
    # A broken file is named, with the fix.
    (model / CALIBRATION_FILE).write_text("{")
    with pytest.raises(ConfigError, match="splice eval calibrate --save"):
        read_calibration(model)
    # Shipping new weights drops the old weights' threshold.
    (tmp_path / "log.json").write_text("{}")
    ship_adapter(model, tmp_path / "log.json", tmp_path / "shipped")
    (tmp_path / "shipped" / CALIBRATION_FILE).write_text("{}")
    ship_adapter(model, tmp_path / "log.json", tmp_path / "shipped")
    assert not (tmp_path / "shipped" / CALIBRATION_FILE).exists()


async def test_the_logprob_score_needs_no_samples_and_withholds_below_it(tokenizer) -> None:
    """``logprob``: exp(mean logprob) of the sampled ids, asked of the engine even when
    the caller's sampling did not ask, with no resampling."""
    import math

    def engine(logprob: float) -> ScriptedEngine:
        script = [
            tokenizer.encode(s, add_special_tokens=False)
            for s in ("<search> capital of France </search>", "<answer> Paris </answer>")
        ]
        return ScriptedEngine(
            lambda p, s: script.pop(0) if script else [], tokenizer, token_logprob=logprob
        )

    sure = engine(-0.05)
    answer = await Agent(
        sure, [InMemoryRetriever([PARIS])], confidence_score="logprob", abstain_below=0.9
    ).aask("What is the capital of France?")
    assert answer.text == "Paris" and abs(answer.confidence - math.exp(-0.05)) < 1e-9
    assert len(sure.requests) == 2 and all(p.logprobs == 0 for _, p in sure.requests)
    unsure = await Agent(
        engine(-0.5), [InMemoryRetriever([PARIS])], confidence_score="logprob", abstain_below=0.9
    ).aask("What is the capital of France?")
    assert unsure.abstained and unsure.withheld == "Paris"


def test_calibrate_picks_the_score_with_the_higher_auroc(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from splice.cli import app

    run = tmp_path / "dev"
    run.mkdir()
    # Agreement ranks these badly, the token probability perfectly.
    records = [
        _rec("CORRECT", 0.2, answer_logprob=-0.1),
        _rec("CORRECT", 0.4, answer_logprob=-0.2),
        _rec("INCORRECT", 0.8, answer_logprob=-1.5),
        _rec("INCORRECT", 0.6, answer_logprob=-2.0),
    ]
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = CliRunner().invoke(app, ["eval", "calibrate", str(run), "--target", "0"])
    assert result.exit_code == 0, result.output
    assert "score: logprob" in result.output
    assert "--abstain-below 0.819 --confidence-score logprob" in result.output  # exp(-0.2)
    at = CliRunner().invoke(app, ["eval", "calibrate", str(run), "--at", "0.5"])
    assert isinstance(at.exception, ConfigError) and "--score" in str(at.exception)
