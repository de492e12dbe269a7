"""`splice serve` as a real server on 127.0.0.1 with the real vLLM engine on CPU,
called by the `openai` client and by plain httpx (SSE): streaming with reasoning and
citations, the same answer as the SDK, auth, 400/429, and disconnect-abort."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from conftest import KEY, SERVER_LOG

from splice.server.stops import StopCutter

pytestmark = pytest.mark.vllm
ROOT = Path(__file__).resolve().parent.parent
QUESTION = "Who wrote the novel Don Quixote?"


@pytest.fixture(scope="module")
def server(splice_server: str) -> str:
    return splice_server


@pytest.fixture()
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0, timeout=300)


def test_models_health_and_auth(server: str, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == ["splice"]
    stranger = openai.OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        stranger.chat.completions.create(
            model="splice", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.body["code"] == "invalid_api_key"
    # Each request is one log line with its id, and the id comes back as a header.
    r = httpx.get(server + "/v1/models", headers={"x-request-id": "req-probe-7"})
    assert r.status_code == 401 and r.headers["x-request-id"] == "req-probe-7"
    assert "req-probe-7 GET /v1/models 401" in SERVER_LOG["serve"].read_text()


def test_a_kb_question_streams_reasoning_answer_and_citations(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="splice",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    reasoning, content, last, usage = "", "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
        content += delta.content or ""
        assert not delta.tool_calls  # search steps are never client tool calls
        if chunk.choices[0].finish_reason:
            last = chunk
    assert "Searching:" in reasoning and "Read " in reasoning
    assert content.strip() and last is not None
    extra = last.model_extra or {}
    results = {r["url"] for r in extra["search_results"]}
    assert results and all(r["snippet"] for r in extra["search_results"])
    assert set(extra["citations"]) <= results
    if not extra["abstained"]:
        assert extra["citations"]
    else:
        assert content.strip().startswith("I don't know") and not extra["citations"]
    assert usage is not None and usage.completion_tokens > 0


async def test_a_plain_call_gives_the_sdk_answer(
    client: openai.OpenAI, vllm_engine, kb_index: Path, model_dir: Path
) -> None:
    from agent import Agent
    from retrieval import IndexRetriever
    from splice.defaults import calibrated, close_retriever, model_calibration

    # The server runs with the model's calibrated threshold, as `splice serve` does.
    retriever = IndexRetriever.open(kb_index)
    try:
        agent = Agent(
            vllm_engine, [retriever], **calibrated(model_calibration(str(model_dir)), 0, None)
        )
        expected = await agent.aask(QUESTION)
    finally:
        await close_retriever(retriever)
    reply = client.chat.completions.create(
        model="splice", messages=[{"role": "user", "content": QUESTION}]
    )
    message = reply.choices[0].message
    assert message.content == expected.text
    extra = reply.model_extra or {}
    assert extra["abstained"] == expected.abstained
    assert extra["citations"] == [c.locator for c in expected.citations] or (
        expected.abstained and extra["citations"] == []
    )
    urls = [a.url_citation.url for a in message.annotations or []]
    assert urls == extra["citations"]


def test_bad_requests_are_400_in_the_openai_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        client.chat.completions.create(
            model="splice", messages=[{"role": "user", "content": "hi"}], n=2
        )
    with pytest.raises(openai.BadRequestError, match="over what the") as info:
        client.chat.completions.create(
            model="splice",
            messages=[{"role": "user", "content": "lighthouse keeper " * 900}],
            tool_choice="none",
        )
    assert info.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError, match="last message must be from the user"):
        client.chat.completions.create(
            model="splice", messages=[{"role": "assistant", "content": "hello"}]
        )


def _sse(lines: Iterator[str]) -> Iterator[dict]:
    for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            yield json.loads(line[6:])


def test_full_server_is_429_and_a_gone_client_frees_its_slot(server: str) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {
        "model": "splice",
        # A search and an answer: seconds of work on CPU, so the slot is still held
        # when the second request arrives.
        "messages": [{"role": "user", "content": QUESTION}],
        "stream": True,
    }
    with httpx.Client(base_url=server, headers=headers, timeout=120) as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as first:
            assert first.status_code == 200
            events = _sse(first.iter_lines())  # kept: dropping it would close the stream
            opening = next(events)
            assert opening["choices"][0]["delta"]["role"] == "assistant"
            busy = http.post("/v1/chat/completions", json={**body, "stream": False})
            assert busy.status_code == 429 and busy.headers["Retry-After"]
            assert busy.json()["error"]["type"] == "rate_limit_error"
            events.close()
        # The stream was closed mid-answer: the slot and the engine request are freed.
        for _ in range(300):
            metrics = http.get("/metrics").text
            if "splice_requests_in_flight 0.0" in metrics and "splice_aborted_total 1.0" in metrics:
                break
            time.sleep(0.2)
        assert "splice_requests_in_flight 0.0" in metrics, metrics
        assert "splice_aborted_total 1.0" in metrics, metrics
        again = http.post(
            "/v1/chat/completions",
            json={**body, "stream": False, "tool_choice": "none", "stop": ["\n"]},
        )
        assert (
            again.status_code == 200
            and "\n" not in again.json()["choices"][0]["message"]["content"]
        )


def test_stop_sequences_are_cut_across_pieces() -> None:
    cutter = StopCutter(["END", "\n\n"])
    pieces = ["The keeper", " lit the lamp. E", "N", "D and more"]
    assert "".join(cutter.feed(p) for p in pieces) + cutter.flush() == "The keeper lit the lamp. "
    assert cutter.done
    assert StopCutter([]).whole("no stops") == ("no stops", None)
    assert StopCutter(["EN"]).whole("hold E") == ("hold E", None)
