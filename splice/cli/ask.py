"""``splice ask``: one question, answered with live search events on stderr."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from .common import (
    AbstainOpt,
    DtypeOpt,
    HybridOpt,
    IndexOpt,
    KVOpt,
    MaxLenOpt,
    ModelOpt,
    NoCacheOpt,
    PassagesOpt,
    ProtocolOpt,
    SamplesOpt,
    ScoreOpt,
    SegmentOpt,
    TempOpt,
    TPOpt,
    UrlOpt,
    VerboseOpt,
    WebOpt,
    check_fits,
    check_score,
    err,
    out,
    quiet,
    source_lines,
    started_engine,
    vllm_config,
)

__all__ = ["ask", "agent_session"]


@asynccontextmanager
async def agent_session(
    *,
    url: str | None,
    config: Any,
    index: Path | None = None,
    passages: Path | None = None,
    web: bool = False,
    hybrid: bool = False,
    no_cache: bool = False,
    no_tools: bool = False,
    protocol: str = "splice",
    temperature: float = 0.0,
    max_tokens: int = 256,
    confidence_samples: int = 0,
    abstain_below: float | None = None,
    confidence_score: str | None = None,
) -> AsyncIterator[Any]:
    """The retriever the options ask for, an engine, an Agent over both; all closed after."""
    from agent import Agent, Budgets, SamplingParams
    from splice.defaults import calibrated, close_retriever, model_calibration, open_retriever

    check_score(confidence_score)
    # A served model's directory (--url) is not ours to read.
    cal = model_calibration(config.model) if url is None else None
    confidence = calibrated(cal, confidence_samples, abstain_below, confidence_score)

    retriever = None
    if not no_tools:
        retriever = open_retriever(
            index,
            passages=passages,
            web=web,
            hybrid=hybrid,
            no_cache=no_cache,
            on_building=lambda: err.status("checking the built-in knowledge base index…"),
        )
    try:
        async with started_engine(url, config) as engine:
            yield Agent(
                engine,
                [retriever] if retriever else [],
                protocol=protocol,
                sampling=SamplingParams(temperature=temperature),
                budgets=Budgets(max_segment_tokens=max_tokens),
                use_tools=not no_tools,
                **confidence,
            )
    finally:
        await close_retriever(retriever)


def ask(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    no_tools: Annotated[bool, typer.Option("--no-tools", help="Closed-book: no search.")] = False,
    index: IndexOpt = None,
    passages: PassagesOpt = None,
    web: WebOpt = False,
    hybrid: HybridOpt = False,
    no_cache: NoCacheOpt = False,
    protocol: ProtocolOpt = "splice",
    search_first: Annotated[
        bool,
        typer.Option("--search-first", help="Prefill <search>: makes an untuned model search."),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"text","abstained","citations","trace"}.')
    ] = False,
    url: UrlOpt = None,
    model: ModelOpt = None,
    max_tokens: SegmentOpt = 256,
    temperature: TempOpt = 0.0,
    confidence_samples: SamplesOpt = 0,
    abstain_below: AbstainOpt = None,
    confidence_score: ScoreOpt = None,
    max_model_len: MaxLenOpt = 4096,
    dtype: DtypeOpt = None,
    kv_cache_gib: KVOpt = None,
    tensor_parallel_size: TPOpt = 1,
    verbose: VerboseOpt = False,
) -> None:
    """Answer a question, searching when the model asks to; print the answer and sources."""
    from agent.errors import ConfigError
    from agent.trace import ToolCallEvent, ToolResultEvent

    quiet(verbose)
    if not question.strip():
        raise ConfigError('the question is empty: splice ask "your question"')
    if search_first and no_tools:
        raise ConfigError("--search-first needs search: drop --no-tools")
    config = vllm_config(model, max_model_len, dtype, kv_cache_gib, tensor_parallel_size)
    if url is None:
        check_fits(question, config)

    async def run() -> None:
        async with agent_session(
            url=url,
            config=config,
            index=index,
            passages=passages,
            web=web,
            hybrid=hybrid,
            no_cache=no_cache,
            no_tools=no_tools,
            protocol=protocol,
            temperature=temperature,
            max_tokens=max_tokens,
            confidence_samples=confidence_samples,
            abstain_below=abstain_below,
            confidence_score=confidence_score,
        ) as agent:
            prefill = agent.protocol.prompt_prefill_ids("search") if search_first else []
            answer = None
            async for ev in agent.stream(question, prefill=prefill):
                if isinstance(ev, ToolCallEvent) and not as_json:
                    err.print(f"[cyan]search[/cyan] {escape(json.dumps(ev.arguments))}")
                elif isinstance(ev, ToolResultEvent) and not as_json and not ev.step.ok:
                    # A failed search must not look like an empty one: say why, once.
                    err.print(f"[red]search failed[/red] {escape(ev.step.first_line[:300])}")
                elif isinstance(ev, ToolResultEvent) and not as_json:
                    ids = ", ".join(c.id for c in ev.step.sources) or "no sources"
                    err.print(f"[cyan]results[/cyan] {escape(ids)} ({ev.step.seconds:.2f}s)")
                answer = getattr(ev, "answer", answer)
            assert answer is not None
            if as_json:
                # Plain print: rich would wrap long strings and break the JSON.
                payload = {
                    "text": answer.text,
                    "abstained": answer.abstained,
                    "confidence": answer.confidence,
                    "citations": [c.model_dump() for c in answer.citations],
                    "trace": [s.model_dump() for s in answer.trace],
                }
                print(json.dumps(payload, ensure_ascii=False, indent=2))
            else:
                out.print(answer.text, markup=False, highlight=False)
                if answer.confidence is not None:
                    withheld = answer.withheld
                    note = f" (withheld: {escape(withheld)})" if withheld else ""
                    err.print(f"[dim]confidence {answer.confidence:.2f}{note}[/dim]")
                for line in source_lines(answer.citations):
                    out.print(line, highlight=False)

    asyncio.run(run())
