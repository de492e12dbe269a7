"""Training trajectories as token ids with a loss mask (pure: no model, no index).

A trajectory is replayed through the real agent loop over a scripted engine: the
"model" emits the target segments, the loop splices the tool result exactly as it
does at inference, and the loop's own mask says which ids were sampled (loss) and
which were inserted (prompt, ``<information>`` blocks: no loss). Training therefore
sees byte-for-byte the sequences the served model will be asked to continue.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any, Literal, get_args

from pydantic import BaseModel

from agent.loop import Budgets
from agent.protocols.base import ABSTENTION, encode_plain
from agent.protocols.splice import SpliceProtocol
from agent.sdk import Agent
from agent.tools import Passage, Retriever
from agent.trace import AnswerEvent
from serving.scripted import ScriptedEngine

__all__ = ["Example", "Kind", "KINDS", "Replayer", "query_variants", "arrange_passages"]

Kind = Literal[
    "closed-known",
    "closed-unknown",
    "tools-answer",
    "tools-absent",
    "reading-answer",
    "reading-absent",
    "reading-removed",
    "chat",
    "identity",
]
KINDS: tuple[str, ...] = get_args(Kind)


class Example(BaseModel):
    id: str
    kind: Kind
    source_id: str
    """The question, prompt or entity it came from (checked against the held-out split)."""
    tools: bool
    input_ids: list[int]
    loss_mask: list[bool]
    """True where the id was sampled by the model: the only ids that carry loss."""

    @property
    def target_tokens(self) -> int:
        return sum(self.loss_mask)


class _FixedRetriever(Retriever):
    """Returns the passages chosen for the current example, whatever the query."""

    def __init__(self) -> None:
        self.passages: list[Passage] = []

    async def search(self, query: str, k: int = 3) -> list[Passage]:
        return list(self.passages)


class Replayer:
    """Turns (question, target segments, passages) into ids and a loss mask."""

    def __init__(
        self, tokenizer: Any, *, budgets: Budgets | None = None, max_model_len: int = 4096
    ) -> None:
        self.tokenizer = tokenizer
        self.protocol = SpliceProtocol(tokenizer)
        self._queue: list[list[int]] = []
        self._retriever = _FixedRetriever()
        self.engine = ScriptedEngine(
            lambda _ids, _p: self._queue.pop(0), tokenizer, max_model_len=max_model_len
        )
        self.budgets = budgets or Budgets()
        self.agent = Agent(
            self.engine, [self._retriever], protocol=self.protocol, budgets=self.budgets
        )

    # -- target segments -------------------------------------------------------
    def search(self, query: str) -> list[int]:
        ids = self.protocol.ids
        return [ids["<search>"], *encode_plain(self.tokenizer, query), ids["</search>"]]

    def answer(self, text: str) -> list[int]:
        ids = self.protocol.ids
        return [ids["<answer>"], *encode_plain(self.tokenizer, text), ids["</answer>"]]

    def abstain(self) -> list[int]:
        return self.answer(ABSTENTION)

    def reply(self, text: str) -> list[int]:
        """A plain chat reply, ended with the end-of-turn id as the model would."""
        return [*encode_plain(self.tokenizer, text), self.protocol.end_ids[0]]

    # -- replay ----------------------------------------------------------------
    def replay(
        self,
        question: str,
        segments: Sequence[Sequence[int]],
        *,
        tools: bool,
        passages: Sequence[Passage] = (),
    ) -> tuple[list[int], list[bool]]:
        self._queue = [list(s) for s in segments]
        self._retriever.passages = list(passages)
        self.engine.requests.clear()

        async def run() -> Any:
            answer = None
            async for ev in self.agent.stream(question, use_tools=tools):
                if isinstance(ev, AnswerEvent):
                    answer = ev.answer
            return answer

        answer = self.engine.home.call(run())
        if self._queue:
            raise ValueError(f"{len(self._queue)} target segment(s) were never asked for")
        prompt = self.engine.requests[0][0]
        return prompt + answer.token_ids, [False] * len(prompt) + list(answer.mask)

    def visible_block(self, passage: Passage) -> str:
        """What of a passage survives the loop's per-passage token cut."""
        block = self.protocol.render_passages([passage])[0]
        ids = encode_plain(self.tokenizer, "\n" + block)[: self.budgets.passage_tokens]
        return self.tokenizer.decode(ids)

    def close(self) -> None:
        self.engine.close()


_STOP = set(
    """a an the of in on at to for by from with and or is are was were be been
what which who whom whose when where why how did does do name named called""".split()
)


def query_variants(question: str) -> list[str]:
    """Ways a model might phrase the search for a question: verbatim, lowercased
    without the question mark, and keywords only."""
    q = " ".join(question.split())
    plain = q.rstrip("?").strip()
    words = re.findall(r"[\w'-]+", plain)
    keywords = " ".join(w for w in words if w.lower() not in _STOP)
    out = [q, plain.lower(), keywords]
    return [v for i, v in enumerate(out) if v and v not in out[:i]]


def arrange_passages(
    gold: Passage | None,
    distractors: Sequence[Passage],
    rng: random.Random,
    *,
    max_passages: int = 3,
) -> list[Passage]:
    """1..max passages; the gold one (if any) at a random position among them."""
    n = rng.choices(range(1, max_passages + 1), weights=[1, 2, 4][:max_passages])[0]
    if gold is None:
        return list(distractors[:n])
    others = list(distractors[: n - 1])
    others.insert(rng.randrange(len(others) + 1), gold)
    return others
