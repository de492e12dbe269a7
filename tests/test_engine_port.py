"""Pure parts of the engine layer: params, request bodies, option mapping, fitting."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import ValidationError

from agent.engine import Engine, GenerationChunk, SamplingParams
from agent.errors import PromptTooLongError
from serving.http_engine import _request_body
from serving.vllm_engine import VLLMConfig


class EchoEngine(Engine):
    """A scripted engine: replays a fixed continuation, recording what it was asked."""

    def __init__(self, reply: list[int], max_model_len: int = 16) -> None:
        self.reply = reply
        self.max_model_len = max_model_len
        self.model = "echo"
        self.seen: list[SamplingParams] = []

    @property
    def tokenizer(self) -> None:
        return None

    async def _stream(self, prompt_token_ids, params, request_id) -> AsyncIterator[GenerationChunk]:
        self.seen.append(params)
        out = self.reply[: params.max_tokens]
        for t in out:
            yield GenerationChunk(token_ids=[t], text=str(t))
        yield GenerationChunk(
            finished=True, finish_reason="length", prompt_tokens=len(prompt_token_ids)
        )


def test_sampling_params_validate() -> None:
    with pytest.raises(ValidationError):
        SamplingParams(temperature=-1)
    with pytest.raises(ValidationError):
        SamplingParams(max_tokens=0)
    p = SamplingParams()
    assert p.temperature == 0.0 and p.top_k == 0


async def test_complete_gathers_and_clamps() -> None:
    engine = EchoEngine(list(range(1, 20)), max_model_len=16)
    out = await engine.complete([0] * 10, SamplingParams(max_tokens=50))
    assert engine.seen[0].max_tokens == 6
    assert out.token_ids == [1, 2, 3, 4, 5, 6] and out.text == "123456"
    assert out.finish_reason == "length" and out.prompt_tokens == 10


async def test_full_window_is_refused() -> None:
    with pytest.raises(PromptTooLongError) as info:
        await EchoEngine([1]).complete([0] * 16)
    assert info.value.excess == 1 and "1 over" in str(info.value)


def test_request_body_keeps_token_ids_and_special_tokens() -> None:
    p = SamplingParams(
        max_tokens=5, stop_token_ids=(7,), banned_token_ids=(9,), seed=3, logprobs=0, top_k=40
    )
    body = _request_body("m", [1, 2], p)
    assert body["prompt"] == [1, 2]
    assert body["return_token_ids"] is True and body["skip_special_tokens"] is False
    assert body["stop_token_ids"] == [7] and body["logit_bias"] == {"9": -100}
    assert body["seed"] == 3 and body["logprobs"] == 0 and body["top_k"] == 40
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "top_k" not in _request_body("m", [1], SamplingParams())


def test_cpu_defaults_follow_measurements() -> None:
    cfg = VLLMConfig(model="x")
    args = cfg.engine_args("x", cpu=True)
    assert args["dtype"] == "float32" and args["enforce_eager"] is True
    assert args["block_size"] == 32 and args["enable_prefix_caching"] is True
    gpu = cfg.engine_args("x", cpu=False)
    assert gpu["dtype"] == "auto" and gpu["enforce_eager"] is False and "block_size" not in gpu
    flags = cfg.cli_args("x", cpu=True)
    assert flags[flags.index("--dtype") + 1] == "float32"
    assert "--enforce-eager" in flags and "--enable-prefix-caching" in flags


def test_extra_engine_args_pass_through() -> None:
    cfg = VLLMConfig(model="x", tensor_parallel_size=2, extra={"max_num_seqs": 8})
    flags = cfg.cli_args("x", cpu=False)
    assert flags[flags.index("--tensor-parallel-size") + 1] == "2"
    assert flags[flags.index("--max-num-seqs") + 1] == "8"
