"""Hermes / Qwen function calling: ``<tool_call>{"name": …, "arguments": …}</tool_call>``.

For off-the-shelf instruct models (Qwen2.5 and others trained on this format) and
any registered tool. Results come back in a user turn as ``<tool_response>`` blocks,
in ChatML framing. The tags may be plain text (SmolLM2) or single ids (Qwen); the
parser works on decoded text, generation pauses on the stop string, and where a
tag is a single id, that id is used as well.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .base import (
    Action,
    TextStreamParser,
    TextTagProtocol,
    ToolCall,
    encode_plain,
    neutralise_tags,
)

__all__ = ["HermesProtocol", "HermesStreamParser"]

OPEN, CLOSE = "<tool_call>", "</tool_call>"
RESULT_OPEN, RESULT_CLOSE = "<tool_response>", "</tool_response>"
TAG_NAMES = ("tool_response", "tool_call", "tools")


def _visible(text: str) -> str:
    """Text outside tool calls, holding back a tail that may still become a tag."""
    out: list[str] = []
    i = 0
    while True:
        j = text.find(OPEN, i)
        if j < 0:
            tail = text[i:]
            hold = next((k for k in range(len(OPEN) - 1, 0, -1) if tail.endswith(OPEN[:k])), 0)
            out.append(tail[: len(tail) - hold])
            return "".join(out)
        out.append(text[i:j])
        k = text.find(CLOSE, j)
        if k < 0:
            return "".join(out)
        i = k + len(CLOSE)


def _parse_call(body: str) -> ToolCall:
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ValueError('expected {"name": …, "arguments": {…}}')
        args = data.get("arguments") or {}
        if isinstance(args, str):  # some models double-encode the arguments
            args = json.loads(args)
        if not isinstance(args, dict):
            raise ValueError("arguments must be an object")
        return ToolCall(name=data["name"], arguments=args)
    except ValueError as exc:
        return ToolCall(name="", error=f"invalid JSON: {str(exc)[:120]}")


class HermesStreamParser(TextStreamParser):
    def visible(self, text: str) -> str:
        return _visible(text)

    def action(self) -> Action:
        text = self._text()
        # A forged result block ends the turn: nothing after it is the model's answer.
        text = text.split(RESULT_OPEN, 1)[0]
        j = text.find(OPEN)
        if j >= 0:
            body = text[j + len(OPEN) :].split(CLOSE, 1)[0].strip()
            return Action(kind="call", call=_parse_call(body))
        answer = _visible(text + "\n").strip()
        return Action(kind="answer", answer=answer) if answer else Action(kind="none")


class HermesProtocol(TextTagProtocol):
    name = "hermes"

    def __init__(self, tokenizer: Any) -> None:
        super().__init__(tokenizer)
        self.close_id = self.single(CLOSE)
        self.result_ids_banned = tuple(
            i for i in (self.single(RESULT_OPEN), self.single(RESULT_CLOSE)) if i
        )

    @property
    def stop_token_ids(self) -> tuple[int, ...]:
        return (*self.end_ids, *((self.close_id,) if self.close_id else ()))

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return (CLOSE, RESULT_OPEN)

    @property
    def banned_token_ids(self) -> tuple[int, ...]:
        return self.result_ids_banned

    def tools_text(self, tool_specs: Sequence[dict[str, Any]]) -> str:
        lines = "\n".join(json.dumps({"type": "function", "function": s}) for s in tool_specs)
        return (
            "You can call these tools (JSON schemas):\n<tools>\n" + lines + "\n</tools>\n"
            "To call one, reply with exactly\n" + OPEN + "\n"
            '{"name": "<tool name>", "arguments": {<arguments as JSON>}}\n' + CLOSE + "\n"
            "The result comes back between " + RESULT_OPEN + " and " + RESULT_CLOSE + ". "
            'Answer from the results; if they do not hold the answer, say "I don\'t know".'
        )

    def parser(self) -> HermesStreamParser:
        return HermesStreamParser(self)

    def result_ids(self, blocks: Sequence[str], max_tokens_per_block: int) -> list[int]:
        ids = self.markup("<|im_end|>\n<|im_start|>user\n")
        for block in blocks:
            ids += self.markup(RESULT_OPEN + "\n")
            text = neutralise_tags(block, TAG_NAMES)
            ids += encode_plain(self.tokenizer, text)[:max_tokens_per_block]
            ids += self.markup("\n" + RESULT_CLOSE + "\n")
        return ids + self.markup("<|im_end|>\n<|im_start|>assistant\n")

    def answer_prefix_ids(self) -> list[int]:
        return []
