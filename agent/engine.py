"""The engine port: what ``agent/`` sees of a language model.

Token ids, sampling params and stop ids go in; an async stream of
:class:`GenerationChunk` (token ids and text deltas) comes out. Two real adapters
implement it (:mod:`serving.vllm_engine`, in-process, and :mod:`serving.http_engine`,
over ``vllm serve``); tests of the agent loop may use a scripted fake.

Conventions every adapter keeps, so the loop never special-cases one:
- a stop on a ``stop_token_ids`` entry includes that token as the last id of the
  stream, and reports it as ``stop_token_id``; the loop needs the closing tag in
  its history;
- ``banned_token_ids`` can never be sampled (logit bias -100);
- the final chunk has ``finished=True`` with ``finish_reason``
  (``stop``, ``length`` or ``abort``), prompt token count and, when the backend
  reports it, how many prompt tokens the prefix cache served.

Every engine runs on its own event loop (:mod:`agent.homeloop`), so one engine
serves sync calls and any number of event loops alike.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import PromptTooLongError
from .homeloop import HomeLoop

__all__ = ["SamplingParams", "GenerationChunk", "Generation", "Engine"]

FinishReason = Literal["stop", "length", "abort"]


class SamplingParams(BaseModel):
    """Sampling settings shared by every engine; greedy by default."""

    model_config = ConfigDict(frozen=True)

    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0 disables top-k.")
    max_tokens: int = Field(256, ge=1)
    seed: int | None = None
    logprobs: int | None = Field(
        None, ge=0, description="Top-n logprobs per token; 0 returns the sampled token's only."
    )
    stop_token_ids: tuple[int, ...] = ()
    banned_token_ids: tuple[int, ...] = ()
    stop: tuple[str, ...] = Field(
        (), description="Stop strings, kept in the output (for plain-text tag protocols)."
    )


class GenerationChunk(BaseModel):
    """One streamed delta. The last chunk of a request has ``finished=True``."""

    token_ids: list[int] = Field(default_factory=list)
    text: str = ""
    logprobs: list[float] | None = None
    """The sampled tokens' logprobs, one per id, when requested."""
    finished: bool = False
    finish_reason: FinishReason | None = None
    stop_token_id: int | None = None
    prompt_tokens: int = 0
    cached_prompt_tokens: int | None = None


class Generation(BaseModel):
    """A whole request's output, as :meth:`Engine.complete` gathers it."""

    token_ids: list[int]
    text: str
    logprobs: list[float] | None = None
    finish_reason: FinishReason | None = None
    stop_token_id: int | None = None
    prompt_tokens: int = 0
    cached_prompt_tokens: int | None = None


class Engine(abc.ABC):
    """Port to a token-level generator. Adapters implement :meth:`_stream`."""

    max_model_len: int
    model: str
    _home: HomeLoop | None = None

    @property
    def home(self) -> HomeLoop:
        """The loop this engine's requests run on (started on first use)."""
        if self._home is None:
            self._home = HomeLoop(f"splice-engine-{type(self).__name__}")
        return self._home

    @property
    @abc.abstractmethod
    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer the served model uses."""

    @abc.abstractmethod
    def _stream(
        self, prompt_token_ids: list[int], params: SamplingParams, request_id: str | None
    ) -> AsyncIterator[GenerationChunk]: ...

    async def _aclose(self) -> None:  # noqa: B027 - optional hook
        """Release the adapter's resources (runs on the engine's loop)."""

    async def aclose(self) -> None:
        """Release the engine's resources and stop its loop."""
        home, self._home = self._home, None
        if home is None:
            await self._aclose()
            return
        try:
            await home.run(self._aclose())
        finally:
            home.close()

    def close(self) -> None:
        """:meth:`aclose` for code without an event loop."""
        home = self._home
        if home is None:
            asyncio.run(self._aclose())
            return
        self._home = None
        try:
            home.call(self._aclose())
        finally:
            home.close()

    def fit(self, prompt_len: int, params: SamplingParams) -> SamplingParams:
        """Check the prompt fits and clamp ``max_tokens`` to the space left."""
        room = self.max_model_len - prompt_len
        if room < 1:
            raise PromptTooLongError(prompt_len, self.max_model_len)
        if params.max_tokens > room:
            params = params.model_copy(update={"max_tokens": room})
        return params

    def generate(
        self,
        prompt_token_ids: Sequence[int],
        params: SamplingParams | None = None,
        *,
        request_id: str | None = None,
    ) -> AsyncIterator[GenerationChunk]:
        """Stream the continuation of ``prompt_token_ids``, from any event loop."""
        ids = list(prompt_token_ids)
        fitted = self.fit(len(ids), params or SamplingParams())
        return self.home.relay(lambda: self._stream(ids, fitted, request_id))

    async def complete(
        self,
        prompt_token_ids: Sequence[int],
        params: SamplingParams | None = None,
        *,
        request_id: str | None = None,
    ) -> Generation:
        """Run one request to the end and gather its chunks."""
        ids: list[int] = []
        text: list[str] = []
        logprobs: list[float] | None = None
        last = GenerationChunk()
        async for chunk in self.generate(prompt_token_ids, params, request_id=request_id):
            ids.extend(chunk.token_ids)
            text.append(chunk.text)
            if chunk.logprobs is not None:
                logprobs = (logprobs or []) + chunk.logprobs
            last = chunk
        return Generation(
            token_ids=ids,
            text="".join(text),
            logprobs=logprobs,
            finish_reason=last.finish_reason,
            stop_token_id=last.stop_token_id,
            prompt_tokens=last.prompt_tokens,
            cached_prompt_tokens=last.cached_prompt_tokens,
        )

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
