"""``splice serve``: the agent behind the OpenAI chat-completions API.

The search loop runs inside. Search steps stream as ``reasoning_content`` (never as
``tool_calls``, which clients would try to execute). The evidence comes back with
the answer as ``message.annotations`` (``url_citation``) and as top-level
``citations`` and ``search_results``. An abstention is the answer "I don't know"
with ``abstained: true``.

The engine starts in the background, and requests get a 503 until it is ready.
Errors take the OpenAI shape and never carry a traceback. A client that goes away
mid-stream cancels its trajectory, and with it the engine request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel

from agent import Agent, SamplingParams
from agent.errors import InputError, PromptTooLongError, SpliceError, first_line
from agent.protocols import Message
from agent.trace import Answer, AnswerEvent, TokenEvent, ToolCallEvent, ToolResultEvent

from . import evidence
from .metrics import ServerMetrics
from .schemas import ChatRequest
from .stops import StopCutter

__all__ = ["ServerConfig", "create_app"]

log = logging.getLogger("splice.server")


class ServerConfig(BaseModel):
    model_name: str = "splice"
    api_key: str | None = None
    max_concurrency: int = 16
    max_queue: int = 64
    """Requests that may wait for a slot; past that, a 429 with Retry-After."""
    wait_for_engine: bool = False
    """Start up only once the engine is ready (or failed): a replica behind a router
    then joins when it can answer, rather than answering 503 meanwhile."""


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code


def _error(status: int, message: str, type_: str, code: str | None = None, **headers: str):
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": None, "code": code}},
        status_code=status,
        headers=headers or None,
    )


class _State:
    def __init__(self) -> None:
        self.agent: Agent | None = None
        self.failed: str | None = None
        self.waiting = 0
        self.slots: asyncio.Semaphore | None = None


def create_app(
    open_agent: Callable[[], AbstractAsyncContextManager[Agent]],
    config: ServerConfig | None = None,
) -> FastAPI:
    """An app whose agent comes from ``open_agent`` (entered when the app starts and
    left when it stops)."""
    cfg = config or ServerConfig()
    state = _State()
    metrics = ServerMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        state.slots = asyncio.Semaphore(cfg.max_concurrency)

        settled = asyncio.Event()

        async def hold() -> None:
            try:
                async with open_agent() as agent:
                    state.agent = agent
                    log.info("engine ready")
                    settled.set()
                    await stop.wait()
            except SpliceError as exc:
                state.failed = str(exc)
                log.error("the engine could not start: %s", exc)
            finally:
                settled.set()

        holder = asyncio.create_task(hold())
        if cfg.wait_for_engine:
            await settled.wait()
        try:
            yield
        finally:
            stop.set()
            await holder

    app = FastAPI(title="Splice", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.metrics = metrics
    app.state.splice = state

    @app.middleware("http")
    async def request_id(request: Request, call_next: Any) -> Response:
        rid = request.headers.get("x-request-id") or f"req-{uuid.uuid4().hex[:12]}"
        request.state.rid = rid
        t0 = time.perf_counter()
        response = await call_next(request)
        response.headers["x-request-id"] = rid
        log.info(
            "%s %s %s %d %.0fms",
            rid,
            request.method,
            request.url.path,
            response.status_code,
            1000 * (time.perf_counter() - t0),
        )
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        msg = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        metrics.requests.labels("400").inc()
        return _error(400, f"{where}: {msg}" if where else msg, "invalid_request_error")

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        metrics.requests.labels(str(exc.status)).inc()
        headers = {"Retry-After": "1"} if exc.status in (429, 503) else {}
        return _error(exc.status, exc.message, exc.type, exc.code, **headers)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        rid = getattr(request.state, "rid", "?")
        log.exception("%s failed", rid)
        metrics.requests.labels("500").inc()
        return _error(500, f"internal error (request {rid})", "server_error")

    def check_key(request: Request) -> None:
        if cfg.api_key is None:
            return
        if request.headers.get("authorization", "") != f"Bearer {cfg.api_key}":
            raise APIError(
                401, "a valid API key is required", "authentication_error", "invalid_api_key"
            )

    def ready_agent() -> Agent:
        if state.failed:
            raise APIError(
                503, f"the engine failed to start: {state.failed}", "service_unavailable"
            )
        if state.agent is None:
            raise APIError(
                503,
                "the engine is starting; retry shortly",
                "service_unavailable",
                "engine_starting",
            )
        return state.agent

    @app.get("/health")
    async def health() -> Response:
        ready_agent()  # a 503 that says why, until the engine is up
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        check_key(request)
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": cfg.model_name, "object": "model", "created": 0, "owned_by": "splice"}
                ],
            }
        )

    @app.post("/v1/chat/completions")
    async def chat(request: Request, body: ChatRequest) -> Response:
        check_key(request)
        agent = ready_agent()
        try:
            history, system = _history(body)
        except ValueError as exc:
            raise APIError(400, str(exc), "invalid_request_error") from None
        kwargs = _call_kwargs(agent, body, system)
        if state.waiting >= cfg.max_concurrency + cfg.max_queue:
            raise APIError(
                429,
                f"more than {cfg.max_concurrency + cfg.max_queue} requests are in flight or "
                "waiting; retry shortly",
                "rate_limit_error",
                "too_many_requests",
            )
        rid = request.state.rid
        created = int(time.time())
        if body.stream:
            return StreamingResponse(
                _stream(agent, history, kwargs, body, rid, created),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        async with _slot():
            t0 = time.perf_counter()
            try:
                answer = await agent.aask(history, **kwargs)
            except PromptTooLongError as exc:
                raise APIError(
                    400, str(exc), "invalid_request_error", "context_length_exceeded"
                ) from None
            except InputError as exc:
                raise APIError(400, str(exc), "invalid_request_error") from None
            except SpliceError as exc:
                raise APIError(500, first_line(exc), "server_error") from None
            metrics.latency.observe(time.perf_counter() - t0)
        usage = _count(answer)
        text, finish = StopCutter(body.stops).whole(answer.text)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text,
            "annotations": evidence.annotations(answer),
        }
        reasoning = "".join(
            evidence.reasoning_line(s)
            for s in answer.trace
            if s.type in ("tool_call", "tool_result")
        )
        if reasoning:
            message["reasoning_content"] = reasoning
        return JSONResponse(
            {
                "id": f"chatcmpl-{rid}",
                "object": "chat.completion",
                "created": created,
                "model": cfg.model_name,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": finish or _finish(answer)}
                ],
                "usage": usage,
                **_extras(answer),
            }
        )

    @asynccontextmanager
    async def _slot() -> AsyncIterator[None]:
        assert state.slots is not None
        state.waiting += 1
        try:
            async with state.slots:
                metrics.in_flight.inc()
                try:
                    yield
                finally:
                    metrics.in_flight.dec()
        finally:
            state.waiting -= 1

    def _count(answer: Answer) -> dict[str, Any]:
        """Count a finished answer in the metrics; its usage block."""
        metrics.requests.labels("200").inc()
        metrics.searches.inc(sum(1 for s in answer.trace if s.type == "tool_call"))
        if answer.abstained:
            metrics.abstentions.inc()
        usage = _usage(answer)
        metrics.tokens.labels("prompt").inc(usage["prompt_tokens"])
        metrics.tokens.labels("cached").inc(usage["prompt_tokens_details"]["cached_tokens"])
        metrics.tokens.labels("generated").inc(usage["completion_tokens"])
        return usage

    async def _stream(
        agent: Agent,
        history: list[Message],
        kwargs: dict[str, Any],
        body: ChatRequest,
        rid: str,
        created: int,
    ) -> AsyncIterator[bytes]:
        def event(data: dict[str, Any]) -> bytes:
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()

        def envelope(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            return event(
                {
                    "id": f"chatcmpl-{rid}",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": cfg.model_name,
                    "choices": choices,
                    **extra,
                }
            )

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            return envelope([{"index": 0, "delta": delta, "finish_reason": finish}], **extra)

        cutter = StopCutter(body.stops)
        answer: Answer | None = None
        finished = False
        # An answer that may yet be withheld for low confidence is sent once scored:
        # streamed, a client would already have shown the guess it replaces.
        hold, held = agent.confidence.may_withhold, False
        async with _slot():
            t0 = time.perf_counter()
            first = True
            yield chunk({"role": "assistant", "content": ""})
            try:
                async for ev in agent.stream(history, **kwargs):
                    if isinstance(ev, (ToolCallEvent, ToolResultEvent)):
                        yield chunk({"reasoning_content": evidence.reasoning_line(ev.step)})
                    elif isinstance(ev, TokenEvent) and hold and ev.answer:
                        held = True
                    elif isinstance(ev, TokenEvent) and not cutter.done:
                        text = cutter.feed(ev.text)
                        if text:
                            if first:
                                metrics.first_token.observe(time.perf_counter() - t0)
                                first = False
                            yield chunk({"content": text})
                    elif isinstance(ev, AnswerEvent):
                        answer = ev.answer
                finished = True
            except SpliceError as exc:
                metrics.requests.labels("500").inc()
                error = {"message": first_line(exc), "type": "server_error", "code": None}
                yield event({"error": error})
                yield b"data: [DONE]\n\n"
                return
            finally:
                if not finished and answer is None:
                    metrics.aborted.inc()
            metrics.latency.observe(time.perf_counter() - t0)
        assert answer is not None
        usage = _count(answer)
        tail = (cutter.feed(answer.text) if held else "") + cutter.flush()
        if tail:
            yield chunk({"content": tail})
        finish = "stop" if cutter.done else _finish(answer)
        yield chunk({"annotations": evidence.annotations(answer)}, finish, **_extras(answer))
        if body.stream_options and body.stream_options.include_usage:
            yield envelope([], usage=usage)
        yield b"data: [DONE]\n\n"

    return app


def _call_kwargs(agent: Agent, body: ChatRequest, system: str | None) -> dict[str, Any]:
    """The request's settings as :meth:`Agent.stream` keywords; unset ones keep the agent's."""
    base = agent.sampling
    sampling = SamplingParams(
        temperature=base.temperature if body.temperature is None else body.temperature,
        top_p=base.top_p if body.top_p is None else body.top_p,
        seed=body.seed,
    )
    limit = body.max_completion_tokens or body.max_tokens
    budgets = (
        agent.budgets.model_copy(update={"max_segment_tokens": max(8, limit)})
        if limit
        else agent.budgets
    )
    return {
        "sampling": sampling,
        "budgets": budgets,
        "system_prompt": system,
        "use_tools": False if body.tools_off else None,
    }


def _history(body: ChatRequest) -> tuple[list[Message], str | None]:
    """The conversation and the request's own system prompt (None: the server's)."""
    system: list[str] = []
    history: list[Message] = []
    for m in body.messages:
        text = m.text()
        if m.role in ("system", "developer"):
            system.append(text)
        elif m.role == "tool":
            raise ValueError(
                "messages: tool messages are not supported (Splice runs its own tools)"
            )
        else:
            history.append(Message(role=m.role, content=text))
    if not history[-1].content.strip():
        raise ValueError("messages: the last user message is empty")
    return history, ("\n\n".join(system) if system else None)


def _finish(answer: Answer) -> str:
    last = next((s for s in reversed(answer.trace) if s.type == "generation"), None)
    return "length" if last is not None and last.finish_reason == "length" else "stop"


def _usage(answer: Answer) -> dict[str, Any]:
    gens = [s for s in answer.trace if s.type == "generation"]
    prompt = gens[0].prompt_tokens if gens else 0
    cached = sum(s.cached_prompt_tokens or 0 for s in gens)
    completion = sum(s.generated_tokens for s in gens)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _extras(answer: Answer) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "abstained": answer.abstained,
        "citations": evidence.citations(answer),
        "search_results": evidence.search_results(answer),
    }
    if answer.confidence is not None:
        extra["confidence"] = answer.confidence
    return extra
