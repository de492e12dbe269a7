"""A run as a list of typed step records, and the events a stream yields.

Steps are what happened (kept in :attr:`Answer.trace`, JSON-serializable); events
are what a UI sees while it happens. Both are pydantic models with a ``type`` tag.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "GenerationStep",
    "ToolCallStep",
    "ToolResultStep",
    "AnswerStep",
    "ConfidenceStep",
    "Step",
    "TokenEvent",
    "ToolCallEvent",
    "ToolResultEvent",
    "AnswerEvent",
    "Event",
    "Citation",
    "Answer",
]


class GenerationStep(BaseModel):
    type: Literal["generation"] = "generation"
    prompt_tokens: int
    cached_prompt_tokens: int | None
    generated_tokens: int
    text: str
    finish_reason: str | None
    seconds: float


class ToolCallStep(BaseModel):
    type: Literal["tool_call"] = "tool_call"
    name: str
    arguments: dict[str, Any]


class Citation(BaseModel):
    id: str
    title: str = ""
    source: str = ""
    score: float = 0.0
    snippet: str = ""
    """The passage's first words, for a reader deciding whether to open it."""

    @property
    def locator(self) -> str:
        """Where the passage lives: its URL or file path, else its index id."""
        return self.source or self.id


class ToolResultStep(BaseModel):
    type: Literal["tool_result"] = "tool_result"
    name: str
    ok: bool
    observation: str
    sources: list[Citation] = Field(default_factory=list)
    inserted_tokens: int
    seconds: float

    @property
    def first_line(self) -> str:
        """The observation's first line: for a failed call, why it failed."""
        return (self.observation.splitlines() or [""])[0]


class ConfidenceStep(BaseModel):
    """The answer resampled from where it began; ``score`` = share that agree."""

    type: Literal["confidence"] = "confidence"
    score: float
    samples: list[str]


class AnswerStep(BaseModel):
    type: Literal["answer"] = "answer"
    text: str
    abstained: bool
    forced: bool = False
    """True when a budget ran out and the model was made to answer."""
    withheld: str | None = None
    """The model's answer, replaced by "I don't know" for low confidence."""


Step = Annotated[
    GenerationStep | ToolCallStep | ToolResultStep | ConfidenceStep | AnswerStep,
    Field(discriminator="type"),
]


class TokenEvent(BaseModel):
    type: Literal["token"] = "token"
    text: str
    answer: bool = False
    """Part of a final answer (after the answer tag): text that a confidence
    threshold may still withhold, unlike a plain chat reply."""


class ToolCallEvent(BaseModel):
    type: Literal["tool_call"] = "tool_call"
    step: ToolCallStep

    @property
    def name(self) -> str:
        return self.step.name

    @property
    def arguments(self) -> dict[str, Any]:
        return self.step.arguments


class ToolResultEvent(BaseModel):
    type: Literal["tool_result"] = "tool_result"
    step: ToolResultStep


class AnswerEvent(BaseModel):
    type: Literal["answer"] = "answer"
    answer: Answer


class Answer(BaseModel):
    text: str
    abstained: bool
    citations: list[Citation] = Field(default_factory=list)
    trace: list[Step] = Field(default_factory=list)
    token_ids: list[int] = Field(default_factory=list, exclude=True)
    mask: list[bool] = Field(default_factory=list, exclude=True)
    """Per token of ``token_ids``: True where sampled, False where inserted."""
    mean_logprob: float | None = None
    confidence: float | None = None
    """The answer's confidence score (``agent.confidence``: self-agreement, or the
    sampled ids' geometric-mean probability), when asked for."""
    seconds: float = 0.0

    @property
    def searches(self) -> int:
        return sum(1 for s in self.trace if isinstance(s, ToolCallStep))

    @property
    def withheld(self) -> str | None:
        """The model's answer when low confidence replaced it by "I don't know"."""
        return next((s.withheld for s in self.trace if isinstance(s, AnswerStep)), None)


Event = Annotated[
    TokenEvent | ToolCallEvent | ToolResultEvent | AnswerEvent, Field(discriminator="type")
]
AnswerEvent.model_rebuild()
