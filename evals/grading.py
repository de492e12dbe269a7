"""Rule-based, offline grading: CORRECT, INCORRECT (a hallucination) or NOT_ATTEMPTED.

SimpleQA's three-way scheme. An answer is NOT_ATTEMPTED when it is empty, abstains
("I don't know" and a list of equivalent phrases), or hedges by naming several
candidates (as SimpleQA Verified counts it). Otherwise it is compared with each gold
answer: numbers within ``acceptable_range`` or to the last written figure of the gold,
then SQuAD-normalized exact match or a short sub-match. On unanswerable items every
attempted answer is INCORRECT.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from enum import Enum

__all__ = ["Grade", "grade_answer", "normalize", "is_abstention", "is_hedge", "parse_number"]


class Grade(str, Enum):
    CORRECT = "CORRECT"
    INCORRECT = "INCORRECT"
    NOT_ATTEMPTED = "NOT_ATTEMPTED"


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation + "‘’“”–—")

ABSTENTION_PHRASES = (
    "i don't know",
    "i do not know",
    "i dont know",
    "don't know",
    "do not know",
    "i'm not sure",
    "i am not sure",
    "not sure",
    "i cannot answer",
    "i can't answer",
    "unable to answer",
    "cannot be determined",
    "can't be determined",
    "no information",
    "not enough information",
    "insufficient information",
    "does not contain",
    "do not contain",
    "doesn't contain",
    "don't have",
    "do not have",
    "not mentioned",
    "not provided",
    "no answer",
    "unknown",
    "i have no idea",
    "no idea",
    "i cannot say",
    "i can't say",
    "i cannot determine",
    "i'm unable",
    "i am unable",
)

_HEDGE_SPLIT = re.compile(r"\s*(?:,|;|/|\bor\b|\beither\b)\s*", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+")
_MAGNITUDE = {"thousand": 3, "million": 6, "billion": 9, "trillion": 12}
_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}


def normalize(text: str) -> str:
    """SQuAD normalization: lower case, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _plain(text: str) -> str:
    return " ".join(text.lower().replace("’", "'").split())


def is_abstention(answer: str) -> bool:
    low = _plain(answer).strip(" .!")
    if not low:
        return True
    head = " ".join(low.split()[:12])  # the abstention leads; "X, I don't know why" is rare
    return any(p in head for p in ABSTENTION_PHRASES)


def is_hedge(answer: str, golds: Sequence[str] = ()) -> bool:
    """Several candidate answers ("Paris or Lyon", "either 1912 or 1913")."""
    if any(re.search(r"\bor\b|,|/|;", g) for g in golds):
        return False  # the gold itself has such separators
    words = answer.split()
    if len(words) > 20:
        return False  # a sentence, not a candidate list
    parts = [p for p in _HEDGE_SPLIT.split(answer) if p and p.strip(" .")]
    has_or = re.search(r"\bor\b", answer, re.IGNORECASE) is not None
    return has_or and len(parts) >= 2


def parse_number(text: str) -> tuple[float, float] | None:
    """(value, tolerance) of the first number in ``text``; the tolerance is half a unit
    of its last written figure ("8,849" -> 0.5, "2.5 million" -> 50,000)."""
    m = _NUMBER.search(text)
    if m is None:
        word = next((w for w in re.findall(r"[a-z]+", text.lower()) if w in _WORDS), None)
        return (float(_WORDS[word]), 0.5) if word is not None else None
    raw = m.group().replace(",", "")
    try:
        value = float(raw)
    except ValueError:
        return None
    decimals = len(raw.split(".")[1]) if "." in raw else 0
    scale = 0
    after = text[m.end() :].lower().split()
    if after and after[0].strip(".,") in _MAGNITUDE:
        scale = _MAGNITUDE[after[0].strip(".,")]
    return value * 10**scale, 0.5 * 10 ** (scale - decimals)


def _numbers(text: str) -> list[float]:
    found = []
    for m in _NUMBER.finditer(text):
        parsed = parse_number(text[m.start() :])
        if parsed is not None:
            found.append(parsed[0])
    found += [float(_WORDS[w]) for w in re.findall(r"[a-z]+", text.lower()) if w in _WORDS]
    return found


def _is_numeric(gold: str) -> bool:
    """A gold that is a number, maybe with a unit or magnitude ("8,849 metres"), or a
    number word ("two")."""
    if normalize(gold) in _WORDS:
        return True
    return bool(
        re.fullmatch(
            r"\s*(about|around|approximately|roughly)?\s*[-+]?[\d.,]+\s*"
            r"(thousand|million|billion|trillion)?\s*[^\d]{0,20}",
            gold.lower(),
        )
    )


def _text_match(answer: str, gold: str) -> bool:
    a, g = normalize(answer), normalize(gold)
    if not a or not g:
        return False
    if a == g:
        return True
    a_words, g_words = a.split(), g.split()
    # The gold inside a short answer ("It is Paris." for "Paris"), or inside the first
    # sentence of a longer one, where a committed answer states it.
    if re.search(rf"\b{re.escape(g)}\b", a) and len(a_words) <= len(g_words) + 12:
        return True
    first = normalize(re.split(r"(?<=[.!?])\s", answer.strip(), maxsplit=1)[0])
    if len(first.split()) <= 40 and re.search(rf"\b{re.escape(g)}\b", first):
        return True
    # A short answer that is most of a longer gold ("van Rossum" for "Guido van Rossum").
    return bool(re.search(rf"\b{re.escape(a)}\b", g)) and len(a_words) * 2 >= len(g_words)


def grade_answer(
    answer: str,
    golds: Sequence[str],
    *,
    answerable: bool = True,
    acceptable_range: tuple[float, float] | None = None,
) -> Grade:
    if is_abstention(answer) or is_hedge(answer, golds):
        return Grade.NOT_ATTEMPTED
    if not answerable:
        return Grade.INCORRECT
    if acceptable_range is not None:
        lo, hi = sorted(acceptable_range)
        nums = _numbers(answer)
        if nums:
            return Grade.CORRECT if any(lo <= n <= hi for n in nums) else Grade.INCORRECT
    for gold in golds:
        if _is_numeric(gold) and (parsed := parse_number(gold)) is not None:
            nums = _numbers(answer)
            value, tol = parsed
            if any(abs(n - value) <= tol + 1e-9 for n in nums):
                return Grade.CORRECT
            if nums:
                continue  # a different number: this gold does not match
        if _text_match(answer, gold):
            return Grade.CORRECT
    return Grade.INCORRECT
