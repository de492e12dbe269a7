"""``splice serve``: Splice as an OpenAI-compatible chat model, search loop inside."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .ask import agent_session
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
    SegmentOpt,
    TempOpt,
    TPOpt,
    UrlOpt,
    VerboseOpt,
    WebOpt,
    err,
    quiet,
    vllm_config,
)

__all__ = ["serve"]


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    api_key: Annotated[
        Optional[str],
        typer.Option(help="Require `Authorization: Bearer KEY` (env SPLICE_API_KEY)."),
    ] = None,
    model_name: Annotated[
        str, typer.Option("--served-model-name", help="The model id clients ask for.")
    ] = "splice",
    max_concurrency: Annotated[
        int, typer.Option(help="Requests answered at once; more wait in a queue.")
    ] = 16,
    max_queue: Annotated[
        int, typer.Option(help="Requests that may wait; past that, 429 with Retry-After.")
    ] = 64,
    no_tools: Annotated[bool, typer.Option("--no-tools", help="Closed-book: no search.")] = False,
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
    confidence_samples: SamplesOpt = 0,
    abstain_below: AbstainOpt = None,
    max_model_len: MaxLenOpt = 4096,
    dtype: DtypeOpt = None,
    kv_cache_gib: KVOpt = None,
    tensor_parallel_size: TPOpt = 1,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the agent as an OpenAI-compatible API (/v1/chat/completions).

    Any OpenAI client can call it. Search steps stream as reasoning_content, and
    citations come back with the answer."""
    import logging

    import uvicorn

    from agent.settings import SpliceSettings, load
    from splice.server import ServerConfig, create_app

    quiet(verbose)
    settings = load(SpliceSettings)
    config = vllm_config(model, max_model_len, dtype, kv_cache_gib, tensor_parallel_size)

    def open_agent():
        return agent_session(
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
        )

    app = create_app(
        open_agent,
        ServerConfig(
            model_name=model_name,
            api_key=api_key or settings.api_key,
            max_concurrency=max_concurrency,
            max_queue=max_queue,
        ),
    )
    # One line per request (id, method, path, status, time) on stderr.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    server_log = logging.getLogger("splice.server")
    server_log.addHandler(handler)
    server_log.setLevel(logging.INFO)
    server_log.propagate = False
    err.print(
        f"serving http://{host}:{port}/v1 as model {model_name!r}; the engine is starting "
        "(/health answers 503 until it is ready)"
    )
    uvicorn.run(app, host=host, port=port, log_level="info" if verbose else "warning")
