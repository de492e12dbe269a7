"""``splice chat``: the REPL (see :mod:`splice.cli.repl`)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from .ask import agent_session
from .common import (
    DtypeOpt,
    HybridOpt,
    IndexOpt,
    KVOpt,
    MaxLenOpt,
    ModelOpt,
    NoCacheOpt,
    PassagesOpt,
    ProtocolOpt,
    SegmentOpt,
    TempOpt,
    TPOpt,
    UrlOpt,
    VerboseOpt,
    WebOpt,
    out,
    quiet,
    vllm_config,
)

__all__ = ["chat"]


def chat(
    no_tools: Annotated[bool, typer.Option("--no-tools", help="Start closed-book.")] = False,
    index: IndexOpt = None,
    passages: PassagesOpt = None,
    web: WebOpt = False,
    hybrid: HybridOpt = False,
    no_cache: NoCacheOpt = False,
    protocol: ProtocolOpt = "splice",
    url: UrlOpt = None,
    model: ModelOpt = None,
    max_tokens: SegmentOpt = 256,
    temperature: TempOpt = 0.0,
    max_model_len: MaxLenOpt = 4096,
    dtype: DtypeOpt = None,
    kv_cache_gib: KVOpt = None,
    tensor_parallel_size: TPOpt = 1,
    verbose: VerboseOpt = False,
) -> None:
    """Chat in a REPL: streaming answers, live tool calls, /tools /trace /reset /exit."""
    from agent.settings import splice_home

    from .repl import run_repl

    quiet(verbose)
    config = vllm_config(model, max_model_len, dtype, kv_cache_gib, tensor_parallel_size)

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
        ) as agent:
            await run_repl(agent, out, history_file=splice_home() / "chat_history")

    asyncio.run(run())
