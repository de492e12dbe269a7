"""In-process vLLM engine (``AsyncLLM``).

Each request is its own async stream, so many agent trajectories share one engine
and vLLM's continuous batching keeps it busy while some wait on tools. Prefix
caching is on: a resumed trajectory only prefills the tokens it appended.

On a CPU-only machine the defaults follow measurements in docs/design.md: float32 (about
4.5× faster than bfloat16 here), eager mode (skips minutes of inductor compilation),
a 32-token KV block (the prefix cache reuses whole blocks only, and tool-loop
prompts are short), a 2 GiB KV cache, and no core reserved for the engine core's
polling loop.
"""

from __future__ import annotations

import atexit
import contextlib
import uuid
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent.engine import Engine, GenerationChunk, SamplingParams
from agent.errors import ConfigError, DependencyMissingError, EngineError, translate_error
from agent.homeloop import HomeLoop
from agent.settings import splice_home

from .children import engine_children
from .environment import configure_cpu, verbose_logs
from .prepare import resolve_model

__all__ = ["VLLMConfig", "VLLMEngine", "require_vllm", "on_cpu"]

VLLM_INSTALL = "pip install 'splice[cpu]'  (or 'splice[gpu]' with a GPU)"


def require_vllm() -> Any:
    """Import vLLM or raise a one-line error naming the extra to install."""
    try:
        import vllm
    except ImportError as exc:
        raise DependencyMissingError("vLLM", VLLM_INSTALL) from exc
    return vllm


def on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


class VLLMConfig(BaseModel):
    """Engine options. ``None`` means "pick the right value for this machine"."""

    model: str | None = Field(None, description="HF name or path; None = the prepared default.")
    max_model_len: int = 4096
    dtype: str | None = Field(None, description="None: float32 on CPU, auto on GPU.")
    kv_cache_gib: float | None = Field(None, description="CPU KV-cache size (GiB); default 2.")
    block_size: int | None = Field(None, description="KV block size; None: 32 on CPU.")
    enforce_eager: bool | None = Field(None, description="None: eager on CPU.")
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    seed: int = 0
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Any other vllm AsyncEngineArgs field."
    )

    def engine_args(self, model: str, cpu: bool) -> dict[str, Any]:
        args: dict[str, Any] = {
            "model": model,
            "max_model_len": self.max_model_len,
            "dtype": self.dtype or ("float32" if cpu else "auto"),
            "enable_prefix_caching": True,
            "enforce_eager": cpu if self.enforce_eager is None else self.enforce_eager,
            "tensor_parallel_size": self.tensor_parallel_size,
            "seed": self.seed,
        }
        block = self.block_size or (32 if cpu else None)
        if block:
            args["block_size"] = block
        if self.gpu_memory_utilization is not None:
            args["gpu_memory_utilization"] = self.gpu_memory_utilization
        args.update(self.extra)
        return args

    def cli_args(self, model: str, cpu: bool) -> list[str]:
        """The same options as ``vllm serve`` flags, so both engines match."""
        flags: list[str] = []
        for key, value in self.engine_args(model, cpu).items():
            if key == "model":
                continue
            flag = "--" + key.replace("_", "-")
            if value is True:
                flags.append(flag)
            elif value is False:
                if key == "enable_prefix_caching":
                    flags.append("--no-enable-prefix-caching")
            else:
                flags += [flag, str(value)]
        return flags

    def apply_env(self, cpu: bool) -> None:
        if cpu:
            configure_cpu(self.kv_cache_gib)


def _close_at_exit(ref: weakref.ref[VLLMEngine]) -> None:
    engine = ref()
    if engine is not None and engine._llm is not None:
        with contextlib.suppress(Exception):
            engine.close()


def engine_log_path() -> Path:
    """Where the engine's processes write when the terminal is kept quiet."""
    path = splice_home() / "logs" / "engine.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > 20_000_000:
        path.unlink()  # keep one recent log, not an ever-growing one
    return path


def _log_hint(log: Path, start: int) -> str:
    """The engine's last error line from this start, and where the rest is."""
    with log.open("rb") as fh:
        fh.seek(start)
        lines = fh.read().decode(errors="replace").splitlines()
    cause = next((ln.strip() for ln in reversed(lines) if "Error" in ln), "")
    return f"{cause[:200]} (engine log: {log})" if cause else f"engine log: {log}"


def _check_local(model: str) -> None:
    """A path-like model that does not exist is a user error, not a hub lookup."""
    if model.startswith((".", "/", "~")) and not Path(model).expanduser().exists():
        raise ConfigError(f"model path {model} does not exist: pass a directory or HF name")


