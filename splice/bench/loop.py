"""``splice bench loop``: three side-by-side figures for the orchestrator.

(a) Overhead: agent wall time minus tool time, over the time the raw engine needs to
    serve exactly the same requests (recorded, then replayed), prefix cache reset
    before each. Real vLLM, one question at a time.
(b) Async vs step-synchronous: 32 questions, 1 to 4 searches each and 8 to 48
    tokens before each call, tool latencies drawn from a seeded log-normal (heavy
    tail). The per-trajectory async scheduler
    (``Agent.aask_many``) against a Search-R1-style loop that generates for every
    active question, then waits for every tool, every round. The engine here is the
    scripted one with a fixed per-token delay: this figure is about scheduling, and
    both schedulers get identical generations and identical tool latencies.
(c) Resume prefill: on each resume, prompt ids not served by the prefix cache, as a
    share of the ids appended since the previous request. Real vLLM, from (a).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import BaseModel

from agent.engine import Engine, GenerationChunk, SamplingParams
from agent.loop import Budgets
from agent.protocols import Message, Protocol
from agent.sdk import Agent
from agent.tools import InMemoryRetriever, Passage, Tool
from agent.trace import GenerationStep, ToolResultStep
from serving.scripted import ScriptedEngine

from .report import BenchReport

__all__ = ["LoopBench", "run_loop_bench", "step_synchronous"]

KB = [
    Passage(id="fr", title="France", text="Paris is the capital and largest city of France."),
    Passage(id="jp", title="Japan", text="Tokyo is the capital of Japan."),
    Passage(id="h2o", title="Water", text="Water boils at 100 degrees Celsius at sea level."),
    Passage(id="moon", title="Moon", text="The Moon orbits the Earth about every 27 days."),
]
QUESTIONS = [
    "What is the capital of France?",
    "What is the capital of Japan?",
    "At what temperature does water boil?",
    "How long does the Moon take to orbit the Earth?",
    "Which city is the largest in France?",
    "What orbits the Earth?",
    "Where is Tokyo?",
    "What boils at 100 degrees?",
]


class RecordingEngine(Engine):
    """Passes requests through to ``inner`` and records them for a replay."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.model = inner.model
        self.max_model_len = inner.max_model_len
        self.requests: list[tuple[list[int], SamplingParams]] = []

    @property
    def tokenizer(self) -> Any:
        return self.inner.tokenizer

    async def _stream(
        self, prompt_token_ids: list[int], params: SamplingParams, request_id: str | None
    ) -> AsyncIterator[GenerationChunk]:
        self.requests.append((prompt_token_ids, params))
        async for chunk in self.inner.generate(prompt_token_ids, params, request_id=request_id):
            yield chunk


class LoopBench(BenchReport):
    questions: int
    agent_s: float
    tool_s: float
    raw_engine_s: float
    overhead_ratio: float
    batch: int
    rounds: int
    latency: Latency
    async_s: float
    step_sync_s: float
    async_speedup: float
    resume_prefilled: int
    resume_appended: int
    resume_prefill_share: float

    def title(self) -> str:
        return "splice bench loop"

    def columns(self) -> list[str]:
        return ["figure", "measured", "goal"]

    def table_rows(self) -> list[list[str]]:
        return [
            [
                f"(a) overhead: (agent {self.agent_s:.2f}s − tools {self.tool_s:.2f}s) / "
                f"raw engine {self.raw_engine_s:.2f}s",
                f"{self.overhead_ratio:.3f}",
                "≤ 1.05",
            ],
            [
                f"(b) step-sync {self.step_sync_s:.2f}s / async {self.async_s:.2f}s "
                f"({self.batch} questions × 1–{self.rounds} searches, tool latency "
                f"log-normal median {self.latency.median_s:g}s σ {self.latency.sigma:g})",
                f"{self.async_speedup:.2f}×",
                "≥ 2×",
            ],
            [
                f"(c) resume prefill: {self.resume_prefilled} of {self.resume_appended} "
                "appended ids",
                f"{self.resume_prefill_share:.2f}",
                "≈ 1 (history cached)",
            ],
        ]


async def _reset_cache(engine: Engine) -> None:
    reset = getattr(engine, "reset_prefix_cache", None)
    if reset is not None:
        await reset()


async def _overhead(engine: Engine, n: int) -> tuple[float, float, float, int, int]:
    rec = RecordingEngine(engine)
    agent = Agent(rec, [InMemoryRetriever(KB)], budgets=Budgets(max_turns=2, max_segment_tokens=32))
    prefill = agent.protocol.prompt_prefill_ids("search")
    await agent.aask(QUESTIONS[0], prefill=prefill)  # warm-up
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(n)]

    await _reset_cache(engine)
    per_question: list[list[tuple[list[int], SamplingParams]]] = []
    agent_s = tool_s = 0.0
    prefilled = appended = 0
    for q in questions:
        rec.requests.clear()
        t0 = time.perf_counter()
        answer = await agent.aask(q, prefill=prefill)
        agent_s += time.perf_counter() - t0
        tool_s += sum(s.seconds for s in answer.trace if isinstance(s, ToolResultStep))
        per_question.append(list(rec.requests))
        gens = [s for s in answer.trace if isinstance(s, GenerationStep)]
        for prev, cur in zip(gens, gens[1:]):
            if cur.cached_prompt_tokens is not None:
                prefilled += cur.prompt_tokens - cur.cached_prompt_tokens
                appended += cur.prompt_tokens - prev.prompt_tokens

    await _reset_cache(engine)
    t0 = time.perf_counter()
    for requests in per_question:
        for prompt, params in requests:
            await engine.complete(prompt, params)
    raw_s = time.perf_counter() - t0
    return agent_s, tool_s, raw_s, prefilled, appended


