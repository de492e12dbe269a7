"""Engine over HTTP: a ``vllm serve`` OpenAI-compatible server.

Prompts go out as token ids on ``/v1/completions`` and come back as token ids
(``return_token_ids``) with special tokens kept in the text
(``skip_special_tokens=false``), streamed as server-sent events. The history never
round-trips through text, so the agent loop behaves exactly as with the in-process
engine. Prefix-cache hits come from ``usage.prompt_tokens_details.cached_tokens``,
which the server reports when started with ``--enable-prompt-tokens-details``
(``splice serve-model`` does).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from agent.engine import Engine, GenerationChunk, SamplingParams
from agent.errors import EngineError, PromptTooLongError, ServerUnreachableError, first_line

__all__ = ["HTTPEngine"]


def _request_body(model: str, ids: list[int], p: SamplingParams) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "prompt": ids,
        "max_tokens": p.max_tokens,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "stop_token_ids": list(p.stop_token_ids),
        "stream": True,
        "stream_options": {"include_usage": True},
        "return_token_ids": True,
        "skip_special_tokens": False,
        "spaces_between_special_tokens": False,
    }
    if p.top_k:
        body["top_k"] = p.top_k
    if p.seed is not None:
        body["seed"] = p.seed
    if p.logprobs is not None:
        body["logprobs"] = p.logprobs
    if p.stop:
        body["stop"] = list(p.stop)
        body["include_stop_str_in_output"] = True
    if p.banned_token_ids:
        body["logit_bias"] = {str(t): -100 for t in p.banned_token_ids}
    return body


class HTTPEngine(Engine):
    """Client of a vLLM OpenAI-compatible server. Create it with :meth:`connect`."""

    def __init__(
        self,
        url: str,
        model: str,
        max_model_len: int,
        *,
        tokenizer: str | None = None,
        api_key: str | None = None,
        timeout: float = 600.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.max_model_len = max_model_len
        self._tokenizer_name = tokenizer or model
        self._tokenizer: Any = None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
        )

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        model: str | None = None,
        tokenizer: str | None = None,
        api_key: str | None = None,
        timeout: float = 600.0,
    ) -> HTTPEngine:
        """Ask the server which model it serves and its context length."""
        engine = cls(url, model or "", 0, tokenizer=tokenizer, api_key=api_key, timeout=timeout)
        try:
            data = await engine.home.run(engine._get_json("/v1/models"))
            cards = data.get("data") or []
            card = next((c for c in cards if model is None or c.get("id") == model), None)
            if card is None:
                served = ", ".join(c.get("id", "?") for c in cards) or "none"
                raise EngineError(
                    f"the server at {url} does not serve {model} (it serves {served})"
                )
        except BaseException:
            await engine.aclose()
            raise
        engine.model = card["id"]
        engine.max_model_len = int(card.get("max_model_len") or 2048)
        if tokenizer is None:
            engine._tokenizer_name = card.get("root") or card["id"]
        return engine

    async def _get_json(self, path: str) -> Any:
        try:
            resp = await self._client.get(path)
        except httpx.TransportError as exc:
            raise ServerUnreachableError(self.url + path, type(exc).__name__) from exc
        if resp.status_code >= 400:
            raise EngineError(f"{self.url}{path} answered HTTP {resp.status_code}")
        return resp.json()

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self._tokenizer_name)
            except OSError as exc:
                raise EngineError(
                    f"cannot load the tokenizer {self._tokenizer_name}: pass tokenizer= "
                    "the served model's path or HF name"
                ) from exc
        return self._tokenizer

    async def _stream(
        self, prompt_token_ids: list[int], params: SamplingParams, request_id: str | None
    ) -> AsyncIterator[GenerationChunk]:
        body = _request_body(self.model, prompt_token_ids, params)
        if request_id:
            body["request_id"] = request_id
        final: dict[str, Any] | None = None
        cached: int | None = None
        prompt_tokens = len(prompt_token_ids)
        try:
            async with self._client.stream("POST", "/v1/completions", json=body) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    raise self._http_error(resp, prompt_tokens)
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    event = json.loads(payload)
                    usage = event.get("usage")
                    if usage:
                        prompt_tokens = usage.get("prompt_tokens", prompt_tokens)
                        details = usage.get("prompt_tokens_details") or {}
                        cached = details.get("cached_tokens", cached)
                    for choice in event.get("choices") or []:
                        lp = choice.get("logprobs")
                        chunk = GenerationChunk(
                            token_ids=choice.get("token_ids") or [],
                            text=choice.get("text") or "",
                            logprobs=lp.get("token_logprobs") if lp else None,
                            prompt_tokens=prompt_tokens,
                        )
                        if choice.get("finish_reason"):
                            final = choice
                        if chunk.token_ids or chunk.text:
                            yield chunk
        except httpx.TransportError as exc:
            raise ServerUnreachableError(self.url, type(exc).__name__) from exc
        stop = final.get("stop_reason") if final else None
        yield GenerationChunk(
            finished=True,
            finish_reason=(final or {}).get("finish_reason") or "abort",
            stop_token_id=stop if isinstance(stop, int) else None,
            prompt_tokens=prompt_tokens,
            cached_prompt_tokens=cached,
        )

    def _http_error(self, resp: httpx.Response, prompt_tokens: int) -> EngineError:
        try:
            message = resp.json().get("error", {}).get("message", "") or resp.text
        except ValueError:
            message = resp.text
        if "context length" in message or "maximum model length" in message:
            return PromptTooLongError(prompt_tokens, self.max_model_len)
        return EngineError(
            f"{self.url} answered HTTP {resp.status_code}: {first_line(Exception(message), 300)}"
        )

    async def _aclose(self) -> None:
        await self._client.aclose()
