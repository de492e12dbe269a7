"""``splice serve-model``: vLLM's own OpenAI-compatible server for the model."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .common import DtypeOpt, KVOpt, MaxLenOpt, ModelOpt, TPOpt, err, vllm_config

__all__ = ["serve_model"]


def serve_model(
    model: ModelOpt = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_model_len: MaxLenOpt = 4096,
    dtype: DtypeOpt = None,
    kv_cache_gib: KVOpt = None,
    tensor_parallel_size: TPOpt = 1,
    vllm_args: Annotated[
        Optional[list[str]], typer.Argument(help="Extra `vllm serve` flags, after `--`.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for health.")] = 600.0,
) -> None:
    """Run vLLM's OpenAI-compatible server for the model and wait until it is healthy."""
    from serving.model_server import ModelServer

    config = vllm_config(model, max_model_len, dtype, kv_cache_gib, tensor_parallel_size)
    # Foreground: the server's own logs stream to this terminal.
    server = ModelServer(config, host=host, port=port, extra_args=vllm_args, stream_logs=True)
    err.print(f"starting: {' '.join(server.command())}")
    try:
        server.start(timeout=timeout)
        err.print(f"[green]ready[/green] at {server.url}/v1  (Ctrl-C stops it)")
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
