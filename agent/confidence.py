"""How sure the model is of its answer, by self-agreement.

Once the model has answered, the answer is sampled ``samples`` more times from the
point where it began (everything before is served by the engine's prefix cache, so
each sample costs only its own few tokens). The confidence is the share of samples
that say the same thing as the answer, after light normalization. A model that read
the answer in a passage tends to repeat it; one that is guessing tends to wander.

With ``abstain_below`` set, an answer whose confidence falls under it is replaced by
"I don't know" (the withheld answer stays in the trace). The threshold is chosen on
a dev split for a target hallucination rate (``splice eval calibrate``).
"""

from __future__ import annotations

import asyncio
import math
import re
import string
from collections.abc import Sequence
from typing import Literal, get_args

from pydantic import BaseModel, Field

from .engine import Engine, SamplingParams
from .protocols.base import Protocol

__all__ = [
    "CALIBRATION_FILE",
    "Calibration",
    "ConfidenceConfig",
    "Score",
    "SCORES",
    "token_probability",
    "normalize_answer",
    "agreement",
    "answer_start",
    "self_agreement",
]

# Beside a model's weights (and its adapter's): the threshold calibrated for that
# model, which `ask`, `chat`, `serve` and `default_agent()` use unless told otherwise.
CALIBRATION_FILE = "splice_calibration.json"

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


Score = Literal["agreement", "logprob"]
"""``agreement``: the share of resampled answers that agree (costs the samples);
``logprob``: the geometric-mean probability of the ids the model sampled on its way
to the answer, exp(mean token logprob), free."""
SCORES: tuple[str, ...] = get_args(Score)


class ConfidenceConfig(BaseModel):
    score: Score = "agreement"
    samples: int = Field(0, ge=0, description="Resampled answers per answer; 0 = off.")
    temperature: float = Field(0.7, gt=0.0)
    max_tokens: int = Field(32, ge=1, description="Ids per resampled answer.")
    abstain_below: float | None = Field(
        None, ge=0.0, le=1.0, description='Say "I don\'t know" when confidence is lower.'
    )

    @property
    def enabled(self) -> bool:
        return self.samples > 0 or self.score == "logprob"

    @property
    def may_withhold(self) -> bool:
        """An answer may still become "I don't know" once scored: a stream must hold it."""
        return bool(self.abstain_below)


class Calibration(BaseModel):
    """A model's abstention threshold, chosen on a dev run (``splice eval calibrate
    --save``) for a target hallucination rate. A threshold belongs to the weights it
    was measured on: shipping a new adapter drops the old file."""

    abstain_below: float = Field(ge=0.0, le=1.0)
    score: Score = Field("agreement", description="Chosen on dev by AUROC.")
    confidence_samples: int = Field(5, ge=0)
    target: float = Field(ge=0.0, le=1.0, description="Hallucination rate aimed at on dev.")
    dev_run: str = Field(description="The run it was chosen on.")
    dev: dict[str, float | int] = Field(
        default_factory=dict, description="correct/hallucinated/abstained/auroc on dev."
    )


def normalize_answer(text: str) -> str:
    """Lowercase, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def agreement(answer: str, samples: Sequence[str]) -> float:
    """Share of ``samples`` that match ``answer`` (either contains the other, once
    normalized: "Paris" agrees with "Paris, France")."""
    a = normalize_answer(answer)
    if not samples or not a:
        return 0.0
    same = 0
    for s in samples:
        n = normalize_answer(s)
        same += bool(n) and (n == a or n in a or a in n)
    return same / len(samples)


def token_probability(logprobs: Sequence[float]) -> float | None:
    """exp(mean logprob) of the sampled ids: 1 when the model never hesitated."""
    return math.exp(sum(logprobs) / len(logprobs)) if logprobs else None


def answer_start(ids: Sequence[int], prefix: Sequence[int]) -> int | None:
    """The index just after the last occurrence of the answer-opening ids, if any."""
    n = len(prefix)
    if not n:
        return None
    for i in range(len(ids) - n, -1, -1):
        if list(ids[i : i + n]) == list(prefix):
            return i + n
    return None


async def self_agreement(
    engine: Engine,
    protocol: Protocol,
    context_ids: Sequence[int],
    answer: str,
    config: ConfidenceConfig,
    *,
    seed: int = 0,
) -> tuple[float, list[str]]:
    """(confidence, the sampled answers) for ``answer``, which followed ``context_ids``
    (the ids up to and including the answer-opening tag)."""
    prefix = protocol.answer_prefix_ids()

    async def one(i: int) -> str:
        params = SamplingParams(
            temperature=config.temperature,
            seed=seed * 1000 + i,
            max_tokens=config.max_tokens,
            stop_token_ids=protocol.stop_token_ids,
            banned_token_ids=protocol.answer_banned_ids,
            stop=protocol.stop_strings,
        )
        out = await engine.complete(list(context_ids), params)
        parser = protocol.parser()
        for t in [*prefix, *out.token_ids]:
            parser.feed(t)
        action = parser.action()
        return (action.answer or protocol.tokenizer.decode(out.token_ids)).strip()

    samples = list(await asyncio.gather(*(one(i) for i in range(config.samples))))
    return agreement(answer, samples), samples
