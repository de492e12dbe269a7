"""An answer's evidence in the shapes OpenAI-compatible clients read: OpenAI
``url_citation`` annotations, and Perplexity-style ``citations`` and
``search_results``. Pure logic: it reads a finished :class:`Answer`."""

from __future__ import annotations

from typing import Any

from agent.trace import Answer, ToolCallStep, ToolResultStep

__all__ = ["annotations", "citations", "search_results", "reasoning_line"]


def annotations(answer: Answer) -> list[dict[str, Any]]:
    """One ``url_citation`` per cited passage; the span is the whole answer, which
    the passage was retrieved to support."""
    return [
        {
            "type": "url_citation",
            "url_citation": {
                "url": c.locator,
                "title": c.title,
                "start_index": 0,
                "end_index": len(answer.text),
            },
        }
        for c in answer.citations
    ]


def citations(answer: Answer) -> list[str]:
    # answer.citations holds only supporting passages, one per source, and none for
    # an abstention (agent.support).
    return [c.locator for c in answer.citations]


def search_results(answer: Answer) -> list[dict[str, Any]]:
    """Everything the searches returned, cited or not, with a snippet of each."""
    out = []
    for step in answer.trace:
        if isinstance(step, ToolResultStep):
            for c in step.sources:
                out.append(
                    {
                        "title": c.title,
                        "url": c.locator,
                        "id": c.id,
                        "snippet": c.snippet,
                        "score": round(c.score, 4),
                    }
                )
    return out


def reasoning_line(step: ToolCallStep | ToolResultStep) -> str:
    """A search step as one line of ``reasoning_content``."""
    if isinstance(step, ToolCallStep):
        query = step.arguments.get("query", "")
        return f"Searching: {query}\n" if query else f"Calling {step.name}\n"
    if not step.ok:
        return f"The search failed: {step.first_line[:200]}\n"
    titles = "; ".join(dict.fromkeys(c.title or c.id for c in step.sources))
    return f"Read {len(step.sources)} passages: {titles}\n" if step.sources else "No results.\n"
