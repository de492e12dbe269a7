"""The real in-process vLLM engine (AsyncLLM on CPU) behind the engine port."""

from __future__ import annotations

import asyncio

import pytest
from conftest import MAX_MODEL_LEN, chat_ids

from agent.engine import SamplingParams
from agent.errors import PromptTooLongError

pytestmark = pytest.mark.vllm

QUESTION = "What is the largest planet in the solar system? Answer in two sentences."


async def test_greedy_is_deterministic_and_streams(vllm_engine) -> None:
    ids = chat_ids(vllm_engine.tokenizer, QUESTION)
    params = SamplingParams(max_tokens=24)
    chunks = [c async for c in vllm_engine.generate(ids, params)]
    again = await vllm_engine.complete(ids, params)
    streamed = [t for c in chunks for t in c.token_ids]
    assert len(chunks) > 1, "expected a token-by-token stream"
    assert chunks[-1].finished and not any(c.finished for c in chunks[:-1])
    assert streamed == again.token_ids and len(streamed) > 0
    assert "".join(c.text for c in chunks) == again.text
    assert again.prompt_tokens == len(ids)
    assert vllm_engine.tokenizer.decode(again.token_ids) == again.text


async def test_stops_on_token_id_and_keeps_it(vllm_engine) -> None:
    ids = chat_ids(vllm_engine.tokenizer, QUESTION)
    free = await vllm_engine.complete(ids, SamplingParams(max_tokens=24))
    stop = free.token_ids[5]
    first = free.token_ids.index(stop)
    stopped = await vllm_engine.complete(ids, SamplingParams(max_tokens=24, stop_token_ids=(stop,)))
    assert stopped.finish_reason == "stop"
    assert stopped.stop_token_id == stop
    assert stopped.token_ids == free.token_ids[: first + 1]


async def test_banned_token_is_never_sampled(vllm_engine) -> None:
    ids = chat_ids(vllm_engine.tokenizer, QUESTION)
    free = await vllm_engine.complete(ids, SamplingParams(max_tokens=16))
    banned = tuple(set(free.token_ids[:3]))
    out = await vllm_engine.complete(ids, SamplingParams(max_tokens=16, banned_token_ids=banned))
    assert out.token_ids and not set(out.token_ids) & set(banned)


async def test_extended_prompt_hits_the_prefix_cache(vllm_engine) -> None:
    tok = vllm_engine.tokenizer
    ids = chat_ids(tok, "Tell me about the history of the printing press in Europe. " * 3)
    first = await vllm_engine.complete(ids, SamplingParams(max_tokens=8))
    extended = ids + first.token_ids + tok.encode(" And in Asia?", add_special_tokens=False)
    second = await vllm_engine.complete(extended, SamplingParams(max_tokens=4))
    assert len(ids) >= 64
    assert second.cached_prompt_tokens is not None
    # Whole 32-token blocks of the shared prefix come from the cache.
    assert second.cached_prompt_tokens >= 32 * (len(ids) // 32) - 32
    assert second.cached_prompt_tokens < len(extended)


async def test_logprobs_of_sampled_tokens(vllm_engine) -> None:
    ids = chat_ids(vllm_engine.tokenizer, QUESTION)
    out = await vllm_engine.complete(ids, SamplingParams(max_tokens=8, logprobs=0))
    assert out.logprobs is not None and len(out.logprobs) == len(out.token_ids)
    assert all(lp <= 0.0 for lp in out.logprobs)


async def test_seeded_sampling_repeats(vllm_engine) -> None:
    ids = chat_ids(vllm_engine.tokenizer, "Write a short poem about rain.")
    p = SamplingParams(max_tokens=16, temperature=1.0, top_p=0.95, top_k=50, seed=7)
    a, b = await asyncio.gather(vllm_engine.complete(ids, p), vllm_engine.complete(ids, p))
    assert a.token_ids == b.token_ids


async def test_walking_away_frees_the_request(vllm_engine) -> None:
    ids = chat_ids(vllm_engine.tokenizer, QUESTION)
    stream = vllm_engine.generate(ids, SamplingParams(max_tokens=200))
    async for _ in stream:
        break
    await stream.aclose()
    out = await vllm_engine.complete(ids, SamplingParams(max_tokens=4))
    assert len(out.token_ids) == 4


async def test_parallel_requests_match_sequential(vllm_engine) -> None:
    tok = vllm_engine.tokenizer
    prompts = [chat_ids(tok, q) for q in ("What is 2+2?", "Name a colour.", QUESTION)]
    params = SamplingParams(max_tokens=12)
    parallel = await asyncio.gather(*(vllm_engine.complete(p, params) for p in prompts))
    sequential = [await vllm_engine.complete(p, params) for p in prompts]
    assert [o.token_ids for o in parallel] == [o.token_ids for o in sequential]


async def test_prompt_longer_than_context_says_by_how_much(vllm_engine) -> None:
    ids = [100] * (MAX_MODEL_LEN + 10)
    with pytest.raises(PromptTooLongError, match="11 over") as info:
        await vllm_engine.complete(ids, SamplingParams(max_tokens=4))
    assert info.value.excess == 11


async def test_max_tokens_is_clamped_to_the_window(vllm_engine) -> None:
    ids = chat_ids(vllm_engine.tokenizer, QUESTION)
    ids = [ids[0]] * (MAX_MODEL_LEN - 3 - len(ids)) + ids
    out = await vllm_engine.complete(ids, SamplingParams(max_tokens=100))
    assert len(out.token_ids) <= 3
