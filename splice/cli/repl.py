"""``splice chat``: a REPL over an :class:`Agent` (prompt-toolkit for input, rich for output).

Tokens stream as they are generated; searches and their sources show as they
happen. Ctrl-C cancels the current generation (the engine request is aborted) and
keeps the session; Ctrl-D (EOF) or ``/exit`` leaves.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from agent.sdk import Agent, ChatSession
from agent.trace import Answer, AnswerEvent, TokenEvent, ToolCallEvent, ToolResultEvent

from .common import source_lines

__all__ = ["run_repl"]

HELP = """commands:
  /tools on|off   search or answer closed-book
  /trace          show the last answer's trace as JSON
  /reset          forget the conversation
  /exit           leave (Ctrl-D works too); Ctrl-C stops a generation"""


async def _turn(chat: ChatSession, text: str, console: Console) -> Answer | None:
    answer: Answer | None = None
    streamed = held = False
    # An answer that may be withheld for low confidence is printed once it is scored.
    hold = chat.agent.confidence.may_withhold
    async for ev in chat.astream(text):
        if isinstance(ev, TokenEvent) and hold and ev.answer:
            held = True
        elif isinstance(ev, TokenEvent):
            console.print(ev.text, end="", markup=False, highlight=False)
            streamed = True
        elif isinstance(ev, ToolCallEvent):
            console.print(f"\n[cyan]⟶ {escape(ev.name)}[/cyan] {escape(json.dumps(ev.arguments))}")
        elif isinstance(ev, ToolResultEvent):
            if not ev.step.ok:
                console.print(f"[red]⟵ failed[/red] {escape(ev.step.first_line[:300])}")
            else:
                src = ", ".join(f"{c.id} {c.title}".strip() for c in ev.step.sources)
                console.print(f"[cyan]⟵ ok[/cyan] {escape(src or ev.step.observation[:80])}")
        elif isinstance(ev, AnswerEvent):
            answer = ev.answer
    if answer is not None:
        if held or not streamed or answer.trace[-1].forced:  # type: ignore[union-attr]
            console.print(answer.text, markup=False, highlight=False, end="")
        console.print()
        if answer.withheld:
            console.print(
                f"[dim](confidence {answer.confidence:.2f}, too low to say: "
                f"{escape(answer.withheld)})[/dim]",
                highlight=False,
            )
        for line in source_lines(answer.citations):
            console.print(f"[dim]{line}[/dim]", highlight=False)
        sampled = sum(answer.mask)
        plural = "" if answer.searches == 1 else "es"
        console.print(
            f"[dim]({sampled} tokens, {answer.searches} search{plural}, "
            f"{answer.seconds:.1f}s)[/dim]",
            highlight=False,
        )
    return answer


async def run_repl(agent: Agent, console: Console, history_file: Path | None = None) -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    if history_file is not None:
        history_file.parent.mkdir(parents=True, exist_ok=True)
    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(history_file)) if history_file else InMemoryHistory()
    )
    chat = agent.chat()
    last: Answer | None = None
    loop = asyncio.get_running_loop()
    console.print(f"[bold]splice chat[/bold] — tools {'on' if chat.use_tools else 'off'}; /help")
    while True:
        try:
            text = (await session.prompt_async("you> ")).strip()
        except EOFError:
            break
        except KeyboardInterrupt:
            continue
        if not text:
            continue
        if text.startswith("/"):
            cmd, *args = text.split()
            if cmd in ("/exit", "/quit"):
                break
            if cmd == "/reset":
                chat.reset()
                console.print("history cleared")
            elif cmd == "/tools" and args and args[0] in ("on", "off"):
                chat.use_tools = args[0] == "on"
                console.print(f"tools {args[0]}")
            elif cmd == "/trace":
                console.print_json(last.model_dump_json() if last else "null")
            else:
                console.print(HELP)
            continue
        task = asyncio.ensure_future(_turn(chat, text, console))
        loop.add_signal_handler(signal.SIGINT, task.cancel)
        try:
            last = await task or last
        except asyncio.CancelledError:
            # Drop the unanswered question so the history stays well formed.
            if chat.history and chat.history[-1].role == "user":
                chat.history.pop()
            console.print("\n[yellow]cancelled[/yellow]")
        finally:
            loop.remove_signal_handler(signal.SIGINT)
    console.print("bye")
