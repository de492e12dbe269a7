"""What a tool-call protocol is: pure token/text logic, no I/O.

A protocol renders the conversation (with tool instructions) into prompt ids, names
the ids that pause generation, parses what the model emitted when it paused, renders
a tool result as ids to splice in, and reads the final answer.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Sequence
from typing import Any, Literal
from typing import Protocol as TypingProtocol

from pydantic import BaseModel, Field

__all__ = [
    "Message",
    "ToolCall",
    "Action",
    "Protocol",
    "StreamParser",
    "TextRelease",
    "ABSTENTION",
    "is_abstention",
    "encode_plain",
    "neutralise_tags",
    "TextTagProtocol",
    "TextStreamParser",
]

ABSTENTION = "I don't know"
_ABSTAIN_RE = re.compile(
    r"^\s*(i\s+(do\s*n[o']?t|cannot|can't|am\s+not\s+sure)\s+(know|say|answer|tell)"
    r"|i\s+don['’]t\s+know|unknown|not\s+sure|no\s+answer)",
    re.IGNORECASE,
)


def is_abstention(answer: str) -> bool:
    return bool(_ABSTAIN_RE.match(answer)) or not answer.strip()


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str
    ids: list[int] | None = Field(None, exclude=True)
    """An assistant turn's own token ids (its searches and what they inserted), used
    in place of ``content`` when the turn is rendered again (chat history)."""


class ToolCall(BaseModel):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    """Set when the model's call could not be parsed; the model is told why."""


class Action(BaseModel):
    """What the model asked for when generation paused."""

    kind: Literal["call", "answer", "none"]
    call: ToolCall | None = None
    answer: str | None = None


def encode_plain(tokenizer: Any, text: str) -> list[int]:
    """Encode text that must never become control tokens (retrieved pages, user text).

    ``add_special_tokens=False`` only drops BOS/EOS; without ``split_special_tokens``
    a page containing ``</information>`` would still encode to the control id.
    """
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def neutralise_tags(text: str, names: Sequence[str]) -> str:
    """Escape every open or close tag named in ``names`` (any case, any spacing) in
    retrieved text.

    Where a protocol's tags are plain text, ``split_special_tokens`` cannot help: a
    page holding ``</tool_response>`` would encode exactly as the real closing tag
    and could forge a block after it. Escaped as ``&lt;…&gt;`` it stays readable and
    inert.
    """
    if not names:
        return text
    pattern = re.compile(
        r"<(\s*/?\s*(?:" + "|".join(re.escape(n) for n in names) + r")\b[^<>]*)>", re.I
    )
    return pattern.sub(r"&lt;\1&gt;", text)


class StreamParser(TypingProtocol):
    def feed(self, token_id: int) -> str:
        """Consume one id; return the user-visible text it releases (may be empty)."""

    def action(self) -> Action:
        """What the ids fed so far ask for."""


class TextRelease:
    """Releases decoded text as it becomes final.

    Decoding ids one at a time breaks multi-byte characters; decoding the whole
    visible sequence and releasing the new suffix does not. A trailing U+FFFD (half a
    character) is held back until the next id completes it.
    """

    def __init__(self) -> None:
        self.released = 0

    def delta(self, text: str) -> str:
        if text.endswith("\ufffd"):
            text = text[:-1]
        if len(text) <= self.released:
            return ""
        out, self.released = text[self.released :], len(text)
        return out


