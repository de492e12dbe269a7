"""The LLM judge: a SimpleQA-style three-way grade from any OpenAI-compatible endpoint.

Temperature 0. A reply that names no grade is UNPARSEABLE, counted apart from the
three grades, never folded into one of them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from agent.errors import ServerUnreachableError

__all__ = ["Judge", "JUDGE_PROMPT", "parse_judge_reply", "UNPARSEABLE"]

UNPARSEABLE = "UNPARSEABLE"

JUDGE_PROMPT = """You grade answers to short factual questions.
Compare the predicted answer with the gold target and choose one grade:
A) CORRECT: the prediction gives the gold target's answer (wording, extra detail and
   small spelling differences do not matter) and says nothing that contradicts it.
B) INCORRECT: the prediction commits to an answer that differs from or contradicts the
   gold target, even if it sounds unsure.
C) NOT_ATTEMPTED: the prediction gives no answer: it says it does not know, declines,
   or lists several candidates without committing to one.
If the gold target says the question is unanswerable, any committed answer is
INCORRECT and declining is NOT_ATTEMPTED.

Question: {question}
Gold target: {gold}
Predicted answer: {answer}

Reply with one letter: A, B or C."""

_LETTER = {"A": "CORRECT", "B": "INCORRECT", "C": "NOT_ATTEMPTED"}


_GRADE_WORD = re.compile(r"NOT[_ ]ATTEMPTED|INCORRECT|CORRECT", re.I)
# A grade word after one of these ("not correct", "isn't correct", "never
# correct") means something else than the word: such a reply is not trusted.
_NEGATED = re.compile(r"(?:\b(?:not|never|no|neither|nor|hardly)|n't)\W+(?:\w+\W+)?$", re.I)


def parse_judge_reply(reply: str) -> str:
    """The grade a reply names: a leading letter (A/B/C), else exactly one grade word
    that no negation qualifies. Anything else is UNPARSEABLE, counted apart."""
    text = reply.strip()
    m = re.match(r"^\W*([ABC])\b(?!')", text)
    if m:
        return _LETTER[m.group(1)]
    grades = set()
    for w in _GRADE_WORD.finditer(text):
        if _NEGATED.search(text[max(0, w.start() - 24) : w.start()]):
            return UNPARSEABLE
        grades.add(w.group(0).upper().replace(" ", "_"))
    return grades.pop() if len(grades) == 1 else UNPARSEABLE


class Judge:
    def __init__(
        self,
        url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        try:
            from openai import AsyncOpenAI
        except ImportError as exc:
            from agent.errors import DependencyMissingError

            raise DependencyMissingError("openai", "pip install openai") from exc
        self.url = url.rstrip("/")
        base = self.url if self.url.endswith("/v1") else self.url + "/v1"
        self.client = AsyncOpenAI(
            base_url=base,
            timeout=timeout_s,
            max_retries=2,
            api_key=api_key or os.environ.get("OPENAI_API_KEY", "EMPTY"),
        )
        self.model = model

    async def check(self) -> None:
        """Fail early, in one line, when the endpoint is down; pick its model if unset."""
        import openai

        try:
            models = await self.client.models.list()
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise ServerUnreachableError(self.url, type(exc).__name__) from None
        if self.model is None:
            ids = [m.id for m in models.data]
            if not ids:
                raise ServerUnreachableError(self.url, "it serves no model")
            self.model = ids[0]

    async def grade(
        self, question: str, golds: Sequence[str], answer: str, answerable: bool = True
    ) -> tuple[str, str]:
        """(grade, raw reply)."""
        import openai

        gold = " | ".join(golds) if answerable and golds else "(unanswerable: no true answer)"
        prompt = JUDGE_PROMPT.format(question=question, gold=gold, answer=answer or "(empty)")
        try:
            resp = await self.client.chat.completions.create(
                model=self.model or "",
                messages=[{"role": "user", "content": prompt}],
                temperature=0,
                max_tokens=8,
            )
        except openai.OpenAIError as exc:
            return UNPARSEABLE, f"error: {type(exc).__name__}: {str(exc)[:200]}"
        if not resp.choices:
            return UNPARSEABLE, "error: the judge's response had no choices"
        reply = resp.choices[0].message.content or ""
        return parse_judge_reply(reply), reply
