"""The ``splice`` command line: one typer app, one module per command group.

User mistakes (a missing model, an unreachable server, a prompt that does not fit)
are :class:`SpliceError`; :func:`main` prints their one-line message, with no
traceback, and exits 1. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from agent.errors import SpliceError

from .ask import ask
from .bench import bench_app
from .chat import chat
from .common import err
from .eval import eval_app
from .index import index_app
from .prepare import prepare
from .probe import probe
from .serve import serve
from .serve_model import serve_model
from .train import train_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="splice",
    help="Agentic RAG that splices tool results into the token stream, "
    'and says "I don\'t know" when it should.',
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.command()(prepare)
app.command()(ask)
app.command()(chat)
app.command()(serve)
app.command("serve-model")(serve_model)
app.command("probe")(probe)
app.add_typer(index_app, name="index")
app.add_typer(eval_app, name="eval")
app.add_typer(train_app, name="train")
app.add_typer(bench_app, name="bench")


def main() -> None:
    """Console-script entry: one line, no traceback, for user errors."""
    try:
        app()
    except SpliceError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