class VLLMEngine(Engine):
    """vLLM's ``AsyncLLM`` in this process; start it with :meth:`start`."""

    def __init__(self, llm: Any, model: str, max_model_len: int) -> None:
        self._llm = llm
        self.model = model
        self.max_model_len = max_model_len
        self._tokenizer: Any = None

    @classmethod
    def start(cls, config: VLLMConfig | None = None, **overrides: Any) -> VLLMEngine:
        """Load the model and start the engine core (about a minute on CPU)."""
        config = (config or VLLMConfig()).model_copy(update=overrides)
        model = resolve_model(config.model)
        _check_local(model)
        # Quiet unless -v: the engine's own processes write to a log file instead of
        # the terminal (a failure still names it).
        log = None if verbose_logs() else engine_log_path()
        require_vllm()
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        cpu = on_cpu()
        config.apply_env(cpu)
        args = AsyncEngineArgs(**config.engine_args(model, cpu))

        async def construct() -> Any:
            # On the engine's own loop: AsyncLLM made inside a running loop binds its
            # output handler to that loop (the CLI's, which then hung every request).
            with engine_children(log):
                return AsyncLLM.from_engine_args(args)

        log_start = log.stat().st_size if log and log.exists() else 0
        home = HomeLoop("splice-engine-vllm")
        try:
            llm = home.call(construct())
        except (OSError, ValueError, RuntimeError) as exc:
            home.close()
            hint = _log_hint(log, log_start) if log else ""
            raise translate_error(
                exc, f"vLLM could not start {model}", kind=EngineError, fix=hint
            ) from exc
        except BaseException:
            home.close()
            raise
        engine = cls(llm, model, llm.model_config.max_model_len)
        engine._home = home
        # A script that never calls close() still stops its engine core cleanly,
        # instead of AsyncLLM.__del__ printing a traceback at exit.
        atexit.register(_close_at_exit, weakref.ref(engine))
        return engine

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = self._llm.get_tokenizer()
        return self._tokenizer

    async def _stream(
        self, prompt_token_ids: list[int], params: SamplingParams, request_id: str | None
    ) -> AsyncIterator[GenerationChunk]:
        from vllm import SamplingParams as VSamplingParams
        from vllm.sampling_params import RequestOutputKind

        sp = VSamplingParams(
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            max_tokens=params.max_tokens,
            seed=params.seed,
            logprobs=params.logprobs,
            stop_token_ids=list(params.stop_token_ids),
            logit_bias={t: -100.0 for t in params.banned_token_ids} or None,
            stop=list(params.stop) or None,
            include_stop_str_in_output=True,
            skip_special_tokens=False,
            spaces_between_special_tokens=False,
            output_kind=RequestOutputKind.DELTA,
        )
        rid = request_id or uuid.uuid4().hex
        finished = False
        try:
            async for out in self._generate(prompt_token_ids, sp, rid):
                c = out.outputs[0]
                lps = None
                if params.logprobs is not None and c.logprobs:
                    lps = [step[t].logprob for t, step in zip(c.token_ids, c.logprobs)]
                finished = out.finished
                yield GenerationChunk(
                    token_ids=list(c.token_ids),
                    text=c.text,
                    logprobs=lps,
                    finished=finished,
                    finish_reason=c.finish_reason if finished else None,
                    stop_token_id=c.stop_reason if isinstance(c.stop_reason, int) else None,
                    prompt_tokens=len(prompt_token_ids),
                    cached_prompt_tokens=out.num_cached_tokens,
                )
        finally:
            if not finished:
                # The consumer walked away (or was cancelled): free the slot.
                await self._llm.abort(rid)

    async def _generate(self, prompt_token_ids: list[int], sp: Any, rid: str) -> AsyncIterator[Any]:
        """vLLM's stream, its failures translated (a dead engine, a bad request)."""
        from vllm.inputs import TokensPrompt

        try:
            async for out in self._llm.generate(
                TokensPrompt(prompt_token_ids=prompt_token_ids), sp, rid
            ):
                yield out
        except Exception as exc:  # EngineDeadError and kin; cancellation is not an Exception
            raise translate_error(
                exc,
                "vLLM failed during generation",
                fix="run the command again",
                kind=EngineError,
            ) from exc

    async def reset_prefix_cache(self) -> None:
        """Forget cached prefixes (benchmarks compare cold runs)."""
        await self.home.run(self._llm.reset_prefix_cache())

    def shutdown(self) -> None:
        """Stop the engine core (the sync spelling of :meth:`aclose`)."""
        self.close()

    async def _aclose(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.shutdown()
            # vLLM keeps other references to the AsyncLLM, so its __del__ runs at
            # interpreter exit, calls shutdown() again against half-torn-down modules
            # and prints a traceback. Once is enough.
            llm.shutdown = lambda *a, **k: None