class Protocol(abc.ABC):
    name: str
    end_ids: tuple[int, ...] = ()
    """Ids that end the assistant's turn."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def prompt_ids(self, messages: Sequence[Message], tools_text: str | None) -> list[int]:
        """Render the chat with the model's template, ready for the assistant turn.

        Message contents are encoded with special tokens disabled, so a user (or a
        page quoted back) cannot inject control tokens; only the template's own
        markup becomes special ids.
        """
        msgs = list(messages)
        if tools_text:
            if msgs and msgs[0].role == "system":
                msgs[0] = Message(role="system", content=msgs[0].content + "\n\n" + tools_text)
            else:
                msgs.insert(0, Message(role="system", content=tools_text))
        marks = [f"\x00SPLICE{i}\x00" for i in range(len(msgs))]
        rendered = self.tokenizer.apply_chat_template(
            [{"role": m.role, "content": mark} for m, mark in zip(msgs, marks)],
            add_generation_prompt=True,
            tokenize=False,
        )
        ids: list[int] = []
        for m, mark in zip(msgs, marks):
            head, rendered = rendered.split(mark, 1)
            body = m.ids if m.ids is not None else encode_plain(self.tokenizer, m.content)
            ids += self.tokenizer.encode(head, add_special_tokens=False) + body
        return ids + self.tokenizer.encode(rendered, add_special_tokens=False)

    @property
    @abc.abstractmethod
    def stop_token_ids(self) -> tuple[int, ...]:
        """Ids that pause generation (closing tags, end of turn)."""

    @property
    @abc.abstractmethod
    def banned_token_ids(self) -> tuple[int, ...]:
        """Ids the model may never emit (the result block's tags)."""

    @abc.abstractmethod
    def tools_text(self, tool_specs: Sequence[dict[str, Any]]) -> str:
        """Instructions for the system prompt describing the tools."""

    @abc.abstractmethod
    def parser(self) -> StreamParser:
        """A fresh incremental parser for one generation segment."""

    def parse(self, generated: Sequence[int]) -> Action:
        """Parse a whole segment at once (the same state machine as streaming)."""
        parser = self.parser()
        for t in generated:
            parser.feed(t)
        return parser.action()

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """Text that pauses generation, for tags that are not single ids."""
        return ()

    @property
    def answer_banned_ids(self) -> tuple[int, ...]:
        """Banned while a forced answer is generated: no new tool calls."""
        return self.banned_token_ids

    def render_passages(self, passages: Sequence[Any]) -> list[str]:
        """Retrieved passages as the text blocks of a result (one per passage)."""
        return [p.render() for p in passages]

    @abc.abstractmethod
    def result_ids(self, blocks: Sequence[str], max_tokens_per_block: int) -> list[int]:
        """A tool result as ids to splice in, each block cut by tokens."""

    def prompt_prefill_ids(self, kind: Literal["search", "answer"]) -> list[int]:
        """Ids that open a tool call or an answer, to prefill the assistant turn."""
        raise NotImplementedError(f"{self.name} has no {kind} prefill")

    @abc.abstractmethod
    def answer_prefix_ids(self) -> list[int]:
        """Ids that force the model into its final answer (budget exhausted)."""


class TextTagProtocol(Protocol):
    """A protocol whose tags are matched on decoded text (hermes, search-r1).

    A tag may still be a single id in some tokenizer; :meth:`single` finds it, so it
    can be a stop id or a banned id as well as a stop string."""

    def __init__(self, tokenizer: Any) -> None:
        super().__init__(tokenizer)
        self.end_ids = tuple(
            i for i in {tokenizer.eos_token_id, self.single("<|im_end|>")} if i is not None
        )

    def single(self, token: str) -> int | None:
        """The id of ``token`` when the tokenizer has it as exactly one id."""
        ids = self.tokenizer.encode(token, add_special_tokens=False)
        unk = getattr(self.tokenizer, "unk_token_id", None)
        return ids[0] if len(ids) == 1 and ids[0] != unk else None

    def markup(self, text: str) -> list[int]:
        """Protocol markup: encoded normally, so a tag that is one id becomes that id."""
        return self.tokenizer.encode(text, add_special_tokens=False)


class TextStreamParser(abc.ABC):
    """Collects ids, decodes the segment, and releases what :meth:`visible` shows."""

    def __init__(self, protocol: TextTagProtocol) -> None:
        self.p = protocol
        self.ids: list[int] = []
        self.release = TextRelease()

    def feed(self, token_id: int) -> str:
        if token_id in self.p.end_ids:
            return ""
        self.ids.append(token_id)
        return self.release.delta(self.visible(self._text()))

    def _text(self) -> str:
        return self.p.tokenizer.decode(self.ids, skip_special_tokens=False)

    @abc.abstractmethod
    def visible(self, text: str) -> str:
        """The user-visible part of the decoded segment so far."""

    @abc.abstractmethod
    def action(self) -> Action: ...
