"""The one base every benchmark report builds on: figures as pydantic fields (so
``--out`` writes them as JSON), and a table of rows, ratios in the caption."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel
from rich.table import Table

__all__ = ["BenchReport"]


class BenchReport(BaseModel):
    """Subclasses give a title, column names, rows and a caption; ``table`` draws them."""

    def title(self) -> str:
        return type(self).__name__

    def columns(self) -> list[str]:
        raise NotImplementedError

    def table_rows(self) -> list[list[str]]:
        raise NotImplementedError

    def caption(self) -> str:
        return ""

    # Text columns read left-aligned; figures right-aligned so digits line up.
    left_columns: ClassVar[tuple[int, ...]] = (0,)

    def table(self) -> Table:
        t = Table(title=self.title())
        for i, col in enumerate(self.columns()):
            t.add_column(col, justify="left" if i in self.left_columns else "right")
        for row in self.table_rows():
            t.add_row(*row)
        t.caption = self.caption() or None
        return t
