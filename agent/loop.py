"""The generation loop: token ids in, events out.

One trajectory is one async generator. It asks the engine to continue the history,
stops on the protocol's closing ids, runs the tool, appends the result as ids and
resumes. The history is never decoded and re-encoded, so vLLM's prefix cache serves
everything but the appended ids. A mask records which ids were sampled (True) and
which were inserted (False): training masks its loss with it.

Every run ends with an answer: when a budget runs out the model is told so and made
to answer; if it still produces nothing, the answer is "I don't know".
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from agent.engine import Engine, SamplingParams

from .confidence import ConfidenceConfig, answer_start, self_agreement, token_probability
from .protocols.base import ABSTENTION, Protocol, ToolCall, is_abstention
from .support import supporting
from .tools import Passage, Tool, ToolError
from .trace import (
    Answer,
    AnswerEvent,
    AnswerStep,
    Citation,
    ConfidenceStep,
    Event,
    GenerationStep,
    TokenEvent,
    ToolCallEvent,
    ToolCallStep,
    ToolResultEvent,
    ToolResultStep,
)

__all__ = ["Budgets", "run_trajectory"]

ANSWER_ROOM = 48  # ids kept free so a forced answer always fits


class Budgets(BaseModel):
    max_turns: int = Field(4, ge=1, description="Generation segments before a forced answer.")
    max_searches: int = Field(3, ge=0)
    max_new_tokens: int = Field(768, ge=16, description="Sampled plus inserted ids, all turns.")
    max_segment_tokens: int = Field(256, ge=8, description="Ids per generation segment.")
    passages: int = Field(3, ge=1, description="Passages spliced per search.")
    passage_tokens: int = Field(96, ge=8, description="Each passage is cut to this many ids.")
    tool_timeout_s: float = Field(15.0, gt=0)


def _normalize(query: str) -> str:
    return " ".join(query.lower().split())


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + "…"


def _blocks(result: Any, limit: int, protocol: Protocol) -> tuple[list[str], list[Citation]]:
    if isinstance(result, list) and all(isinstance(p, Passage) for p in result):
        kept = result[:limit]
        cites = [
            Citation(
                id=p.id, title=p.title, source=p.source, score=p.score, snippet=_snippet(p.text)
            )
            for p in kept
        ]
        return (protocol.render_passages(kept) or ["No results found."]), cites
    if isinstance(result, str):
        return [result or "(empty result)"], []
    return [json.dumps(result, default=str)], []


class _Run:
    def __init__(
        self,
        engine: Engine,
        protocol: Protocol,
        tools: Mapping[str, Tool],
        sampling: SamplingParams,
        budgets: Budgets,
    ) -> None:
        self.engine, self.protocol, self.tools = engine, protocol, tools
        self.sampling, self.budgets = sampling, budgets
        self.ids: list[int] = []
        self.new: list[int] = []
        self.mask: list[bool] = []
        self.logprobs: list[float] = []
        self.trace: list[Any] = []
        self.citations: list[Citation] = []
        self.texts: dict[str, str] = {}  # retrieved passage id → its text
        self.seen: set[str] = set()
        self.searches = 0

    def cited(self, answer: str) -> list[Citation]:
        """The retrieved passages the answer rests on (the trace keeps them all)."""
        return supporting(answer, [(c, self.texts.get(c.id, c.snippet)) for c in self.citations])

    def insert(self, ids: Sequence[int]) -> None:
        self.ids += ids
        self.new += ids
        self.mask += [False] * len(ids)

    def room(self) -> int:
        by_window = self.engine.max_model_len - len(self.ids)
        by_budget = self.budgets.max_new_tokens - len(self.new)
        return min(by_window, by_budget)

    async def generate(
        self,
        max_tokens: int,
        *,
        stop: tuple[int, ...],
        banned: tuple[int, ...],
        parser: Any,
        answering: bool = False,
    ) -> AsyncIterator[Event]:
        params = self.sampling.model_copy(
            update={
                "max_tokens": max_tokens,
                "stop_token_ids": stop,
                "banned_token_ids": banned,
                "stop": self.protocol.stop_strings,
            }
        )
        t0 = time.perf_counter()
        seg: list[int] = []
        last = None
        prefix = self.protocol.answer_prefix_ids()
        async for chunk in self.engine.generate(self.ids, params):
            visible = "".join(parser.feed(t) for t in chunk.token_ids)
            # Only the new ids (and a tag split across chunks) can open the answer.
            since = max(0, len(seg) - len(prefix) + 1)
            seg += chunk.token_ids
            answering = answering or answer_start(seg[since:], prefix) is not None
            if chunk.logprobs:
                self.logprobs += chunk.logprobs
            if visible:
                yield TokenEvent(text=visible, answer=answering)
            last = chunk
        self.ids += seg
        self.new += seg
        self.mask += [True] * len(seg)
        self.trace.append(
            GenerationStep(
                prompt_tokens=last.prompt_tokens if last else len(self.ids) - len(seg),
                cached_prompt_tokens=last.cached_prompt_tokens if last else None,
                generated_tokens=len(seg),
                text=self.protocol.tokenizer.decode(seg),
                finish_reason=last.finish_reason if last else None,
                seconds=time.perf_counter() - t0,
            )
        )

    async def call_tool(self, call: ToolCall) -> ToolResultStep:
        t0 = time.perf_counter()
        name, arguments = call.name, call.arguments
        query = str(arguments.get("query", json.dumps(arguments, sort_keys=True)))
        blocks: list[str]
        cites: list[Citation] = []
        ok = False
        if call.error:
            blocks = [f"The tool call could not be parsed ({call.error}). Try again or answer."]
        elif name not in self.tools:
            blocks = [f"There is no tool named {name!r}. Answer from what you know."]
        elif self.searches >= self.budgets.max_searches:
            blocks = [
                "The search budget is used up. Answer now from the information above, "
                f"or say {ABSTENTION}."
            ]
        elif _normalize(query) in self.seen:
            blocks = [
                "You already searched for this. Use the information above, search "
                f"something different, or say {ABSTENTION}."
            ]
        else:
            self.seen.add(_normalize(query))
            self.searches += 1
            try:
                result = await asyncio.wait_for(
                    self.tools[name](arguments), timeout=self.budgets.tool_timeout_s
                )
                blocks, cites = _blocks(result, self.budgets.passages, self.protocol)
                if cites:  # the result was a list of passages
                    self.texts.update((p.id, p.text) for p in result[: len(cites)])
                ok = True
            except TimeoutError:
                blocks = [f"The {name} tool timed out after {self.budgets.tool_timeout_s:g}s."]
            except ToolError as exc:
                blocks = [f"The {name} tool failed: {exc}"]
            except Exception as exc:  # a tool is user code: its failure is an observation
                blocks = [f"The {name} tool failed: {type(exc).__name__}: {exc}"]
        ids = self._fit_result(blocks)
        self.insert(ids)
        self.citations += [c for c in cites if c.id not in {x.id for x in self.citations}]
        return ToolResultStep(
            name=name,
            ok=ok,
            observation="\n".join(blocks),
            sources=cites,
            inserted_tokens=len(ids),
            seconds=time.perf_counter() - t0,
        )

    def _fit_result(self, blocks: list[str]) -> list[int]:
        """Cut passages by tokens so the block, and room to answer, fit the window."""
        per_block = self.budgets.passage_tokens
        while True:
            ids = self.protocol.result_ids(blocks, per_block)
            if len(ids) + ANSWER_ROOM <= self.room() or per_block <= 8:
                break
            per_block //= 2
        if len(ids) + ANSWER_ROOM > self.room():
            ids = self.protocol.result_ids(["The results did not fit in the context window."], 16)
        return ids


async def run_trajectory(
    engine: Engine,
    protocol: Protocol,
    prompt_ids: Sequence[int],
    *,
    tools: Mapping[str, Tool] | None = None,
    sampling: SamplingParams | None = None,
    budgets: Budgets | None = None,
    prefill: Sequence[int] = (),
    confidence: ConfidenceConfig | None = None,
) -> AsyncIterator[Event]:
    """Run one trajectory; the last event is an :class:`AnswerEvent`.

    ``prefill`` ids are appended to the prompt as inserted ids (for example the
    ``<search>`` id, to make an untuned model search).
    """
    sampling = sampling or SamplingParams()
    if confidence is not None and confidence.score == "logprob" and sampling.logprobs is None:
        sampling = sampling.model_copy(update={"logprobs": 0})
    run = _Run(engine, protocol, tools or {}, sampling, budgets or Budgets())
    t_start = time.perf_counter()
    run.ids = list(prompt_ids)
    run.insert(prefill)
    banned = protocol.banned_token_ids
    answer: str | None = None
    forced = False

    for _turn in range(run.budgets.max_turns):
        room = run.room() - ANSWER_ROOM
        if room < 8:
            break
        parser = protocol.parser()
        if _turn == 0:
            for t in prefill:  # prefilled ids open the first segment, as if sampled
                parser.feed(t)
        async for ev in run.generate(
            min(room, run.budgets.max_segment_tokens),
            stop=protocol.stop_token_ids,
            banned=banned,
            parser=parser,
        ):
            yield ev
        action = parser.action()
        if action.kind == "call" and action.call is not None:
            call = action.call
            call_step = ToolCallStep(name=call.name, arguments=call.arguments)
            run.trace.append(call_step)
            yield ToolCallEvent(step=call_step)
            step = await run.call_tool(call)
            run.trace.append(step)
            yield ToolResultEvent(step=step)
            continue
        if action.kind == "answer":
            answer = action.answer
        break

    if answer is None:
        # Out of turns, tokens or window: say so, then make the model answer.
        forced = True
        note = (
            protocol.result_ids([f"No more searches. Answer now, or say {ABSTENTION}."], 32)
            if run.room() > ANSWER_ROOM + 40
            else []
        )
        run.insert(note + protocol.answer_prefix_ids())
        parser = protocol.parser()
        for t in protocol.answer_prefix_ids():
            parser.feed(t)
        room = max(1, min(run.room(), ANSWER_ROOM))
        async for ev in run.generate(
            room,
            stop=protocol.stop_token_ids,
            banned=protocol.answer_banned_ids,
            parser=parser,
            answering=True,
        ):
            yield ev
        answer = parser.action().answer

    text = (answer or "").strip() or ABSTENTION
    abstained = is_abstention(text)
    score: float | None = None
    withheld: str | None = None
    start = answer_start(run.ids, protocol.answer_prefix_ids())
    if confidence is not None and confidence.enabled and not abstained:
        samples: list[str] = []
        if confidence.score == "logprob":
            score = token_probability(run.logprobs)
        elif start is not None:
            score, samples = await self_agreement(
                engine, protocol, run.ids[:start], text, confidence, seed=run.sampling.seed or 0
            )
        if score is not None:
            run.trace.append(ConfidenceStep(score=score, samples=samples))
            if confidence.abstain_below is not None and score < confidence.abstain_below:
                withheld, text, abstained = text, ABSTENTION, True
    run.trace.append(AnswerStep(text=text, abstained=abstained, forced=forced, withheld=withheld))
    mean_lp = sum(run.logprobs) / len(run.logprobs) if run.logprobs else None
    yield AnswerEvent(
        answer=Answer(
            text=text,
            abstained=abstained,
            citations=[] if abstained else run.cited(text),
            trace=run.trace,
            token_ids=run.new,
            mask=run.mask,
            mean_logprob=mean_lp,
            confidence=score,
            seconds=time.perf_counter() - t_start,
        )
    )
