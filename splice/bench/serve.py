"""``splice bench serve``: the OpenAI-compatible server under concurrent chat
sessions, against the same conversations run in-process, side by side.

One engine and one knowledge-base index serve both runs. The server is `splice
serve`'s app on 127.0.0.1 (uvicorn, the same event loop). The sessions are
multi-turn: each later turn carries the earlier turns, as a chat client sends them.
The prefix cache is reset before each run, so neither run inherits the other's
cache.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from agent import Agent
from agent.protocols import Message
from evals.datasets import load_dataset

from .report import BenchReport

__all__ = ["ServeBench", "run_serve_bench"]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class ServeBench(BenchReport):
    sessions: int
    turns: int
    requests: int
    in_process_s: float
    server_s: float
    overhead_ratio: float
    requests_per_s: float
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    first_token_p50_s: float
    first_token_p95_s: float
    errors: int
    error_samples: list[str] = []

    def title(self) -> str:
        return f"splice serve: {self.sessions} sessions × {self.turns} turns"

    def columns(self) -> list[str]:
        return ["run", "wall s", "req/s", "p50 s", "p95 s", "p99 s", "TTFT p50", "errors"]

    def table_rows(self) -> list[list[str]]:
        return [
            [
                "in-process (Agent.aask)",
                f"{self.in_process_s:.1f}",
                f"{self.requests / self.in_process_s:.2f}",
                "",
                "",
                "",
                "",
                "",
            ],
            [
                "server (openai client, SSE)",
                f"{self.server_s:.1f}",
                f"{self.requests_per_s:.2f}",
                f"{self.latency_p50_s:.2f}",
                f"{self.latency_p95_s:.2f}",
                f"{self.latency_p99_s:.2f}",
                f"{self.first_token_p50_s:.2f}",
                str(self.errors),
            ],
        ]

    def caption(self) -> str:
        return (
            f"server / in-process wall time: {self.overhead_ratio:.2f}× "
            f"({self.requests} requests, one engine)"
        )


def _conversations(sessions: int, turns: int) -> list[list[str]]:
    qs = [it.question for it in load_dataset("kb-answerable").items]
    return [[qs[(s * turns + t) % len(qs)] for t in range(turns)] for s in range(sessions)]


async def _in_process(agent: Agent, convs: list[list[str]]) -> float:
    async def session(turns: list[str]) -> None:
        history: list[Message] = []
        for q in turns:
            history.append(Message(role="user", content=q))
            answer = await agent.aask(history)
            history.append(Message(role="assistant", content=answer.text))

    t0 = time.perf_counter()
    await asyncio.gather(*(session(c) for c in convs))
    return time.perf_counter() - t0


async def _through_server(
    base_url: str, convs: list[list[str]]
) -> tuple[float, list[float], list[float], list[str]]:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=900)
    latencies: list[float] = []
    firsts: list[float] = []
    errors: list[str] = []

    async def session(turns: list[str]) -> None:
        messages: list[dict[str, str]] = []
        for q in turns:
            messages.append({"role": "user", "content": q})
            t0 = time.perf_counter()
            first: float | None = None
            text = ""
            try:
                stream = await client.chat.completions.create(
                    model="splice",
                    messages=messages,
                    stream=True,  # type: ignore[arg-type]
                )
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        if first is None:
                            first = time.perf_counter() - t0
                        text += chunk.choices[0].delta.content
            except openai.OpenAIError as exc:
                errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
                return
            latencies.append(time.perf_counter() - t0)
            if first is not None:
                firsts.append(first)
            messages.append({"role": "assistant", "content": text})

    t0 = time.perf_counter()
    await asyncio.gather(*(session(c) for c in convs))
    wall = time.perf_counter() - t0
    await client.close()
    return wall, latencies, firsts, errors


async def _bench(
    make_agent: Callable[[], Any], sessions: int, turns: int, log: Callable[[str], None]
) -> ServeBench:
    import uvicorn

    from serving.model_server import free_port
    from splice.server import ServerConfig, create_app

    async with make_agent() as agent:
        convs = _conversations(sessions, turns)
        reset = getattr(agent.engine, "reset_prefix_cache", None)

        @asynccontextmanager
        async def same_agent() -> AsyncIterator[Agent]:
            yield agent

        app = create_app(same_agent, ServerConfig(max_concurrency=sessions, max_queue=sessions))
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        try:
            await agent.aask("Warm-up: what is the capital of France?")
            if reset:
                await reset()
            log(f"in-process: {sessions} sessions × {turns} turns…")
            local_s = await _in_process(agent, convs)
            if reset:
                await reset()
            log(f"server: {sessions} sessions × {turns} turns over HTTP…")
            wall, lat, firsts, errors = await _through_server(f"http://127.0.0.1:{port}/v1", convs)
        finally:
            server.should_exit = True
            await serving
    n = sessions * turns
    return ServeBench(
        sessions=sessions,
        turns=turns,
        requests=n,
        in_process_s=round(local_s, 2),
        server_s=round(wall, 2),
        overhead_ratio=round(wall / local_s, 3),
        requests_per_s=round(len(lat) / wall, 3),
        latency_p50_s=round(statistics.median(lat), 3) if lat else float("nan"),
        latency_p95_s=round(_pct(lat, 0.95), 3),
        latency_p99_s=round(_pct(lat, 0.99), 3),
        first_token_p50_s=round(statistics.median(firsts), 3) if firsts else float("nan"),
        first_token_p95_s=round(_pct(firsts, 0.95), 3),
        errors=len(errors),
        error_samples=errors[:5],
    )


def run_serve_bench(
    make_agent: Callable[[], Any],
    *,
    sessions: int = 50,
    turns: int = 3,
    log: Callable[[str], None] = lambda _m: None,
) -> ServeBench:
    """``make_agent()`` is an async context manager yielding the agent to serve."""
    return asyncio.run(_bench(make_agent, sessions, turns, log))
