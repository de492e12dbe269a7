"""The one place Splice writes ``os.environ``: vLLM and transformers read their
settings from environment variables, some of them at import time.

An explicit setting by the user always wins (``setdefault``), except the CPU KV-cache
size, which follows ``--kv-cache-gib`` when that option is given.
"""

from __future__ import annotations

import logging
import os
import warnings

from agent.settings import SpliceSettings, load

__all__ = ["quiet_libraries", "verbose_logs", "offline_hub", "configure_cpu"]

_verbose: bool | None = None


def quiet_libraries(verbose: bool) -> None:
    """Logs on stderr, at ERROR unless ``verbose``: stdout is for answers and --json."""
    global _verbose
    _verbose = verbose
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    if not verbose:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        # vLLM configures its logging only when an engine is made; what it logs on
        # import before that (the CPU wheel's "Triton is installed, but…") would
        # reach Python's last-resort handler.
        logging.getLogger("vllm").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"(vllm|torch)\b")


def verbose_logs() -> bool:
    """-v or SPLICE_LOG_LEVEL=INFO/DEBUG, as the CLI decided, else as the settings say."""
    if _verbose is None:
        quiet_libraries(load(SpliceSettings).log_level in ("INFO", "DEBUG"))
    return bool(_verbose)


def offline_hub() -> None:
    """The embedded default model and embedder are local files: never ask a hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def configure_cpu(kv_cache_gib: float | None) -> None:
    """vLLM's CPU backend reads its settings from the environment.

    By default it reserves a core for the polling EngineCore process, so on a 2-core
    machine the model computes on one core. Reserving none measured about 1.4× the
    tokens/s here (docs/performance.md); an explicit setting wins.
    """
    gib = kv_cache_gib or float(os.environ.get("VLLM_CPU_KVCACHE_SPACE", 2))
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(int(gib) if gib == int(gib) else gib)
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
