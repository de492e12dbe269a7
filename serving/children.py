"""The engine core's processes: out of reach of the terminal's Ctrl-C, and gone
with their parent.

vLLM starts its EngineCore in the terminal's process group, so Ctrl-C (which the
terminal sends to the whole foreground group) killed the engine under a REPL that
meant only to cancel an answer. And a parent killed with SIGKILL left the core
running: it waited five minutes for a handshake during start-up, and forever after.

While :func:`engine_children` is active, every process multiprocessing starts
(vLLM's CPU backend spawns; on a GPU it may fork) first moves into a process group
of its own, and kills that group, itself and its workers, once its parent is gone.
"""

from __future__ import annotations

import contextlib
import multiprocessing.spawn
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["engine_children", "die_with_parent", "CHILD_SETUP"]

# Run first in a spawned child, before it unpickles anything: plain stdlib, because
# the child's sys.path is not set up yet. The parent's pid is written in, not read
# with getppid(): a parent that dies before the child starts must count as dead.
CHILD_SETUP = """\
import os, signal, threading, time
os.setpgid(0, 0)
{redirect}
def _splice_watch(parent={parent}):
    while os.getppid() == parent:
        time.sleep(0.5)
    os.killpg(0, signal.SIGKILL)
threading.Thread(target=_splice_watch, name="splice-parent-watch", daemon=True).start()
"""

_active = False
_hooked = False
_parent = 0
_log: str | None = None


# With a log file, the child's stdout and stderr (and so its workers') go there.
REDIRECT = """\
_fd = os.open({log!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
os.dup2(_fd, 1)
os.dup2(_fd, 2)
"""


def _setup(parent: int, log: str | None) -> str:
    """The child's first lines, the same for both start methods."""
    return CHILD_SETUP.format(parent=parent, redirect=REDIRECT.format(log=log) if log else "")


def _after_fork() -> None:
    if _active:
        exec(_setup(_parent, _log), {})


def _command_line(original: Any, log: str | None) -> Any:
    def command_line(**kwds: Any) -> list[str]:
        cmd = original(**kwds)
        if "-c" not in cmd:  # a frozen executable: nothing to prefix
            return cmd
        at = cmd.index("-c") + 1
        setup = _setup(os.getpid(), log)
        return [*cmd[:at], setup + cmd[at], *cmd[at + 1 :]]

    return command_line


@contextlib.contextmanager
def engine_children(log: Path | None = None) -> Iterator[None]:
    """Detach processes started inside this block from the terminal, and tie
    their lives to this process. With ``log``, their output goes to that file."""
    global _active, _hooked, _parent, _log
    if not _hooked:
        os.register_at_fork(after_in_child=_after_fork)
        _hooked = True
    original = multiprocessing.spawn.get_command_line
    multiprocessing.spawn.get_command_line = _command_line(original, log and str(log))
    _active, _parent, _log = True, os.getpid(), log and str(log)
    try:
        yield
    finally:
        _active = False
        multiprocessing.spawn.get_command_line = original


def die_with_parent() -> None:
    """A ``preexec_fn`` for a program Splice runs (``vllm serve``): the kernel sends
    it SIGTERM when Splice dies, however it died. Linux only; elsewhere a no-op.
    The kernel ties it to the starting *thread*: start servers from one that lives
    as long as they should."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
