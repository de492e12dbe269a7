"""`splice chat` driven in a real pseudo-terminal, against the session's vllm serve."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

pytestmark = pytest.mark.vllm

FOOTER = r"\(\d+ tokens, \d+ searches, [\d.]+s\)"


def say(child, text: str) -> None:
    # prompt-toolkit switches the tty to raw mode with TCSAFLUSH after drawing the
    # prompt, discarding type-ahead; pause as a person would before typing.
    time.sleep(0.5)
    child.send(text + "\r")  # Enter in a raw-mode terminal is CR, not LF


def spawn_chat(splice_home: Path, tmp_path: Path, *args: str, timeout: float = 120):
    kb = tmp_path / "kb.jsonl"
    kb.write_text(
        json.dumps({"id": "fr", "title": "France", "text": "Paris is the capital of France."})
        + "\n"
    )
    env = {
        **os.environ,
        "SPLICE_HOME": str(splice_home),
        "COLUMNS": "120",
        "TERM": "xterm",
        # pexpect does not answer cursor-position requests; without this,
        # prompt-toolkit waits for the reply and swallows what is typed meanwhile.
        "PROMPT_TOOLKIT_NO_CPR": "1",
    }
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "splice.cli",
            "chat",
            *args,
            "--passages",
            str(kb),
            "--max-tokens",
            "200",
        ],
        env=env,
        encoding="utf-8",
        timeout=timeout,
        dimensions=(40, 120),
    )
    child.expect("you>")
    child.timeout = 120
    return child


@pytest.fixture
def repl(model_server, splice_home: Path, tmp_path: Path):
    child = spawn_chat(splice_home, tmp_path, "--url", model_server.url)
    yield child
    if child.isalive():
        child.terminate(force=True)


def test_streams_an_answer_and_keeps_the_session(repl) -> None:
    say(repl, "Say hello in five words.")
    repl.expect(FOOTER)
    assert re.search(r"[A-Za-z]{2,}", repl.before.split("words.", 1)[-1])  # streamed text
    repl.expect("you>")
    say(repl, "/tools off")
    repl.expect("tools off")
    repl.expect("you>")
    say(repl, "/reset")
    repl.expect("history cleared")
    repl.expect("you>")


def test_ctrl_c_cancels_generation_and_eof_exits(repl) -> None:
    say(repl, "Write a very long story about a dragon who learns to bake bread.")
    repl.expect_exact("\x1b[?2004l")  # prompt-toolkit has handed the terminal back
    repl.expect(r"\w+ \w+ \w+")  # the answer is streaming in
    repl.sendintr()
    repl.expect("cancelled")
    repl.expect("you>")
    say(repl, "/trace")
    repl.expect("you>")
    time.sleep(0.5)  # as in say(): raw mode flushes keys typed before it starts
    repl.sendeof()
    repl.expect("bye")
    repl.expect(pexpect.EOF)
    repl.close()
    assert repl.exitstatus == 0


def test_ctrl_c_spares_the_in_process_engine_and_kill_9_leaves_no_engine_behind(
    splice_home: Path, tmp_path: Path
) -> None:
    """The terminal sends Ctrl-C to its whole foreground process group: vLLM's
    EngineCore was in it and died, so the next question crashed the REPL."""
    import psutil

    child = spawn_chat(splice_home, tmp_path, timeout=600)
    try:
        say(child, "Write a very long story about a dragon who learns to bake bread.")
        child.expect_exact("\x1b[?2004l")
        child.expect(r"\w+ \w+ \w+", timeout=300)  # a cold prefill on a busy CPU
        child.sendintr()
        child.expect("cancelled")
        child.expect("you>")
        say(child, "Say hello in five words.")
        child.expect(FOOTER)  # answered: the engine survived the Ctrl-C
        child.expect("you>")
        engine = psutil.Process(child.pid).children(recursive=True)
        assert engine, "the in-process engine should have its core process"
        child.kill(9)
        gone, alive = psutil.wait_procs(engine, timeout=60)
        assert not alive, f"left behind: {[p.cmdline()[:2] for p in alive]}"
    finally:
        if child.isalive():
            child.terminate(force=True)
