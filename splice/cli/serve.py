"""``splice serve``: Splice as an OpenAI-compatible chat model, search loop inside."""

from __future__ import annotations

from typing import Annotated, Any, Optional

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
    RayOpt,
    ReplicaCpusOpt,
    ReplicaGpusOpt,
    SamplesOpt,
    ScoreOpt,
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
    confidence_score: ScoreOpt = None,
    max_model_len: MaxLenOpt = 4096,
    dtype: DtypeOpt = None,
    kv_cache_gib: KVOpt = None,
    tensor_parallel_size: TPOpt = 1,
    ray_replicas: Annotated[
        int,
        typer.Option(help="Serve N replicas (one engine each) behind Ray Serve; 0 = no Ray."),
    ] = 0,
    ray: RayOpt = None,
    replica_cpus: ReplicaCpusOpt = 1,
    replica_gpus: ReplicaGpusOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the agent as an OpenAI-compatible API (/v1/chat/completions).

    Any OpenAI client can call it. Search steps stream as reasoning_content, and
    citations come back with the answer. With --ray-replicas N, Ray Serve runs N
    copies of the same app and routes requests among them."""
    import logging
    import signal
    import time

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
            confidence_score=confidence_score,
        )

    server_config = ServerConfig(
        model_name=model_name,
        api_key=api_key or settings.api_key,
        max_concurrency=max_concurrency,
        max_queue=max_queue,
        wait_for_engine=ray_replicas > 0,
    )

    def build_app():
        return create_app(open_agent, server_config)

    if ray_replicas > 0:
        from splice.cluster import ray_module
        from splice.server.on_ray import deploy_on_ray

        ray_module()  # a missing extra is named before anything slow
        if index is None and not (no_tools or passages or web):
            from splice.defaults import ensure_kb_index

            # Built here once, not by every replica at the same time.
            with err.status("checking the built-in knowledge base index…"):
                index, _ = ensure_kb_index()
        with err.status(f"starting {ray_replicas} Ray Serve replicas (about a minute on CPU)…"):
            stop = deploy_on_ray(
                build_app,
                replicas=ray_replicas,
                host=host,
                port=port,
                address=ray or "auto",
                num_cpus=replica_cpus,
                num_gpus=replica_gpus,
                max_ongoing=max_concurrency + max_queue,
                verbose=verbose,
            )
        err.print(
            f"serving http://{host}:{port}/v1 as model {model_name!r} from {ray_replicas} "
            "Ray Serve replicas; Ctrl-C stops them"
        )

        def terminate(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt  # SIGTERM (a service manager's stop) stops cleanly too

        signal.signal(signal.SIGTERM, terminate)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            stop()
        return

    app = build_app()
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
