"""A scripted engine: the model's output given by a function, not sampled.

Two real uses: replaying training trajectories through the agent loop (the data
pipeline writes what the model should have said), and unit tests of the loop (like
httpx's MockTransport).

A handler maps (prompt ids, params) to the ids the "model" would like to emit. The
engine then behaves like vLLM does with those params: banned ids can never come out
(they are dropped, and counted in ``blocked``), generation stops after the first stop
id (kept as the last id), and ``max_tokens`` is honoured. It never replaces the
integration tests against real vLLM.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from agent.engine import Engine, GenerationChunk, SamplingParams

__all__ = ["ScriptedEngine", "Handler"]

Handler = Callable[[list[int], SamplingParams], Sequence[int] | Awaitable[Sequence[int]]]


class ScriptedEngine(Engine):
    def __init__(
        self,
        handler: Handler,
        tokenizer: Any,
        *,
        max_model_len: int = 2048,
        delay_s: float = 0.0,
        token_logprob: float = 0.0,
    ) -> None:
        """``token_logprob``: what every emitted id reports when logprobs are asked
        for (a script has no distribution; set it to test a logprob score)."""
        self.handler = handler
        self.token_logprob = token_logprob
        self._tok = tokenizer
        self.max_model_len = max_model_len
        self.model = "scripted"
        self.delay_s = delay_s
        self.requests: list[tuple[list[int], SamplingParams]] = []
        self.blocked = 0

    @property
    def tokenizer(self) -> Any:
        return self._tok

    async def _stream(
        self, prompt_token_ids: list[int], params: SamplingParams, request_id: str | None
    ) -> AsyncIterator[GenerationChunk]:
        self.requests.append((list(prompt_token_ids), params))
        wanted = self.handler(list(prompt_token_ids), params)
        if inspect.isawaitable(wanted):
            wanted = await wanted
        finish, stop_id, n = "length", None, 0
        emitted: list[int] = []
        for t in wanted:
            if n >= params.max_tokens:
                break
            if t in params.banned_token_ids:
                self.blocked += 1
                continue
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            n += 1
            yield GenerationChunk(
                token_ids=[t],
                text=self._tok.decode([t]),
                logprobs=None if params.logprobs is None else [self.token_logprob],
            )
            emitted.append(t)
            if t in params.stop_token_ids:
                finish, stop_id = "stop", t
                break
            if params.stop and any(s in self._tok.decode(emitted) for s in params.stop):
                finish = "stop"
                break
        else:
            if n < params.max_tokens:
                finish = "stop"  # the script ran out: treat as end of sequence
        yield GenerationChunk(
            finished=True,
            finish_reason=finish,
            stop_token_id=stop_id,
            prompt_tokens=len(prompt_token_ids),
            cached_prompt_tokens=0,
        )