class Latency(BaseModel):
    """Tool latency: log-normal (heavy right tail), seeded per query, capped at the
    tool timeout. The defaults resemble fetching web pages: median 0.3 s, and about
    one call in 20 over 1.5 s."""

    median_s: float = 0.3
    sigma: float = 1.0
    cap_s: float = 15.0

    def draw(self, query: str) -> float:
        value = random.Random(query).lognormvariate(math.log(self.median_s), self.sigma)
        return min(self.cap_s, value)


def _searches(qid: str, rounds: int) -> int:
    """How many searches question ``qid`` makes: 1 to ``rounds``, seeded."""
    return random.Random(f"rounds:{qid}").randint(1, rounds)


def _scripted(protocol_tok: Any, rounds: int, per_token_s: float) -> ScriptedEngine:
    # Trajectories differ, as real ones do: each question makes 1..rounds searches and
    # writes 8..48 tokens of reasoning before each call (seeded, identical for both
    # schedulers). A step-synchronous batch waits for its longest member every round.
    def handler(prompt: list[int], params: SamplingParams) -> list[int]:
        text = protocol_tok.decode(prompt)
        qid = text.rsplit("user\n", 1)[1].split("<|im_end|>")[0]
        done = text.count("</information>")
        filler = " so" * random.Random(f"len:{qid}:{done}").randint(8, 48)
        if done < _searches(qid, rounds):
            return protocol_tok.encode(
                f"{filler}<search> {qid} round {done} </search>", add_special_tokens=False
            )
        return protocol_tok.encode(f"{filler}<answer> done </answer>", add_special_tokens=False)

    return ScriptedEngine(handler, protocol_tok, delay_s=per_token_s)


def _slow_search_tool(latency: Latency) -> Tool:
    async def search(query: str) -> list[Passage]:
        """Search with a latency drawn for this query."""
        await asyncio.sleep(latency.draw(query))
        return KB[:1]

    return Tool.from_function(search)


async def step_synchronous(agent: Agent, questions: list[str]) -> list[str]:
    """Search-R1-style baseline: one barrier per step for generation and for tools."""
    p: Protocol = agent.protocol
    states = [
        {"ids": agent.prompt_ids([Message(role="user", content=q)], True), "answer": None}
        for q in questions
    ]
    params = SamplingParams(
        max_tokens=agent.budgets.max_segment_tokens,
        stop_token_ids=p.stop_token_ids,
        banned_token_ids=p.banned_token_ids,
    )
    for _ in range(agent.budgets.max_turns):
        active = [s for s in states if s["answer"] is None]
        if not active:
            break
        gens = await asyncio.gather(*(agent.engine.complete(s["ids"], params) for s in active))
        calls = []
        for s, g in zip(active, gens):
            s["ids"] = s["ids"] + g.token_ids
            action = p.parse(g.token_ids)
            if action.kind == "call" and action.call is not None:
                calls.append((s, action.call))
            else:
                s["answer"] = action.answer or ""
        results = await asyncio.gather(*(agent.tools[c.name](c.arguments) for _, c in calls))
        for (s, _), result in zip(calls, results):
            blocks = [r.render() for r in result]
            s["ids"] = s["ids"] + p.result_ids(blocks, agent.budgets.passage_tokens)
    return [s["answer"] or "" for s in states]


async def _async_vs_sync(
    tokenizer: Any, batch: int, rounds: int, latency: Latency
) -> tuple[float, float]:
    budgets = Budgets(
        max_turns=rounds + 1,
        max_searches=rounds,
        max_segment_tokens=64,
        tool_timeout_s=latency.cap_s + 1,
    )
    questions = [f"question {i}" for i in range(batch)]

    engine = _scripted(tokenizer, rounds, per_token_s=0.002)
    agent = Agent(engine, [_slow_search_tool(latency)], budgets=budgets)
    t0 = time.perf_counter()
    answers = await agent.aask_many(questions, concurrency=batch)
    async_s = time.perf_counter() - t0
    assert all(a.text == "done" for a in answers), "async run did not finish its script"

    engine = _scripted(tokenizer, rounds, per_token_s=0.002)
    agent = Agent(engine, [_slow_search_tool(latency)], budgets=budgets)
    t0 = time.perf_counter()
    sync_answers = await step_synchronous(agent, questions)
    sync_s = time.perf_counter() - t0
    assert all(a == "done" for a in sync_answers), "step-sync run did not finish its script"
    return async_s, sync_s


def run_loop_bench(
    engine_factory: Callable[[], Engine],
    *,
    questions: int = 8,
    batch: int = 32,
    rounds: int = 4,
    latency: Latency | None = None,
    log: Callable[[str], None] = print,
) -> LoopBench:
    latency = latency or Latency()

    async def main() -> LoopBench:
        log("starting the engine…")
        engine = engine_factory()
        try:
            log(f"(a)+(c): {questions} questions through the agent, then replayed raw…")
            agent_s, tool_s, raw_s, prefilled, appended = await _overhead(engine, questions)
            log(f"(b): {batch} questions × {rounds} searches, async then step-synchronous…")
            async_s, sync_s = await _async_vs_sync(engine.tokenizer, batch, rounds, latency)
        finally:
            await engine.aclose()
        return LoopBench(
            questions=questions,
            agent_s=agent_s,
            tool_s=tool_s,
            raw_engine_s=raw_s,
            overhead_ratio=(agent_s - tool_s) / raw_s,
            batch=batch,
            rounds=rounds,
            latency=latency,
            async_s=async_s,
            step_sync_s=sync_s,
            async_speedup=sync_s / async_s,
            resume_prefilled=prefilled,
            resume_appended=appended,
            resume_prefill_share=prefilled / appended if appended else float("nan"),
        )

    return asyncio.run(main())
