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


@pytest.fixture
def repl(model_server, splice_home: Path, tmp_path: Path):
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
            "--url",
            model_server.url,
            "--passages",
            str(kb),
            "--max-tokens",
            "200",
        ],
        env=env,
        encoding="utf-8",
        timeout=120,
        dimensions=(40, 120),
    )
    child.expect("you>")
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
