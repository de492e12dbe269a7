"""Answer confidence by self-agreement, abstaining below a threshold, and choosing
that threshold on a dev run."""

from __future__ import annotations

from agent.confidence import agreement, answer_start, normalize_answer
from agent.sdk import Agent
from agent.tools import InMemoryRetriever, Passage
from agent.trace import AnswerStep, ConfidenceStep
from evals.metrics import auroc, choose_threshold, risk_coverage, score_key
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
