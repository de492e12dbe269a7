"""``splice bench engines``: in-process vLLM against ``vllm serve`` over HTTP.

Both engines serve the same model with the same options and get the same greedy
prompts, one after the other (never at once: they would share the CPU). The figures
are start-up time and generation throughput with N prompts in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pydantic import BaseModel

from agent.engine import Engine, SamplingParams
from serving.http_engine import HTTPEngine
from serving.model_server import ModelServer
from serving.vllm_engine import VLLMConfig, VLLMEngine

from .report import BenchReport

__all__ = ["EngineRun", "EngineBench", "run_engine_bench", "BENCH_QUESTIONS"]

BENCH_QUESTIONS = [
    "What is the capital of France?",
    "Explain photosynthesis in one sentence.",
    "Who wrote Pride and Prejudice?",
    "What is the boiling point of water at sea level?",
    "Name three primary colours.",
    "How many legs does a spider have?",
    "What does a compiler do?",
    "Why is the sky blue?",
    "What is the tallest mountain on Earth?",
    "Describe a cat in a few words.",
    "What is 12 times 12?",
    "Which planet is known as the red planet?",
    "What language is spoken in Brazil?",
    "What is the chemical symbol for gold?",
    "Give one tip for sleeping well.",
    "What is the speed of light?",
]


class EngineRun(BaseModel):
    engine: str
    start_s: float
    prompts: int
    generated_tokens: int
    wall_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.wall_s if self.wall_s else 0.0


class EngineBench(BenchReport):
    in_process: EngineRun
    http: EngineRun
    same_tokens: bool

    def title(self) -> str:
        return f"{self.in_process.prompts} parallel prompts"

    def columns(self) -> list[str]:
        return ["engine", "start (s)", "tokens", "wall (s)", "tokens/s"]

    def table_rows(self) -> list[list[str]]:
        return [
            [
                r.engine,
                f"{r.start_s:.1f}",
                str(r.generated_tokens),
                f"{r.wall_s:.2f}",
                f"{r.tokens_per_s:.1f}",
            ]
            for r in (self.in_process, self.http)
        ]

    def caption(self) -> str:
        ratio = self.http.tokens_per_s / self.in_process.tokens_per_s
        same = "yes" if self.same_tokens else "NO"
        return f"HTTP / in-process throughput: {ratio:.2f}×; identical greedy tokens: {same}"


def _prompts(engine: Engine, n: int) -> list[list[int]]:
    tok = engine.tokenizer
    qs = [BENCH_QUESTIONS[i % len(BENCH_QUESTIONS)] for i in range(n)]
    return [
        tok.encode(
            tok.apply_chat_template(
                [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False
            ),
            add_special_tokens=False,
        )
        for q in qs
    ]


async def _measure(engine: Engine, n: int, max_tokens: int) -> tuple[int, float, list[list[int]]]:
    prompts = _prompts(engine, n)
    params = SamplingParams(max_tokens=max_tokens)
    await engine.complete(prompts[0], params.model_copy(update={"max_tokens": 4}))  # warm-up
    t0 = time.perf_counter()
    outs = await asyncio.gather(*(engine.complete(p, params) for p in prompts))
    wall = time.perf_counter() - t0
    return sum(len(o.token_ids) for o in outs), wall, [o.token_ids for o in outs]


def run_engine_bench(
    *,
    prompts: int = 16,
    max_tokens: int = 64,
    model: str | None = None,
    log: Callable[[str], None] = print,
) -> EngineBench:
    config = VLLMConfig(model=model)

    log("starting in-process vLLM…")
    t0 = time.perf_counter()
    engine = VLLMEngine.start(config)
    start_local = time.perf_counter() - t0
    try:
        n_local, wall_local, tokens_local = asyncio.run(_measure(engine, prompts, max_tokens))
    finally:
        engine.shutdown()
    local = EngineRun(
        engine="in-process",
        start_s=start_local,
        prompts=prompts,
        generated_tokens=n_local,
        wall_s=wall_local,
    )

    log("starting vllm serve…")
    t0 = time.perf_counter()
    with ModelServer(config) as server:
        start_http = time.perf_counter() - t0

        async def over_http() -> tuple[int, float, list[list[int]]]:
            async with await HTTPEngine.connect(server.url) as http_engine:
                return await _measure(http_engine, prompts, max_tokens)

        n_http, wall_http, tokens_http = asyncio.run(over_http())
    http = EngineRun(
        engine="http (vllm serve)",
        start_s=start_http,
        prompts=prompts,
        generated_tokens=n_http,
        wall_s=wall_http,
    )
    return EngineBench(in_process=local, http=http, same_tokens=tokens_local == tokens_http)
