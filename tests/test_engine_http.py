"""The HTTP engine against a real `vllm serve` started by a fixture."""

from __future__ import annotations

import pytest
from conftest import MAX_MODEL_LEN, chat_ids

from agent.engine import SamplingParams
from agent.errors import PromptTooLongError
from serving.prepare import verify

pytestmark = pytest.mark.vllm

QUESTION = "Who wrote the play Hamlet? Explain briefly."


async def test_same_greedy_tokens_as_in_process(vllm_engine, http_engine) -> None:
    ids = chat_ids(vllm_engine.tokenizer, QUESTION)
    params = SamplingParams(max_tokens=32, logprobs=0)
    local = await vllm_engine.complete(ids, params)
    remote = await http_engine.complete(ids, params)
    assert remote.token_ids == local.token_ids
    assert remote.text == local.text
    assert remote.finish_reason == local.finish_reason
    assert remote.logprobs == pytest.approx(local.logprobs, abs=1e-3)


async def test_server_reports_model_and_window(http_engine, model_dir) -> None:
    assert http_engine.model == str(model_dir)
    assert http_engine.max_model_len == MAX_MODEL_LEN
    ids = verify(model_dir).special_tokens
    assert http_engine.tokenizer.convert_tokens_to_ids("</search>") == ids["</search>"]


async def test_streams_and_stops_on_token_id(vllm_engine, http_engine) -> None:
    ids = chat_ids(http_engine.tokenizer, QUESTION)
    free = await vllm_engine.complete(ids, SamplingParams(max_tokens=24))
    stop = free.token_ids[4]
    params = SamplingParams(max_tokens=24, stop_token_ids=(stop,))
    chunks = [c async for c in http_engine.generate(ids, params)]
    assert len(chunks) > 2 and chunks[-1].finished
    tokens = [t for c in chunks for t in c.token_ids]
    assert tokens == free.token_ids[: free.token_ids.index(stop) + 1]
    assert chunks[-1].finish_reason == "stop" and chunks[-1].stop_token_id == stop


async def test_prefix_cache_hits_are_reported(http_engine) -> None:
    tok = http_engine.tokenizer
    ids = chat_ids(tok, "Summarise the causes of the French Revolution in detail. " * 2)
    first = await http_engine.complete(ids, SamplingParams(max_tokens=8))
    extended = ids + first.token_ids + tok.encode(" Go on.", add_special_tokens=False)
    second = await http_engine.complete(extended, SamplingParams(max_tokens=4))
    assert second.cached_prompt_tokens is not None and second.cached_prompt_tokens >= 32


async def test_banned_ids_over_http(vllm_engine, http_engine) -> None:
    ids = chat_ids(http_engine.tokenizer, QUESTION)
    free = await vllm_engine.complete(ids, SamplingParams(max_tokens=12))
    banned = (free.token_ids[0],)
    params = SamplingParams(max_tokens=12, banned_token_ids=banned)
    local = await vllm_engine.complete(ids, params)
    remote = await http_engine.complete(ids, params)
    assert banned[0] not in remote.token_ids
    assert remote.token_ids == local.token_ids


async def test_too_long_prompt_over_http(http_engine) -> None:
    with pytest.raises(PromptTooLongError, match="5 over"):
        await http_engine.complete([100] * (MAX_MODEL_LEN + 4), SamplingParams(max_tokens=4))
