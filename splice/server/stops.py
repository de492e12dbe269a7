"""A client's ``stop`` sequences, applied to the answer text as it streams.

The engine's own stop settings belong to the tool protocol, so a client's stops are
applied here: the answer ends before the first stop sequence, which is not
returned (OpenAI's behaviour). While streaming, a tail that could still become a
stop sequence is held back until the next piece shows that it does not.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["StopCutter"]


class StopCutter:
    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.buffer = ""
        self.done = False

    def feed(self, text: str) -> str:
        """The part of ``text`` that may be shown now."""
        if self.done:
            return ""
        self.buffer += text
        cut = min((i for s in self.stops if (i := self.buffer.find(s)) >= 0), default=-1)
        if cut >= 0:
            out, self.buffer, self.done = self.buffer[:cut], "", True
            return out
        if not self.stops:
            out, self.buffer = self.buffer, ""
            return out
        keep = len(self.buffer) - self.hold
        out, self.buffer = self.buffer[: max(keep, 0)], self.buffer[max(keep, 0) :]
        return out

    def flush(self) -> str:
        out, self.buffer = ("" if self.done else self.buffer), ""
        return out

    def whole(self, text: str) -> tuple[str, str | None]:
        """(text cut at the first stop, "stop" if one was found else None)."""
        out = self.feed(text) + self.flush()
        return out, ("stop" if self.done else None)
