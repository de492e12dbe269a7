"""The SDK: ``Agent`` wraps an engine, a protocol and tools.

Every trajectory is its own async task over the shared engine, so ``ask_many`` keeps
vLLM's continuous batching full while some questions wait on tools: there is no
step-synchronous barrier. The engine runs on a loop of its own
(:mod:`agent.homeloop`), so the sync methods, ``asyncio.run`` and a server's loop
can share one agent in any order. Use the agent as a context manager, or call
:meth:`Agent.close`, to stop the engine.

The default model and knowledge base are wired up outside this package, by
``splice.default_agent()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from .confidence import ConfidenceConfig, Score
from .engine import Engine, SamplingParams
from .loop import Budgets, run_trajectory
from .protocols import Message, Protocol, get_protocol
from .tools import Retriever, Tool, search_tool
from .trace import Answer, AnswerEvent, Event

__all__ = ["Agent", "ChatSession", "DEFAULT_SYSTEM_PROMPT"]

DEFAULT_SYSTEM_PROMPT = (
    "You are Splice, a careful assistant that answers from what it knows or reads. "
    'You never guess: when you are not sure, you say "I don\'t know".'
)

ToolLike = Tool | Retriever | Callable[..., Any]


def _as_tool(t: ToolLike) -> Tool:
    if isinstance(t, Tool):
        return t
    if isinstance(t, Retriever):
        return search_tool(t)
    return Tool.from_function(t)


class Agent:
    def __init__(
        self,
        engine: Engine,
        tools: Iterable[ToolLike] = (),
        *,
        protocol: str | Protocol = "splice",
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        sampling: SamplingParams | None = None,
        budgets: Budgets | None = None,
        use_tools: bool = True,
        confidence_samples: int = 0,
        abstain_below: float | None = None,
        confidence_score: Score = "agreement",
    ) -> None:
        """``confidence_samples`` > 0 scores every answer by self-agreement
        (:mod:`agent.confidence`); ``abstain_below`` then turns answers scored lower
        into "I don't know" (it implies 5 samples when none are asked for; 0 = off).
        ``confidence_score="logprob"`` scores by the sampled ids' geometric-mean
        probability instead: no samples needed."""
        self.engine = engine
        self.tools = {t.name: t for t in map(_as_tool, tools)}
        self.protocol = (
            get_protocol(protocol, engine.tokenizer) if isinstance(protocol, str) else protocol
        )
        self.system_prompt = system_prompt
        self.sampling = sampling or SamplingParams()
        self.budgets = budgets or Budgets()
        self.use_tools = use_tools
        if abstain_below and confidence_samples == 0 and confidence_score == "agreement":
            confidence_samples = 5
        self.confidence = ConfidenceConfig(
            score=confidence_score, samples=confidence_samples, abstain_below=abstain_below
        )

    # -- prompts -------------------------------------------------------------

    def prompt_ids(
        self, history: Sequence[Message], use_tools: bool, system_prompt: str | None = None
    ) -> list[int]:
        system = self.system_prompt if system_prompt is None else system_prompt
        messages = [Message(role="system", content=system), *history]
        specs = [t.spec() for t in self.tools.values()]
        tools_text = self.protocol.tools_text(specs) if use_tools and self.tools else None
        return self.protocol.prompt_ids(messages, tools_text)

    # -- async API -----------------------------------------------------------

    async def stream(
        self,
        question: str | Sequence[Message],
        *,
        use_tools: bool | None = None,
        prefill: Sequence[int] = (),
        sampling: SamplingParams | None = None,
        budgets: Budgets | None = None,
        system_prompt: str | None = None,
    ) -> AsyncIterator[Event]:
        """Events as they happen; the last one is an ``AnswerEvent``.

        ``sampling``, ``budgets`` and ``system_prompt`` replace the agent's own for
        this call (a server's per-request settings)."""
        history = (
            [Message(role="user", content=question)]
            if isinstance(question, str)
            else list(question)
        )
        tools_on = self.use_tools if use_tools is None else use_tools
        async for ev in run_trajectory(
            self.engine,
            self.protocol,
            self.prompt_ids(history, tools_on, system_prompt),
            tools=self.tools if tools_on else {},
            sampling=sampling or self.sampling,
            budgets=budgets or self.budgets,
            prefill=prefill,
            confidence=self.confidence,
        ):
            yield ev

    async def aask(self, question: str | Sequence[Message], **kwargs: Any) -> Answer:
        answer: Answer | None = None
        async for ev in self.stream(question, **kwargs):
            if isinstance(ev, AnswerEvent):
                answer = ev.answer
        assert answer is not None  # run_trajectory always ends with an answer
        return answer

    async def aask_many(
        self, questions: Sequence[str], *, concurrency: int = 32, **kwargs: Any
    ) -> list[Answer]:
        """Each question is its own task; at most ``concurrency`` in flight."""
        gate = asyncio.Semaphore(concurrency)

        async def one(q: str) -> Answer:
            async with gate:
                return await self.aask(q, **kwargs)

        return list(await asyncio.gather(*(one(q) for q in questions)))

    # -- sync API ------------------------------------------------------------

    def _run(self, coro: Any) -> Any:
        # On the engine's own loop: no relay per chunk, and it works even when the
        # caller is inside a running event loop (a notebook).
        return self.engine.home.call(coro)

    def ask(self, question: str | Sequence[Message], **kwargs: Any) -> Answer:
        return self._run(self.aask(question, **kwargs))

    def ask_many(self, questions: Sequence[str], **kwargs: Any) -> list[Answer]:
        return self._run(self.aask_many(questions, **kwargs))

    def chat(self) -> ChatSession:
        return ChatSession(self)

    def close(self) -> None:
        """Stop the engine (its processes too). The agent is unusable afterwards."""
        self.engine.close()

    async def aclose(self) -> None:
        await self.engine.aclose()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class ChatSession:
    """A multi-turn conversation: each answer joins the history."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.history: list[Message] = []
        self.use_tools = agent.use_tools

    async def astream(self, text: str) -> AsyncIterator[Event]:
        self.history.append(Message(role="user", content=text))
        async for ev in self.agent.stream(self.history, use_tools=self.use_tools):
            if isinstance(ev, AnswerEvent):
                self.history.append(self._turn(ev.answer))
            yield ev

    def _turn(self, answer: Answer) -> Message:
        """The answer as the next prompt shows it. The latest turn keeps its own
        tokens, searches included: shown only "I don't know", the model took the
        conversation for one that is answered without searching. Older turns shrink
        to their text, which bounds the prompt."""
        for m in self.history:
            m.ids = None
        ids = list(answer.token_ids)
        while ids and ids[-1] in self.agent.protocol.end_ids:
            ids.pop()
        keep = ids and answer.withheld is None  # a withheld answer's tokens say otherwise
        return Message(role="assistant", content=answer.text, ids=ids if keep else None)

    async def aask(self, text: str) -> Answer:
        answer = None
        async for ev in self.astream(text):
            if isinstance(ev, AnswerEvent):
                answer = ev.answer
        assert answer is not None
        return answer

    def ask(self, text: str) -> Answer:
        return self.agent._run(self.aask(text))

    def reset(self) -> None:
        self.history.clear()
