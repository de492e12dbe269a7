"""The ``splice`` command line: one typer app, one module per command group.

User mistakes (a missing model, an unreachable server, a prompt that does not fit)
are :class:`SpliceError`; :func:`main` prints their one-line message, with no
traceback, and exits 1. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

from rich.markup import escape

from agent.errors import SpliceError

from .ask import ask
from .bench import bench_app
from .chat import chat
from .common import command_group, err
from .eval import eval_app
from .index import index_app
from .prepare import prepare
from .probe import probe
from .serve import serve
from .serve_model import serve_model
from .train import train_app

__all__ = ["app", "main"]

app = command_group(
    "Agentic RAG that splices tool results into the token stream, "
    'and says "I don\'t know" when it should.',
    name="splice",
)
app.command("prepare", short_help="Build the default model and knowledge-base index.")(prepare)
app.command("ask", short_help="Answer a question, searching when the model asks.")(ask)
app.command("chat", short_help="Chat in a REPL: streamed answers, live tool calls.")(chat)
app.command("serve", short_help="Serve the agent as an OpenAI-compatible API.")(serve)
app.command("serve-model", short_help="Run vLLM's OpenAI server for the model.")(serve_model)
app.command("probe", short_help="Label each question known or unknown to a model.")(probe)
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
