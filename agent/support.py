"""Which retrieved passages an answer rests on: the ones it cites.

A search returns three passages, and usually one or two of them hold the answer;
citing all three listed the Code of Hammurabi under "Shakespeare wrote Hamlet". A
passage supports an answer when it contains at least half of the answer's content
words (names, numbers, nouns; function words and one-letter tokens aside). Pure
logic: no engine, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .trace import Citation

__all__ = ["content_words", "support", "supporting"]

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_STOP = frozenset(
    """a an the and or but of in on at to for by from with as into about over under
    is are was were be been being has have had do does did it its this that these those
    he she they them his her their we you i me my our your not no yes so than then
    who whom whose what which when where why how there here also only very more most
    some any all each other such one two can could would should may might will shall
    known called named""".split()
)


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.casefold()) if len(w) > 1 and w not in _STOP}


def support(answer: str, passage: str) -> float:
    """The share of the answer's content words that the passage contains."""
    want = content_words(answer)
    if not want:
        return 0.0
    return len(want & content_words(passage)) / len(want)


def supporting(
    answer: str, retrieved: Sequence[tuple[Citation, str]], *, at_least: float = 0.5
) -> list[Citation]:
    """The retrieved passages (citation, text) that support ``answer``: best first,
    one per source document."""
    scored = [(support(answer, text), i, c) for i, (c, text) in enumerate(retrieved)]
    kept = sorted((t for t in scored if t[0] >= at_least and t[0] > 0), key=lambda t: (-t[0], t[1]))
    out: list[Citation] = []
    seen: set[str] = set()
    for _, _, c in kept:
        if c.locator not in seen:
            seen.add(c.locator)
            out.append(c)
    return out
