"""The default protocol: the special tokens added by ``splice prepare``.

```
<search> query </search>              emitted; generation stops on the </search> id
<information> results </information>  spliced in by the orchestrator, never sampled
<answer> final answer </answer>       emitted; "I don't know" is the abstention
```

Every tag is one token id, so parsing is a walk over ids: no text matching, and a
page that contains the text "</information>" cannot close the block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from .base import ABSTENTION, Action, Protocol, TextRelease, ToolCall, encode_plain

__all__ = ["SpliceProtocol", "SpliceStreamParser", "SPECIAL_TOKENS"]

# Added to the tokenizer by model preparation, each as one id, in this order.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<search>",
    "</search>",
    "<information>",
    "</information>",
    "<answer>",
    "</answer>",
)

TOOLS_TEXT = (
    "You can search a knowledge base. To search, write <search> your query </search>. "
    "The results appear between <information> and </information>. Search when the "
    "question needs facts you are not sure of. Write the final answer as "
    "<answer> answer </answer>. If the information does not contain the answer and "
    f"you do not know it, write <answer>{ABSTENTION}</answer>."
)


class SpliceStreamParser:
    """Incremental parser: feed ids one at a time; :meth:`action` says what they mean.

    ``feed`` releases the text a user should see (tags and tool queries removed);
    the same state machine serves the one-shot :meth:`Protocol.parse`.
    """

    def __init__(self, protocol: SpliceProtocol) -> None:
        self.p = protocol
        self.state = "text"  # text | search | answer | done
        self.query: list[int] = []
        self.answer: list[int] = []
        self.text: list[int] = []
        self.visible: list[int] = []
        self.release = TextRelease()
        self.closed: str | None = None

    def feed(self, token_id: int) -> str:
        """Consume one id; return the user-visible text it releases."""
        if self._consume(token_id):
            self.visible.append(token_id)
            return self.release.delta(self.p.tokenizer.decode(self.visible))
        return ""

    def _consume(self, token_id: int) -> bool:
        """Advance the state machine; True when the id is visible answer text."""
        ids = self.p.ids
        if self.state == "done":
            return False
        if token_id == ids["<search>"]:
            self.state, self.query = "search", []
        elif token_id == ids["</search>"]:
            self.state, self.closed = "done", "search"
        elif token_id == ids["<answer>"]:
            self.state, self.answer = "answer", []
        elif token_id == ids["</answer>"]:
            self.state, self.closed = "done", "answer"
        elif token_id in self.p.end_ids:
            # Ending the turn inside an open search still asks for that search.
            self.closed = "search" if self.state == "search" and self.query else "end"
            self.state = "done"
        elif self.state == "search":
            self.query.append(token_id)
        elif self.state == "answer":
            self.answer.append(token_id)
            return True
        else:
            self.text.append(token_id)
            return True
        return False

    def action(self) -> Action:
        dec = self.p.decode
        if self.closed == "search" or (self.state == "search" and self.query):
            return Action(
                kind="call", call=ToolCall(name="search", arguments={"query": dec(self.query)})
            )
        if self.closed == "answer" or self.state == "answer":
            return Action(kind="answer", answer=dec(self.answer))
        text = dec(self.text)
        return Action(kind="answer", answer=text) if text else Action(kind="none")


class SpliceProtocol(Protocol):
    name = "splice"

    def __init__(self, tokenizer: Any) -> None:
        super().__init__(tokenizer)
        self.ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
        unk = getattr(tokenizer, "unk_token_id", None)
        missing = [t for t, i in self.ids.items() if i is None or i == unk]
        if missing:
            raise ConfigError(
                f"the model's tokenizer lacks {', '.join(missing)}: use the prepared model "
                "(`splice prepare`) or --protocol hermes"
            )
        self.end_ids = tuple(
            i
            for i in {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
            if i is not None and i != unk
        )

    @property
    def stop_token_ids(self) -> tuple[int, ...]:
        return (self.ids["</search>"], self.ids["</answer>"], *self.end_ids)

    @property
    def banned_token_ids(self) -> tuple[int, ...]:
        return (self.ids["<information>"], self.ids["</information>"])

    def tools_text(self, tool_specs: Sequence[dict[str, Any]]) -> str:
        return TOOLS_TEXT

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()

    def parser(self) -> SpliceStreamParser:
        return SpliceStreamParser(self)

    def result_ids(self, blocks: Sequence[str], max_tokens_per_block: int) -> list[int]:
        body: list[int] = []
        for block in blocks:
            body += encode_plain(self.tokenizer, "\n" + block)[:max_tokens_per_block]
        return [
            self.ids["<information>"],
            *body,
            *encode_plain(self.tokenizer, "\n"),
            self.ids["</information>"],
        ]

    @property
    def answer_banned_ids(self) -> tuple[int, ...]:
        return (*self.banned_token_ids, self.ids["<search>"], self.ids["</search>"])

    def prompt_prefill_ids(self, kind: str) -> list[int]:
        return [self.ids["<search>"] if kind == "search" else self.ids["<answer>"]]

    def answer_prefix_ids(self) -> list[int]:
        return [self.ids["<answer>"]]
