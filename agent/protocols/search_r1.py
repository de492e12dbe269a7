"""Search-R1's plain-text tags, so published Search-R1 checkpoints run unchanged.

```
<think> reasoning </think>
<search> query </search>                 generation pauses on the text "</search>"
<information>Doc 1(Title: t) text ...</information>   spliced in by the orchestrator
<answer> final answer </answer>
```

The checkpoints were trained with their instructions in the user turn, ahead of
"Question: …", and with results rendered as ``Doc i(Title: …) text`` lines; both
are reproduced here. ``instruction`` can be replaced with a checkpoint's exact
training prompt. The tags are matched on decoded text, so they work whether a
tokenizer has them as single ids (the prepared SmolLM2) or as plain text (Qwen).
Where ``<information>`` is a single id it is banned; where it is text, it stops
generation and nothing after it counts (the model cannot forge results), and the
tags inside retrieved text are escaped (a page cannot close the block).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .base import (
    Action,
    Message,
    TextStreamParser,
    TextTagProtocol,
    ToolCall,
    encode_plain,
    neutralise_tags,
)

__all__ = ["SearchR1Protocol", "SearchR1StreamParser", "INSTRUCTION"]

INSTRUCTION = (
    "Answer the question below. Reason inside <think> and </think> each time you receive "
    "new information. If you lack some knowledge, call the search engine by writing "
    "<search> query </search>; its top results come back between <information> and "
    "</information>. You may search as many times as you need. Once no more outside "
    "knowledge is needed, give only the final answer inside <answer> and </answer>, "
    "without explanation, for example <answer> Beijing </answer>. Question: "
)

SEARCH, SEARCH_END = "<search>", "</search>"
ANSWER, ANSWER_END = "<answer>", "</answer>"
INFO, INFO_END = "<information>", "</information>"
TAG_NAMES = ("information", "search", "answer", "think")
_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)


def _hold_partial(text: str, tag: str) -> str:
    """Drop a tail that may still grow into ``tag``."""
    for k in range(len(tag) - 1, 0, -1):
        if text.endswith(tag[:k]):
            return text[:-k]
    return text


class SearchR1StreamParser(TextStreamParser):
    """Streams only the answer's text; :meth:`action` reads the whole segment."""

    def visible(self, text: str) -> str:
        if ANSWER not in text:
            return ""
        body = text.split(ANSWER, 1)[1].split(ANSWER_END, 1)
        return (body[0] if len(body) == 2 else _hold_partial(body[0], ANSWER_END)).lstrip()

    def _text(self) -> str:
        # A forged result block ends the segment: nothing after it is the model's.
        return super()._text().split(INFO, 1)[0]

    def action(self) -> Action:
        text = self._text()
        s, a = text.find(SEARCH), text.find(ANSWER)
        if s >= 0 and (a < 0 or s < a):
            query = text[s + len(SEARCH) :].split(SEARCH_END, 1)[0].strip()
            if query:
                return Action(kind="call", call=ToolCall(name="search", arguments={"query": query}))
        if a >= 0:
            return Action(
                kind="answer", answer=text[a + len(ANSWER) :].split(ANSWER_END, 1)[0].strip()
            )
        rest = _THINK.sub("", text)
        for tag in (SEARCH, SEARCH_END, ANSWER_END):
            rest = rest.replace(tag, "")
        rest = rest.strip()
        return Action(kind="answer", answer=rest) if rest else Action(kind="none")


class SearchR1Protocol(TextTagProtocol):
    name = "search-r1"

    def __init__(self, tokenizer: Any, instruction: str = INSTRUCTION) -> None:
        super().__init__(tokenizer)
        self.instruction = instruction
        self.tag_ids = {t: self.single(t) for t in (SEARCH, SEARCH_END, INFO, INFO_END, ANSWER)}

    def prompt_ids(self, messages: Sequence[Message], tools_text: str | None) -> list[int]:
        # The checkpoints read their instructions in the (last) user turn.
        msgs = list(messages)
        if tools_text:
            last = max(i for i, m in enumerate(msgs) if m.role == "user")
            msgs[last] = Message(role="user", content=tools_text + msgs[last].content.strip())
        return super().prompt_ids(msgs, None)

    @property
    def stop_token_ids(self) -> tuple[int, ...]:
        closing = tuple(i for i in (self.tag_ids[SEARCH_END],) if i is not None)
        return (*self.end_ids, *closing)

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return (SEARCH_END, INFO)

    @property
    def banned_token_ids(self) -> tuple[int, ...]:
        return tuple(i for i in (self.tag_ids[INFO], self.tag_ids[INFO_END]) if i is not None)

    @property
    def answer_banned_ids(self) -> tuple[int, ...]:
        return (*self.banned_token_ids, *(i for i in (self.tag_ids[SEARCH],) if i is not None))

    def tools_text(self, tool_specs: Sequence[dict[str, Any]]) -> str:
        return self.instruction

    def parser(self) -> SearchR1StreamParser:
        return SearchR1StreamParser(self)

    def render_passages(self, passages: Sequence[Any]) -> list[str]:
        return [f"Doc {n}(Title: {p.title}) {p.text}" for n, p in enumerate(passages, 1)]

    def result_ids(self, blocks: Sequence[str], max_tokens_per_block: int) -> list[int]:
        ids = self.markup("\n\n" + INFO)
        for block in blocks:
            text = neutralise_tags(block, TAG_NAMES)
            ids += encode_plain(self.tokenizer, text)[:max_tokens_per_block]
            ids += self.markup("\n")
        return ids + self.markup(INFO_END + "\n\n")

    def prompt_prefill_ids(self, kind: str) -> list[int]:
        return self.markup(SEARCH if kind == "search" else ANSWER)

    def answer_prefix_ids(self) -> list[int]:
        return self.markup(ANSWER)
