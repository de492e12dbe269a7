"""Processes the engine starts leave the terminal's Ctrl-C alone and die with
their parent, even one killed by SIGKILL (issue #15, items 1 and 2). The real
engine is checked in test_repl.py; this checks the mechanism in a second."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from conftest import ROOT

PARENT = """
import multiprocessing, sys, time
from serving.children import engine_children

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    with engine_children():
        child = ctx.Process(target=time.sleep, args=(600,))
        child.start()
    print(child.pid, flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize(("method", "early"), [("spawn", False), ("fork", False), ("spawn", True)])
def test_a_child_has_its_own_group_and_dies_with_its_parent(
    method: str, early: bool, tmp_path
) -> None:
    """``early``: the parent dies before the child's interpreter is even up."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen(
        [sys.executable, str(script), method], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        if not early:
            deadline = time.monotonic() + 30  # a spawned child moves once it is up
            while os.getpgid(child.pid) != child.pid and time.monotonic() < deadline:
                time.sleep(0.1)
            assert os.getpgid(child.pid) == child.pid != os.getpgid(parent.pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(30)
        gone, alive = psutil.wait_procs([child], timeout=30)
        assert not alive
    finally:
        if parent.poll() is None:
            parent.kill()
